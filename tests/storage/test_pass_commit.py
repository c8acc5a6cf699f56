"""Group commit in the storage layer (``storage.writer``): with commits deferred, a pass's
writes wait in one batch, reads see them before the commit, the counts stay exact, and a
failed commit stores none of them and leaves no hot entry saying otherwise. Real RocksDB in
``tmp_path``; the hot items turned off where the pending overlay must answer alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from petracache.config import StorageSettings
from petracache.rules.verbs import StoreMode
from petracache.storage import codec
from petracache.storage.engine import Engine
from petracache.storage.errors import StorageError
from petracache.storage.items import Item
from tests.storage.engines import Clock


def deferred(tmp_path: Path, clock: Clock, hot: int = 0) -> Engine:
    engine = Engine(StorageSettings(db_path=str(tmp_path / "db"), hot_cache_size=hot), clock=clock)
    engine.defer_commits()
    return engine


def stored(engine: Engine, key: bytes) -> bytes | None:
    """The data RocksDB itself holds under ``key``."""
    raw = engine.db.items.get(key)
    return None if raw is None else codec.decode(raw).data


def test_writes_wait_for_the_commit_and_reads_see_them_first(tmp_path: Path, clock: Clock) -> None:
    engine = deferred(tmp_path, clock)
    try:
        engine.store(StoreMode.SET, b"a", 0, 0, b"1")
        engine.store(StoreMode.SET, b"b", 0, 0, b"2")
        assert stored(engine, b"a") is None  # not in RocksDB yet
        item = engine.fetch(b"a")  # the hot items are off: the pending batch answers
        assert item is not None
        assert item.data == b"1"
        new = engine.store(StoreMode.APPEND, b"b", 0, 0, b"x")  # reads the pending version
        assert isinstance(new, Item)
        assert new.data == b"2x"
        assert isinstance(engine.delete(b"a"), Item)
        assert engine.fetch(b"a") is None  # a pending delete hides the pending set
        written = engine.sequence.written
        engine.commit()
        assert engine.sequence.written == written + 4  # counted once committed
        assert stored(engine, b"a") is None
        assert stored(engine, b"b") == b"2x"
        assert engine.writer.pending == {}
    finally:
        engine.close()


def test_counts_stay_exact_over_pending_overwrites(tmp_path: Path, clock: Clock) -> None:
    """An overwrite of a key written earlier in the same pass (not in the hot items, not
    in RocksDB yet) replaces it: one item, the newer size."""
    engine = deferred(tmp_path, clock)
    try:
        engine.store(StoreMode.SET, b"k", 0, 0, b"short")
        engine.store(StoreMode.SET, b"k", 0, 0, b"a longer value")
        engine.commit()
        engine.store(StoreMode.SET, b"k", 0, 0, b"v3")  # over a committed version
        engine.delete(b"k")
        engine.store(StoreMode.SET, b"k", 0, 0, b"v4")
        engine.commit()
        counts = engine.item_counts
        raw = engine.db.items.get(b"k")
        assert raw is not None
        assert (counts.items, counts.bytes) == (1, codec.stored_size(b"k", raw))
    finally:
        engine.close()


def test_a_failed_commit_stores_nothing_and_later_writes_fail_one_by_one(
    tmp_path: Path, clock: Clock
) -> None:
    engine = deferred(tmp_path, clock, hot=1 << 20)
    try:
        engine.store(StoreMode.SET, b"k", 0, 0, b"v")
        assert engine.hot.peek(b"k") is not None
        engine.db.items.close()  # every RocksDB call fails from here
        with pytest.raises(StorageError):
            engine.commit()
        assert engine.hot.peek(b"k") is None  # no read may answer what was not stored
        assert engine.writer.pending == {}
        assert not engine.item_counts.exact
        assert engine.counters.extra["commit_failures"] == 1
        with pytest.raises(StorageError):  # written at once now, so the command fails
            engine.store(StoreMode.SET, b"k2", 0, 0, b"v")
    finally:
        with pytest.raises(StorageError):
            engine.close()


def test_autocommit_writes_at_once(tmp_path: Path, clock: Clock) -> None:
    """Without ``defer_commits`` (tools and tests using an engine directly) every write is
    in RocksDB when the operation returns."""
    engine = Engine(StorageSettings(db_path=str(tmp_path / "db")), clock=clock)
    try:
        engine.store(StoreMode.SET, b"k", 0, 0, b"v")
        assert stored(engine, b"k") == b"v"
        assert engine.writer.pending == {}
    finally:
        engine.close()
