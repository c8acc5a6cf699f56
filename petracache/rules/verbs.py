"""The storage verbs, shared by the protocol layer (what a command asks) and the storage
layer (what a write does), like ``sizes`` and ``numbers``: a plain, dependency-free module,
so neither layer imports the other and no mapping between two copies is needed.
"""

from __future__ import annotations

import enum


class StoreMode(enum.Enum):
    """The storage verbs that carry a data block."""

    SET = "set"
    ADD = "add"
    REPLACE = "replace"
    APPEND = "append"
    PREPEND = "prepend"
    CAS = "cas"
