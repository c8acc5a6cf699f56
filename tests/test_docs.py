"""The documentation stays true to the code it describes.

* docs/configuration.md's option reference is what scripts/config_reference.py generates from
  the settings model (petracache/config.py) and the command line (petracache/cli.py): adding,
  renaming or re-describing an option without regenerating the page fails here.
* Every relative link in README.md and docs/*.md names a file or directory that exists, and
  every ``#anchor`` into a page names one of its headings.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def config_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "config_reference", ROOT / "scripts" / "config_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_matches_the_settings_model() -> None:
    module = config_reference()
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert module.updated(page) == page, (
        "docs/configuration.md is out of date: run python scripts/config_reference.py"
    )


def test_reference_names_every_option_and_its_environment_variable() -> None:
    from petracache.config import Settings

    page = (ROOT / "docs" / "configuration.md").read_text()
    for section, field in Settings.model_fields.items():
        assert f"### `[{section}]`" in page
        model = field.annotation
        assert model is not None
        for name in model.model_fields:
            assert f"`PETRACACHE_{section.upper()}__{name.upper()}`" in page


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists() or (
            anchor and linked.suffix == ".md" and anchor not in anchors(linked)
        ):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_example_file_describes_each_option_as_the_model_does() -> None:
    """config.toml.example's comment above each option is that option's description."""
    from petracache.config import Settings

    lines = (ROOT / "config.toml.example").read_text().splitlines()
    section = ""
    for i, line in enumerate(lines):
        if line.startswith("["):
            section = line.strip("[]")
        elif " = " in line and not line.startswith("#"):
            name = line.split(" = ")[0]
            model = Settings.model_fields[section].annotation
            description = model.model_fields[name].description  # type: ignore[union-attr]
            assert lines[i - 1] == f"# {description}", f"{section}.{name}"


# -- names the docs use exist; no stale "not yet"; no internal issue numbers ---------------

CODE_DIRS = ("petracache", "bench", "scripts")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
SPAN = re.compile(r"`([^`\n]+)`")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
SETTING = re.compile(r"^(server|storage|metrics)\.([a-z_]+)$")
ENV = re.compile(r"^PETRACACHE_[A-Z0-9_]+$")
ROUTE = re.compile(r"^(?:(GET|POST|HEAD) )?(/[a-z_]+)$")
ISSUE = re.compile(r"\bissues?\s+#?\d+", re.I)
# Commands whose flags are petracache's (a page may name any other tool's flags freely).
OURS = {"petracache", "petracache-cluster", "migrate", "backup", "restore"}
# Other tools' flags that pages name on their own (not in a command line).
OTHER_TOOLS_FLAGS = {
    "--enable-flush-cmd": "mcrouter",
    "--disallow-subclassing-any": "mypy",
    "--import-mode": "pytest",
    "--stop-timeout": "docker run",
}
# Wrong names the pages show on purpose, as examples of what is ignored or refused.
WRONG_ON_PURPOSE = {
    "PETRACACHE_LISTEN_ADR",
    "PETRACACHE_BLOCK_CACHE_SIZE",
    "PETRACACHE_TYPO__X",
    "PETRACACHE_SOMETHING",
}
NOT_ROUTES = {"/tmp"}  # filesystem paths that look like routes
# "Not yet" claims, each capturing what it says is missing (which must then not exist).
_KIND = r"(?:command|route|flag|option|setting|subcommand)s?"
_NAMES = r"((?:`[^`]+`,? (?:and |or )?)+)"
MISSING = [
    re.compile(rf"\bno ((?:[`\w/.-]+ )+?){_KIND} yet\b", re.I),
    re.compile(rf"\bnot yet\b[^.]*?\bno ((?:[`\w/.-]+ )+?){_KIND}\b", re.I),
    re.compile(rf"{_NAMES}answers? `ERROR`"),
    re.compile(rf"{_NAMES}(?:is|are) not (?:yet )?(?:supported|implemented|available)\b"),
]


def page_text(page: Path) -> tuple[str, list[str]]:
    """The page's prose (fenced blocks removed) and the lines of its fenced blocks."""
    text = page.read_text()
    blocks = FENCE.findall(text)
    return FENCE.sub("", text), [line for block in blocks for line in block.splitlines()[1:-1]]


def code_flags() -> set[str]:
    """Every ``--flag`` the code's argparse parsers declare: the server's and
    petracache-cluster's parsers as built, the others' ``add_argument`` literals."""
    from petracache import cli
    from petracache.cluster import cli as cluster_cli

    found: set[str] = set()
    parsers = [cli.build_parser(), cluster_cli.build_parser()]
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            found |= {flag for flag in action.option_strings if flag.startswith("--")}
            if isinstance(action, argparse._SubParsersAction):
                parsers += action.choices.values()
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "add_argument"
                ):
                    found |= {
                        arg.value
                        for arg in node.args
                        if isinstance(arg, ast.Constant)
                        and isinstance(arg.value, str)
                        and arg.value.startswith("--")
                    }
    return found


def command_flags(words: list[str]) -> list[str]:
    """The ``--flags`` of a command line when the command is petracache's, else none."""
    while words and (words[0] == "$" or ("=" in words[0] and not words[0].startswith("-"))):
        words = words[1:]  # a shell prompt, VAR=value prefixes
    if not words:
        return []
    first = words[0].rsplit("/", 1)[-1]
    module = words[2] if first.startswith("python") and words[1:2] == ["-m"] and words[2:] else ""
    if first in OURS or first.startswith("-") or module.split(".")[0] in ("petracache", "bench"):
        return [flag for word in words for flag in FLAG.findall(word.split("=")[0])]
    return []


