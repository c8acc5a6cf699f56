"""The compiled build (setup.py, pyproject.toml's ``[tool.petracache.mypyc]``) and its
pure-Python fallback (petracache/rules/build.py).

* ``import petracache`` does nothing special: no import hook, no file read but its own.
* The modules listed for mypyc run as one build, all compiled or all from source, and no
  module outside the list is compiled.
* A server the tests start runs the same build as the tests.
* ``EXPECTED_BUILD`` (``mypyc`` or ``pure``; scripts/test sets it for each of its passes)
  is the build that runs; without it (a run by hand) that test skips.

The pure build's behaviour is the rest of the suite: scripts/test runs this file and the
rules, protocol, commands and storage tests a second time on the source tree.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tomllib
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType

import pytest

import petracache
from petracache.config_loading import check_environment
from petracache.rules.build import BUILD, COMPILE_ENV, compiled
from tests.harness import PetracacheProcess

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIR = Path(petracache.__file__).resolve().parent
EXPECTED = os.environ.get("EXPECTED_BUILD")
needs_expected = pytest.mark.skipif(
    EXPECTED is None, reason="EXPECTED_BUILD is not set (scripts/test sets it)"
)

# Run in a fresh interpreter: what ``import petracache`` changes, loads and opens.
IMPORT_PROBE = """
import json, sys
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
meta_path, path_hooks = list(sys.meta_path), list(sys.path_hooks)
import petracache
print(json.dumps({
    "meta_path": [repr(f) for f in sys.meta_path if f not in meta_path],
    "path_hooks": [repr(h) for h in sys.path_hooks if h not in path_hooks],
    "modules": sorted(m for m in sys.modules if m.startswith("petracache")),
    "opened": opened,
}))
"""


def listed_modules() -> list[str]:
    """The dotted names of the modules pyproject.toml lists for mypyc."""
    paths = PYPROJECT["tool"]["petracache"]["mypyc"]["modules"]
    return [path.removesuffix(".py").replace("/", ".") for path in paths]


def imported(names: list[str]) -> dict[str, ModuleType]:
    return {name: importlib.import_module(name) for name in names}


def test_compiled_tells_an_extension_from_a_source_file() -> None:
    module = ModuleType("petracache.example")
    module.__file__ = "/x/petracache/example.py"
    assert not compiled(module)
    module.__file__ = f"/x/petracache/example{EXTENSION_SUFFIXES[0]}"
    assert compiled(module)
    module.__file__ = "/x/petracache/__pycache__/example.cpython-311.pyc"
    assert not compiled(module)
    assert not compiled(ModuleType("no_file"))


def test_importing_petracache_installs_no_hook_and_reads_no_other_file(tmp_path: Path) -> None:
    """In a fresh interpreter that imports the same petracache as this one (PYTHONPATH)."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(PACKAGE_DIR.parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["meta_path"] == []
    assert report["path_hooks"] == []
    assert report["modules"] == ["petracache"]
    own = [Path(p) for p in report["opened"] if Path(p).resolve().is_relative_to(PACKAGE_DIR)]
    assert own, report["opened"]  # the audit hook saw the package's own file being read
    assert {p.name.split(".")[0] for p in own} == {"__init__"}, own


def test_the_listed_modules_run_as_one_build() -> None:
    """mypyc binds calls between compiled modules at compile time: one module from source
    among compiled ones would run two versions of the program."""
    modules = imported(listed_modules())
    assert "petracache.rules.build" in modules  # BUILD answers for the others
    builds = {name: "mypyc" if compiled(m) else "pure" for name, m in modules.items()}
    assert set(builds.values()) == {BUILD}, builds


def test_no_module_outside_the_list_is_compiled() -> None:
    listed = {*listed_modules(), "petracache._native__mypyc"}  # the group's shared library
    stray = []
    for path in PACKAGE_DIR.rglob("*"):
        suffix = next((s for s in EXTENSION_SUFFIXES if path.name.endswith(s)), None)
        if suffix is not None:
            parts = path.relative_to(PACKAGE_DIR.parent).parts
            name = ".".join([*parts[:-1], path.name.removesuffix(suffix)])
            if name not in listed:
                stray.append(str(path))
    assert stray == []


@needs_expected
def test_the_expected_build_runs() -> None:
    """The check on how scripts/test's pass picked its build (installed or source tree)."""
    files = {name: m.__file__ for name, m in imported(listed_modules()).items()}
    assert BUILD == EXPECTED, files
    if EXPECTED == "mypyc":
        assert all(str(f).endswith(EXTENSION_SUFFIXES[0]) for f in files.values()), files
        assert PACKAGE_DIR != ROOT / "petracache"  # the installed package, not the sources
    else:
        assert all(str(f).endswith(".py") for f in files.values()), files


@pytest.mark.integration
def test_a_server_the_tests_start_runs_the_same_build(tmp_path: Path) -> None:
    """The end-to-end tests drive ``python -m petracache`` processes: they must run the build
    under test, not another petracache on the path (an older install, or the sources)."""
    with PetracacheProcess(tmp_path / "pc") as server:
        client = server.client()
        client.send(b"stats settings\r\n")
        settings = client.read_until(b"END\r\n").decode()
        client.close()
    assert f"STAT build {BUILD}\r\n" in settings, (
        f"this process runs {BUILD} ({PACKAGE_DIR}), the server another build: run the tests"
        " as scripts/test does, or with PYTHONPATH=. for the sources"
    )
    assert f"build {BUILD}" in server.log()  # the start-up line


def test_mypy_is_pinned_to_one_version() -> None:
    """The mypyc that compiles (build-system.requires) is the mypy of scripts/check."""
    build = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("mypy")]
    dev = [r for r in PYPROJECT["project"]["optional-dependencies"]["dev"] if r.startswith("mypy")]
    assert len(build) == 1
    assert build[0].startswith("mypy==")
    assert dev == build


def test_the_compile_switch_is_no_unknown_server_option() -> None:
    """The server refuses unknown ``PETRACACHE_*`` variables as typos, but not setup.py's:
    ``PETRACACHE_COMPILE=0 ./scripts/serve`` passes its environment to the server."""
    assert COMPILE_ENV == "PETRACACHE_COMPILE"
    check_environment({COMPILE_ENV: "0"})
