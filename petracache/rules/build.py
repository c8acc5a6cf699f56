"""Which build runs: the mypyc-compiled modules, or the same modules from their ``.py`` files.

``pip install`` compiles the modules listed in pyproject.toml (``[tool.petracache.mypyc]``,
this one among them) into extensions installed beside their sources, and Python loads an
extension in preference to its ``.py``. Nothing is chosen at run time: an install built with
``PETRACACHE_COMPILE=0``, or the source tree on ``PYTHONPATH``, runs pure Python.
"""

from __future__ import annotations

import sys
from importlib.machinery import EXTENSION_SUFFIXES
from types import ModuleType
from typing import Final

# setup.py's switch, not a server option: config_loading.check_environment lets it through, so
# ``PETRACACHE_COMPILE=0 ./scripts/serve`` can pass its environment on to the server.
COMPILE_ENV: Final = "PETRACACHE_COMPILE"


def compiled(module: ModuleType) -> bool:
    """Whether ``module`` was loaded from a compiled extension rather than from source."""
    return str(getattr(module, "__file__", None)).endswith(tuple(EXTENSION_SUFFIXES))


# ``mypyc`` or ``pure``: this module is compiled with the others, in one install, so it
# answers for all of them (the start-up line, ``stats settings``, ``petracache_build_info``).
BUILD: Final = "mypyc" if compiled(sys.modules[__name__]) else "pure"
