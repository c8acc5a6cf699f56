"""Which build of the hot modules runs: mypyc-compiled, or the same files as pure Python.

setup.py compiles the modules in ``COMPILED`` with mypyc when the machine can (a C compiler,
Python's headers, mypy in the build environment) and writes ``MANIFEST`` beside this file:
the modules it compiled and ``source_digest`` of their sources. The ``.py`` files stay
installed next to the extensions, so one set of sources is both builds.

Rules, applied once by ``select()`` at ``import petracache``, before any submodule loads:

1. Compiled modules run only if the manifest lists them, each has an extension for this
   interpreter, the sources still hash to the recorded digest, and ``PURE_ENV`` is unset.
   An editable install keeps the extensions in the source tree, where Python prefers them
   to the ``.py``: after an edit they would silently run the old code (rule 3).
2. All or nothing: mypyc calls between compiled modules go straight to the compiled
   functions and native classes, so a module loaded from source beside compiled ones
   would split one program into two versions. When rule 1 fails, a ``sys.meta_path``
   finder loads every ``petracache.*`` module from its ``.py``.
3. Stale extensions (sources edited or missing extensions) log one warning; a pure build,
   or ``PURE_ENV`` set, is not a problem and logs nothing.

This module is loaded by setup.py by file path, before petracache is installed: it imports
only the standard library and is never compiled itself.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Final

PACKAGE: Final = "petracache"
PACKAGE_DIR: Final = Path(__file__).resolve().parent
MANIFEST: Final = "_compiled.json"
# Set to anything but "" or "0": run the .py sources even when compiled modules are current.
PURE_ENV: Final = "PETRACACHE_PURE"
# setup.py's: "0" installs pure Python, "1" compiles or fails the install.
COMPILE_ENV: Final = "PETRACACHE_COMPILE"
# Not server options: config.check_environment must not refuse them as typos.
ENVIRONMENT: Final = (PURE_ENV, COMPILE_ENV)

# The modules setup.py compiles: the request path (parse -> execute -> store -> encode, and
# the per-request metrics, and server/ready.py: the reactor's per-connection loop, which has no
# trio in it) and the pure rules it calls. Not the rest of server/ (trio async code), not the
# storage modules off the request path (the reclaimer, backups, rocksdict's plumbing), not
# the composition root (docs/internals.md, "Compiled build", says why for each).
COMPILED: Final[tuple[str, ...]] = (
    "petracache.rules.numbers",
    "petracache.rules.sizes",
    "petracache.rules.slabs",
    "petracache.rules.ttl",
    "petracache.rules.verbs",
    "petracache.rules.versions",
    "petracache.protocol.admin",
    "petracache.protocol.binary",
    "petracache.protocol.binary_compose",
    "petracache.protocol.binary_requests",
    "petracache.protocol.compose",
    "petracache.protocol.connection",
    "petracache.protocol.crawler",
    "petracache.protocol.detect",
    "petracache.protocol.meta",
    "petracache.protocol.meta_requests",
    "petracache.protocol.requests",
    "petracache.protocol.responses",
    "petracache.protocol.text",
    "petracache.protocol.tokens",
    "petracache.commands.admin",
    "petracache.commands.binary",
    "petracache.commands.classic",
    "petracache.commands.context",
    "petracache.commands.crawler",
    "petracache.commands.executor",
    "petracache.commands.leases",
    "petracache.commands.mcrouter",
    "petracache.commands.meta",
    "petracache.commands.prefix_stats",
    "petracache.commands.stats",
    "petracache.commands.stats_groups",
    "petracache.storage.cas",
    "petracache.storage.codec",
    "petracache.storage.database",
    "petracache.storage.engine",
    "petracache.storage.flush",
    "petracache.storage.hot",
    "petracache.storage.index",
    "petracache.storage.item_counts",
    "petracache.storage.items",
    "petracache.storage.statistics",
    "petracache.storage.write_sequence",
    "petracache.storage.writer",
    "petracache.observability.counters",
    "petracache.observability.request_metrics",
    "petracache.server.ready",
)
# mypyc's shared library holding all of them (setup.py's group_name + "__mypyc").
NATIVE_LIB: Final = "petracache._native__mypyc"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BuildState:
    """What ``select()`` decided: whether compiled modules run, and a word on why."""

    compiled: bool
    detail: str
    modules: frozenset[str] = frozenset()  # the compiled modules in use


_state = BuildState(compiled=False, detail="pure Python (not selected yet)")


def module_path(package_dir: Path, module: str) -> Path:
    """The ``.py`` file of ``module`` (``petracache.x.y``) under ``package_dir``."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        raise ValueError(f"{module} is not in {PACKAGE}")
    return package_dir.joinpath(*parts[1:]).with_suffix(".py")


