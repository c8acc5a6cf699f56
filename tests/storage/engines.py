"""Engines for in-process tests: a settable clock, a small engine on a real RocksDB, and the
classic store/incr/delete calls reduced to what the tests compare.

Shared by the storage, command and observability tests (fixtures built on them are in
``tests/conftest.py`` and ``tests/storage/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from petracache.config import StorageSettings
from petracache.rules.verbs import StoreMode
from petracache.storage import codec
from petracache.storage.engine import Engine
from petracache.storage.items import DeltaResult, Item, StoreResult

T0 = 1_700_000_000


class Clock:
    """A settable clock; the engine reads whole seconds from it, so tests never sleep."""

    def __init__(self, start: float = float(T0)) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def open_engine(
    path: Path, clock: Clock, item_size_max: int = 1024 * 1024, **options: Any
) -> Engine:
    """A small-memory engine on a real database at ``path``."""
    defaults: dict[str, Any] = {
        "write_buffer_size": 256 * 1024,
        "block_cache_size": 1 << 20,
        "enable_ttl_compaction": False,
    }
    settings = StorageSettings(db_path=str(path), **(defaults | options))
    return Engine(settings, clock=clock, item_size_max=item_size_max)


def store(
    engine: Engine,
    mode: StoreMode,
    key: bytes,
    flags: int,
    exptime: int,
    data: bytes,
    cas_unique: int = 0,
) -> tuple[StoreResult, int]:
    """A classic store through ``Engine.store``: (result, the new CAS or 0)."""
    outcome = engine.store(mode, key, flags, exptime, data, cas_unique)
    if isinstance(outcome, Item):
        return StoreResult.STORED, outcome.cas
    return outcome, 0


def delta(engine: Engine, key: bytes, amount: int, incr: bool) -> int | DeltaResult:
    """incr/decr through ``Engine.delta``: the new number, or why there is none."""
    outcome = engine.delta(key, amount, incr)
    return int(outcome.data) if isinstance(outcome, Item) else outcome


def delete(engine: Engine, key: bytes) -> bool:
    """A classic delete through ``Engine.delete``; False if there was no live item."""
    return isinstance(engine.delete(key), Item)


def walked(engine: Engine) -> tuple[int, int]:
    """Keys and bytes of the items family, counted the slow way (what the exact counts must
    equal)."""
    items = size = 0
    it = engine.db.items.iter()
    it.seek_to_first()
    while it.valid():
        items += 1
        size += codec.stored_size(it.key(), it.value())
        it.next()
    return items, size
