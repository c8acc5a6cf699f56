"""The documentation stays true to the code it describes.

* docs/configuration.md's option reference is what scripts/config_reference.py generates from
  the settings model (petracache/config.py) and the command line (petracache/cli.py): adding,
  renaming or re-describing an option without regenerating the page fails here.
* Every relative link in README.md and docs/*.md names a file or directory that exists, and
  every ``#anchor`` into a page names one of its headings.
"""

from __future__ import annotations

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
