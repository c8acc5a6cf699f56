"""Compiles petracache's hot modules with mypyc when pip builds the package; everything else
about the package is in pyproject.toml.

The modules compiled are listed in pyproject.toml, ``[tool.petracache.mypyc] modules``
(docs/internals.md, "Compiled build", says why each is or is not there). A compile that
fails (a type error, a listed file that does not exist, no C compiler) fails the install
with mypyc's or the compiler's message. ``PETRACACHE_COMPILE=0`` installs pure Python.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from setuptools import setup

# mypy's settings for the compile, instead of pyproject's [tool.mypy], whose pydantic plugin
# is not in the isolated build environment. Modules not listed are only read for their
# types, and packages missing there (trio, rocksdict, pydantic) count as Any. A compiled
# class must not subclass such an Any: mypyc would build it as a native class without that
# base, and it crashes at run time (prometheus_client's Collector did).
MYPY_ARGS = [
    "--config-file=",
    "--follow-imports=silent",
    "--ignore-missing-imports",
    "--disallow-subclassing-any",
    "--cache-dir=build/mypyc-cache",  # not scripts/check's .mypy_cache: other options
]

if os.environ.get("PETRACACHE_COMPILE") == "0":
    setup()
else:
    from mypyc.build import mypycify

    pyproject = tomllib.loads((Path(__file__).parent / "pyproject.toml").read_text())
    modules = pyproject["tool"]["petracache"]["mypyc"]["modules"]
    # One shared library for all of them, inside the package: petracache/_native__mypyc*.so.
    setup(ext_modules=mypycify([*MYPY_ARGS, *modules], group_name="petracache._native"))
