"""The optional mypyc build and its pure-Python fallback (petracache/build.py, setup.py).

* The decision (``decide``) on hand-made package directories: no manifest, a missing
  extension, edited sources, ``PETRACACHE_PURE``; these run on every build.
* In fresh interpreters (subprocesses) on a copy of the installed package: ``PETRACACHE_PURE=1``
  loads every module from its ``.py``; an edited source makes the whole build fall back with
  one warning; extension files the manifest does not list are never loaded.
* When this checkout was built compiled, the compiled modules are the ones running; a build
  that could not compile for a reason of the machine's (no compiler, no headers,
  ``PETRACACHE_COMPILE=0``) skips that test with the reason, and one where mypyc or the C
  compiler failed on the code fails it.

The pure build's behaviour is the rest of the suite: scripts/test runs the protocol,
commands and storage tests a second time with ``PETRACACHE_PURE=1``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import petracache
from petracache import build
from petracache.config import check_environment

PACKAGE_DIR = Path(petracache.__file__).resolve().parent
EXTENSION = importlib.machinery.EXTENSION_SUFFIXES[0]
# What a fresh interpreter reports: the decision, and where each petracache module came from.
PROBE = """
import json, sys
import petracache.build, petracache.commands.executor, petracache.protocol.detect
print(json.dumps({
    "compiled": petracache.build.compiled(),
    "describe": petracache.build.describe(),
    "files": {n: m.__file__ for n, m in sys.modules.items()
              if n.startswith("petracache.") and getattr(m, "__file__", None)},
}))
"""


def probe(root: Path, **env: str) -> tuple[dict[str, object], str]:
    """Import petracache from ``root`` in a new interpreter: its report, and its stderr."""
    environ = {k: v for k, v in os.environ.items() if k != build.PURE_ENV}
    environ.update(env, PYTHONPATH=str(root))
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=root,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report, done.stderr


def files_of(report: dict[str, object]) -> dict[str, str]:
    files = report["files"]
    assert isinstance(files, dict)
    return files


def copy_package(tmp_path: Path) -> Path:
    """The installed package, extensions and manifest included, under tmp_path/petracache."""
    shutil.copytree(
        PACKAGE_DIR, tmp_path / "petracache", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def compiled_modules() -> list[str]:
    """The modules the installed build compiled (none for a pure build)."""
    modules = (build.read_manifest(PACKAGE_DIR) or {}).get("modules")
    return [str(m) for m in modules] if isinstance(modules, list) else []


needs_compiled = pytest.mark.skipif(not compiled_modules(), reason="this checkout was built pure")


def fake_package(tmp_path: Path, modules: list[str], extensions: bool) -> Path:
    """A package dir with the given modules' sources (and empty extension files), and a
    manifest recording their digest."""
    root = tmp_path / "pkg"
    if extensions:
        root.mkdir()
        build.module_path(root, build.NATIVE_LIB).with_suffix(EXTENSION).write_bytes(b"")
    for module in modules:
        source = build.module_path(root, module)
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f"NAME = {module!r}\n")
        if extensions:
            source.with_name(source.stem + EXTENSION).write_bytes(b"")
    manifest = {"modules": modules, "digest": build.source_digest(root, modules)}
    (root / build.MANIFEST).write_text(json.dumps(manifest))
    return root


MODULES = ["petracache.rules.ttl", "petracache.protocol.text"]


def test_a_current_build_is_chosen(tmp_path: Path) -> None:
    state, stale = build.decide(fake_package(tmp_path, MODULES, extensions=True), {})
    assert state.compiled
    assert state.modules == frozenset(MODULES)
    assert not stale


def test_no_manifest_means_pure_without_a_warning(tmp_path: Path) -> None:
    state, stale = build.decide(tmp_path, {})
    assert (state.compiled, stale) == (False, False)
    assert state.detail == "pure Python (not compiled)"


def test_a_pure_build_says_why(tmp_path: Path) -> None:
    (tmp_path / build.MANIFEST).write_text('{"modules": [], "reason": "no C compiler"}')
    state, stale = build.decide(tmp_path, {})
    assert (state.compiled, stale, state.detail) == (False, False, "pure Python (no C compiler)")


def test_pure_env_wins_without_a_warning(tmp_path: Path) -> None:
    root = fake_package(tmp_path, MODULES, extensions=True)
    state, stale = build.decide(root, {build.PURE_ENV: "1"})
    assert (state.compiled, stale) == (False, False)
    assert build.decide(root, {build.PURE_ENV: "0"})[0].compiled  # "0" means not set


def test_an_edited_source_is_stale(tmp_path: Path) -> None:
    root = fake_package(tmp_path, MODULES, extensions=True)
    with build.module_path(root, MODULES[1]).open("a") as source:
        source.write("# edited\n")
    state, stale = build.decide(root, {})
    assert (state.compiled, stale) == (False, True)
    assert "sources changed" in state.detail


def test_a_missing_extension_is_stale(tmp_path: Path) -> None:
    state, stale = build.decide(fake_package(tmp_path, MODULES, extensions=False), {})
    assert (state.compiled, stale) == (False, True)
    assert "no extension for petracache.rules.ttl" in state.detail


def test_a_damaged_manifest_means_pure_never_an_error(tmp_path: Path) -> None:
    (tmp_path / build.MANIFEST).write_text('{"modules": ["os.path"], "digest": "x"}')
    state, stale = build.decide(tmp_path, {})
    assert (state.compiled, stale) == (False, True)
    (tmp_path / build.MANIFEST).write_text("{not json")
    assert build.decide(tmp_path, {}) == (
        build.BuildState(False, "pure Python (not compiled)"),
        False,
    )


def test_pure_env_loads_every_module_from_source(tmp_path: Path) -> None:
    report, stderr = probe(copy_package(tmp_path), **{build.PURE_ENV: "1"})
    assert report["compiled"] is False
    assert all(path.endswith(".py") for path in files_of(report).values()), report
    assert build.NATIVE_LIB not in files_of(report)
    assert stderr == ""  # asked for, so not worth a warning


def test_unlisted_extension_files_are_never_loaded(tmp_path: Path) -> None:
    """An extension file beside a module the manifest does not list (left by an older build,
    or junk) loses to the ``.py``; here every such file is junk that would fail to load.
    (Not beside petracache/build.py: the finder is its own, and it loads first.)"""
    root = copy_package(tmp_path)
    listed = [*compiled_modules(), build.NATIVE_LIB] if compiled_modules() else []
    for source in (root / "petracache").rglob("*.py"):
        module = ".".join(source.relative_to(root).with_suffix("").parts)
        if module not in [*listed, "petracache.build"] and source.name != "__init__.py":
            source.with_name(source.stem + EXTENSION).write_bytes(b"not an ELF file")
    report, _ = probe(root)
    assert report["compiled"] is bool(listed)
    unlisted = {n: f for n, f in files_of(report).items() if n not in listed}
    assert "petracache.protocol.errors" in unlisted
    assert all(path.endswith(".py") for path in unlisted.values()), unlisted


@needs_compiled
def test_a_stale_source_makes_the_whole_build_pure_with_one_warning(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    before, _ = probe(root)
    assert before["compiled"] is True  # the copy itself is current
    source = build.module_path(root / "petracache", "petracache.rules.ttl")
    source.write_text(source.read_text() + "\n# edited after the build\n")
    report, stderr = probe(root)
    assert report["compiled"] is False
    assert all(path.endswith(".py") for path in files_of(report).values()), report
    warnings = [line for line in stderr.splitlines() if line]
    assert len(warnings) == 1, stderr
    assert "stale build: sources changed" in warnings[0]


def test_the_compiled_build_is_in_use_when_built() -> None:
    manifest = build.read_manifest(PACKAGE_DIR) or {}
    reason = str(manifest.get("reason", ""))
    if reason.startswith(("mypyc failed", "compile failed")):
        pytest.fail(f"the build tried to compile and failed: {reason}")
    if not manifest.get("modules"):
        pytest.skip(f"built pure: {reason or 'no manifest (not installed with pip)'}")
    if os.environ.get(build.PURE_ENV, "") not in ("", "0"):
        pytest.skip(f"{build.PURE_ENV} is set")
    assert build.compiled(), build.describe()
    assert build.label() == "mypyc"
    for module in compiled_modules():
        path = importlib.import_module(module).__file__
        assert path is not None
        assert path.endswith(EXTENSION), module


def test_the_build_switches_are_no_unknown_server_options() -> None:
    """The server refuses unknown ``PETRACACHE_*`` variables as typos, but not these:
    ``PETRACACHE_COMPILE=0 ./scripts/serve`` passes its environment to the server."""
    check_environment({build.PURE_ENV: "1", build.COMPILE_ENV: "0"})