def known_subcommands() -> set[str]:
    """petracache's tools and petracache-cluster's actions."""
    from petracache.tools import TOOLS

    return {*TOOLS, "config", "run"}


def app_routes() -> dict[str, set[str]]:
    """The admin app's routes and their methods (with backups on, as the server runs it)."""
    from prometheus_client import CollectorRegistry
    from starlette.routing import Route

    from petracache.admin.routes import create_app
    from petracache.app import Readiness
    from petracache.storage.backup import Backups

    app = create_app(Readiness(), CollectorRegistry(), Backups("/nonexistent", 1), "t")
    return {r.path: set(r.methods or ()) for r in app.routes if isinstance(r, Route)}


def known_names() -> set[str]:
    """What petracache has, by the names a page would use: text commands, stats groups,
    subcommands, admin routes, flags and settings."""
    from petracache.commands.stats_groups import GROUPS
    from petracache.config import Settings
    from petracache.protocol import text

    names = {cmd.decode() for cmd in text._PARSERS} | {"mg", "ms", "md", "ma", "mn", "me"}
    groups = {g.decode() for g in GROUPS} | {"settings", "reset", "detail"}
    names |= {f"stats {g}" for g in groups} | known_subcommands() | code_flags()
    routes = app_routes()
    names |= set(routes) | {route.lstrip("/") for route in routes}
    for section, field in Settings.model_fields.items():
        assert field.annotation is not None
        names |= {f"{section}.{name}" for name in field.annotation.model_fields}
    return names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_cites_an_issue_number(page: Path) -> None:
    """Issue numbers mean nothing to a reader outside the team: say what happened instead."""
    assert not ISSUE.findall(page.read_text()), page.name


def _unknown_names(page: Path, env: set[str], flags: set[str]) -> list[str]:
    from petracache.config import Settings

    sections = {name: f.annotation.model_fields for name, f in Settings.model_fields.items()}  # type: ignore[union-attr]
    routes = app_routes()
    prose, code_lines = page_text(page)
    where = page.relative_to(ROOT)
    spans = SPAN.findall(prose)
    unknown = [
        f"{where}: flag {flag} ({line.strip()})"
        for line in [*spans, *code_lines]
        for flag in command_flags(line.split())
        if flag not in flags and flag not in OTHER_TOOLS_FLAGS
    ]
    for span in spans:
        if (m := SETTING.match(span)) and m[2] not in sections[m[1]]:
            unknown.append(f"{where}: setting {span}")
        if ENV.match(span) and span not in env and span not in WRONG_ON_PURPOSE:
            unknown.append(f"{where}: environment variable {span}")
        route = ROUTE.match(span)
        if route and route[2] not in NOT_ROUTES and route[2] not in routes:
            unknown.append(f"{where}: admin route {span}")
        elif route and route[1] and route[1] not in routes[route[2]]:
            unknown.append(f"{where}: admin route {span} (methods {routes[route[2]]})")
        words = span.split()
        if len(words) > 1 and words[0] in ("petracache", "petracache-cluster"):
            sub = words[1]
            plain = not sub.startswith("-") and "." not in sub and "/" not in sub
            if plain and sub not in known_subcommands():
                unknown.append(f"{where}: command {span}")
    return unknown


def test_pages_name_only_flags_settings_variables_and_routes_the_code_has() -> None:
    """Every ``--flag`` of a petracache command line (or on its own), ``section.option``,
    ``PETRACACHE_*`` variable, admin route and subcommand a page names exists."""
    from petracache.config import ENV_PREFIX, FLAT_ENV_ALIASES, Settings
    from petracache.rules.build import COMPILE_ENV
    from petracache.tools.backup_cli import ADMIN_ENV, TOKEN_ENV

    env = set(FLAT_ENV_ALIASES) | {COMPILE_ENV, ADMIN_ENV, TOKEN_ENV}
    for section, field in Settings.model_fields.items():
        assert field.annotation is not None
        env |= {
            f"{ENV_PREFIX}{section.upper()}__{name.upper()}"
            for name in field.annotation.model_fields
        }
    assert not WRONG_ON_PURPOSE & env  # an example of a wrong name must stay wrong
    flags = code_flags()
    unknown = [line for page in PAGES for line in _unknown_names(page, env, flags)]
    assert not unknown, "\n".join(unknown)


def stale_claims(text: str, known: set[str]) -> list[str]:
    """Sentences saying something is missing (``MISSING``) about a name petracache has."""
    found = []
    for pattern in MISSING:
        for match in pattern.finditer(text):
            names = SPAN.findall(match[1]) or re.findall(r"[\w/.-]+", match[1])
            found += [f"{name!r} in {match[0]!r}" for name in names if name in known]
    return found


def test_the_stale_claim_check_catches_what_it_is_for() -> None:
    """The sentences this check was written after (the docs said them once), and sentences
    it must leave alone."""
    known = known_names()
    for sentence in (
        "Not yet: there is no backup or snapshot command (issue 15).",
        "There is no backup command yet; copy the data directory.",
        "crawler commands (`slabs`, `lru_crawler`, `watch`, `stats slabs` answer `ERROR`).",
        "`--token-file` is not yet supported.",
    ):
        assert stale_claims(sentence, known), sentence
    for fine in (
        "`misbehave` and `debugtime` answer `ERROR`.",
        "items that have expired but not yet been removed",
        "`migrate` copies node to node and has no hash-aware filter yet",
    ):
        assert not stale_claims(fine, known), fine


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_says_not_yet_about_something_petracache_has(page: Path) -> None:
    prose, _code = page_text(page)
    assert not stale_claims(" ".join(prose.split()), known_names()), page.name
