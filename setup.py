"""petracache's optional compiled build: pyproject.toml holds the metadata; this file adds the
mypyc-compiled hot modules (``petracache.build.COMPILED``) when this machine can build them.

Rules:

1. ``PETRACACHE_COMPILE=0`` installs pure Python; ``=1`` compiles or fails the build; unset,
   the build compiles when mypy (a build requirement), a C compiler and Python's headers are
   all there, and otherwise installs pure Python with one line saying why.
2. Every build writes ``petracache/_compiled.json`` (``petracache.build`` reads it at import):
   the modules compiled and the digest of their sources, or, for a pure build, the reason.
3. The compile runs inside ``build_ext.run`` only, not at every ``setup.py`` invocation (pip
   also runs it for metadata). ``build_ext`` always runs (``Dist.has_ext_modules``), pure
   builds included, since it writes the manifest; its ``finalize_options`` names mypyc's
   extensions (the shared library and one per module) and ``run`` has mypyc generate their C.
4. An editable install (``pip install -e .``, what scripts/serve and scripts/test do) whose
   extensions in the source tree are still current for these sources and this Python skips
   the compile, so re-running those scripts costs seconds, not the minutes of a compile.
5. An editable build removes the extensions in the source tree that it did not build (a
   module dropped from the list, or all of them for a pure build): the source tree holds
   one build. (``petracache.build`` ignores such files anyway: the manifest decides.)
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

from setuptools import Distribution, Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
# A type-check configuration of its own: pyproject's [tool.mypy] loads the pydantic plugin,
# which the isolated build environment does not have. Modules outside the compiled set are
# only read for their types (follow-imports silent), and missing packages count as Any. A
# compiled class must not subclass such an Any (a third-party class): mypyc would build it
# as a native class without that base, and the result crashes (seen: prometheus_client's
# Collector), so that is an error here, whatever the build environment holds.
MYPY_FLAGS = [
    "--config-file=",
    "--follow-imports=silent",
    "--ignore-missing-imports",
    "--disallow-subclassing-any",
]


def _load_build() -> ModuleType:
    """petracache/build.py by file path: one digest and module list for setup and runtime."""
    path = ROOT / "petracache" / "build.py"
    spec = importlib.util.spec_from_file_location("_petracache_build", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses looks its module up while building classes
    spec.loader.exec_module(module)
    return module


build = _load_build()
COMPILE_ENV = build.COMPILE_ENV


def _say(message: str) -> None:
    print(f"petracache build: {message}", file=sys.stderr, flush=True)


def _missing_tool() -> str | None:
    """Why this machine cannot compile (rule 1), or None when it can."""
    if importlib.util.find_spec("mypyc") is None:
        return "mypy/mypyc is not installed in the build environment"
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").is_file():
        return f"no Python headers ({include}/Python.h; Debian: apt-get install python3-dev)"
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    if not cc or shutil.which(cc[0]) is None:
        return f"no C compiler ({' '.join(cc) or 'cc'} not found; Debian: apt-get install gcc)"
    return None


class Dist(Distribution):
    """Rule 3: build_ext runs for every build, even one with no extension to compile."""

    def has_ext_modules(self) -> bool:
        return True


class BuildExt(build_ext):
    """Rules 1-5 around setuptools' build_ext."""

    manifest: dict[str, object]

    def finalize_options(self) -> None:
        # Cheap: pip's metadata steps finalize build_ext too (for sdist's file list). The
        # extensions get their names here, as setuptools' finalize_options prepares each
        # one; mypyc generates their C sources in run().
        self.manifest, compile_now = self._plan(editable=bool(self.editable_mode or self.inplace))
        names = [build.NATIVE_LIB, *build.COMPILED] if compile_now else []
        self.distribution.ext_modules = [Extension(name, sources=[]) for name in names]
        super().finalize_options()

    def run(self) -> None:
        modules = self.manifest["modules"]
        assert isinstance(modules, list)
        if not self.extensions:
            _say(
                f"the {len(modules)} compiled modules are current; not recompiling"
                if modules
                else f"installing pure Python: {self.manifest['reason']}"
            )
        else:
            _say(f"compiling {len(modules)} modules with mypyc (a minute or two)")
            try:
                self._compile()
            except (SystemExit, Exception) as exc:  # mypyc exits on a type error; cc raises
                if os.environ.get(COMPILE_ENV) == "1":
                    raise
                for ext in self.extensions:  # a wheel must not ship half a build
                    Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
                self.manifest = {"modules": [], "reason": f"compile failed: {exc!r:.300}"}
                _say(f"installing pure Python: {self.manifest['reason']}")
        targets = [Path(self.build_lib) / "petracache"]
        if self.inplace:  # editable: the extensions and manifest live in the source tree
            targets.append(ROOT / "petracache")
            _remove_other_extensions(self.manifest)
        for target in targets:
            target.mkdir(parents=True, exist_ok=True)
            (target / build.MANIFEST).write_text(json.dumps(self.manifest, indent=1) + "\n")

    def _compile(self) -> None:
        """mypyc's C sources into the extensions named in finalize_options, then cc."""
        from mypyc.build import mypycify

        paths = [str(build.module_path(Path("petracache"), m)) for m in build.COMPILED]
        group = build.NATIVE_LIB.removesuffix("__mypyc")
        generated = {e.name: e for e in mypycify(paths + MYPY_FLAGS, group_name=group)}
        for ext in self.extensions:
            # Public fields, and mypyc's marker that spares unchanged in-place copies.
            for key, value in vars(generated[ext.name]).items():
                if not key.startswith("_") or key.startswith("_mypyc"):
                    setattr(ext, key, value)
        super().run()

    def _plan(self, editable: bool) -> tuple[dict[str, object], bool]:
        """Rules 1 and 4: the manifest of this build, and whether to compile for it."""
        wanted = os.environ.get(COMPILE_ENV, "")
        if wanted == "0":
            return _pure(f"{COMPILE_ENV}=0"), False
        missing = _missing_tool()
        if missing is not None:
            if wanted == "1":
                raise SystemExit(f"petracache build: {COMPILE_ENV}=1 but {missing}")
            return _pure(missing), False
        modules = list(build.COMPILED)
        manifest: dict[str, object] = {
            "modules": modules,
            "digest": build.source_digest(ROOT / "petracache", modules),
        }
        return manifest, not (editable and _current(manifest))


def _current(manifest: dict[str, object]) -> bool:
    """Rule 4: the source tree's manifest and extensions match these sources."""
    package = ROOT / "petracache"
    built = build.read_manifest(package) or {}
    return (
        built.get("modules") == manifest["modules"]
        and built.get("digest") == manifest["digest"]
        and all(build.has_extension(package, m) for m in [*build.COMPILED, build.NATIVE_LIB])
    )


def _remove_other_extensions(manifest: dict[str, object]) -> None:
    """Rule 5: an editable build leaves in the source tree only its own extensions."""
    modules = manifest["modules"]
    assert isinstance(modules, list)
    keep = {*modules, build.NATIVE_LIB} if modules else set()
    suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
    for path in (ROOT / "petracache").rglob("*"):
        suffix = next((s for s in suffixes if path.name.endswith(s)), None)
        if suffix is None:
            continue
        parts = path.relative_to(ROOT).parts
        if ".".join([*parts[:-1], parts[-1].removesuffix(suffix)]) not in keep:
            path.unlink()


def _pure(reason: str) -> dict[str, object]:
    return {"modules": [], "reason": reason}


setup(distclass=Dist, cmdclass={"build_ext": BuildExt})