def source_digest(package_dir: Path, modules: Iterable[str]) -> str:
    """SHA-256 over the modules' names and source bytes: what the extensions were built from.

    Contents, not modification times, so a checkout that rewrites files unchanged keeps the
    build current.
    """
    digest = hashlib.sha256()
    for module in sorted(modules):
        digest.update(module.encode() + b"\0")
        digest.update(module_path(package_dir, module).read_bytes() + b"\0")
    return digest.hexdigest()


def read_manifest(package_dir: Path) -> dict[str, object] | None:
    """The manifest setup.py wrote, or None when there is none (never built, or unreadable)."""
    try:
        data = json.loads((package_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def has_extension(package_dir: Path, module: str) -> bool:
    """Whether ``module`` has an extension this interpreter can load (its ABI tag matches)."""
    base = module_path(package_dir, module).with_suffix("")
    return any(
        base.with_name(base.name + suffix).is_file()
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )


def decide(package_dir: Path, environ: Mapping[str, str]) -> tuple[BuildState, bool]:
    """Rule 1: the build to run, and whether the reason deserves a warning (stale)."""
    manifest = read_manifest(package_dir) or {}
    modules = manifest.get("modules")
    if not isinstance(modules, list) or not modules:
        reason = manifest.get("reason")
        return BuildState(False, f"pure Python ({reason or 'not compiled'})"), False
    if environ.get(PURE_ENV, "") not in ("", "0"):
        return BuildState(False, f"pure Python ({PURE_ENV}={environ[PURE_ENV]})"), False
    names = [str(m) for m in modules]
    try:
        missing = [m for m in [*names, NATIVE_LIB] if not has_extension(package_dir, m)]
        current = "" if missing else source_digest(package_dir, names)
    except (OSError, ValueError) as exc:  # a source gone, a module outside the package
        return BuildState(False, f"pure Python (stale build: {exc})"), True
    if missing:
        why = f"stale build: no extension for {missing[0]} on this Python; rebuild"
        return BuildState(False, f"pure Python ({why})"), True
    if current != manifest.get("digest"):
        why = "stale build: sources changed since the compile; rebuild with pip install -e ."
        return BuildState(False, f"pure Python ({why})"), True
    detail = f"mypyc ({len(names)} modules compiled)"
    return BuildState(True, detail, frozenset(names)), False


class SourceFinder(MetaPathFinder):
    """Rule 2: loads each ``petracache.*`` module outside ``native`` from its ``.py``, even
    where an extension sits beside it (stale, or left by an older build)."""

    def __init__(self, native: frozenset[str]) -> None:
        self.native = native

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """A source spec for a petracache module with a ``.py`` file; None defers to the rest
        of ``sys.meta_path`` (compiled modules, packages, everything outside petracache)."""
        if path is None or not fullname.startswith(PACKAGE + ".") or fullname in self.native:
            return None
        name = fullname.rpartition(".")[2] + ".py"
        for entry in path:
            candidate = os.path.join(entry, name)
            if os.path.isfile(candidate):
                return importlib.util.spec_from_file_location(fullname, candidate)
        return None


def select(environ: Mapping[str, str] = os.environ) -> BuildState:
    """Apply the rules once, at ``import petracache``; returns the decision.

    Error handling: never raises; any doubt about the compiled build means pure Python.
    """
    global _state
    state, stale = decide(PACKAGE_DIR, environ)
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, SourceFinder)]
    sys.meta_path.insert(0, SourceFinder(state.modules))
    if stale:
        log.warning("petracache: running %s", state.detail)
    _state = state
    return state


def compiled() -> bool:
    """Whether the mypyc-compiled modules are the ones running."""
    return _state.compiled


def describe() -> str:
    """One phrase for the start-up line: ``mypyc (N modules compiled)`` or ``pure Python (why)``."""
    return _state.detail


def label() -> str:
    """``mypyc`` or ``pure``: the ``build`` label of ``petracache_build_info``."""
    return "mypyc" if _state.compiled else "pure"
