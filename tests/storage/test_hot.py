"""The hot items (``storage.hot``): bounded, least recently used, and always what RocksDB holds.

The invariant checked throughout: an entry, when present, equals the decoded value RocksDB
holds under its key, after every kind of write (set, stores, deltas, touches, fetch
records, deletes, lazy expiry, reclaim batches that delete, evict or requeue).
"""

from __future__ import annotations

import gc
import random
from pathlib import Path

from petracache.storage import codec
from petracache.storage.codec import Item
from petracache.storage.engine import Engine, StoreMode
from petracache.storage.hot import ENTRY_OVERHEAD, HotItems
from petracache.storage.reclaim import Reclaimer
from tests.storage.conftest import Clock, open_engine
from tests.storage.test_reclaim import VALUE, drain, make_engine


def item(data: bytes, cas: int = 1) -> Item:
    return Item(0, 0, 0, cas, data)


def cost(key: bytes, data: bytes) -> int:
    return len(key) + len(data) + ENTRY_OVERHEAD


def assert_coherent(engine: Engine) -> None:
    """Every hot entry is the decoded value RocksDB holds under its key."""
    db = engine.raw_db()
    for key in list(engine.hot._entries):
        raw = db.get(key)
        assert raw is not None, f"hot entry for deleted key {key!r}"
        assert engine.hot.peek(key) == codec.decode(raw), key


def test_least_recently_used_leave_first_and_the_bound_holds() -> None:
    one = cost(b"k00", b"x" * 100)
    hot = HotItems(10 * one)
    for i in range(10):
        hot.put(b"k%02d" % i, item(b"x" * 100))
    assert hot.get(b"k00") is not None  # k00 is now the most recently used
    hot.put(b"k10", item(b"x" * 100))
    assert hot.peek(b"k01") is None
    assert all(hot.peek(b"k%02d" % i) is not None for i in (0, *range(2, 11)))
    assert hot.bytes == 10 * one <= hot.capacity
    assert hot.evictions == 1


def test_replacing_and_dropping_keep_the_byte_count_exact() -> None:
    hot = HotItems(1 << 20)
    hot.put(b"a", item(b"x" * 10))
    hot.put(b"a", item(b"y" * 50, cas=2))
    assert hot.bytes == cost(b"a", b"y" * 50)
    assert hot.peek(b"a") == item(b"y" * 50, cas=2)
    hot.drop(b"a")
    hot.drop(b"never there")
    assert hot.bytes == 0
    assert len(hot) == 0


def test_entries_are_plain_tuples_the_collector_stops_tracking(engine: Engine) -> None:
    # storage.hot's reason: an Item (a NamedTuple) stays tracked by the collector forever, so
    # every full collection would walk every hot item. Holds for both builds (mypyc too).
    engine.set(b"set", 1, 0, b"v")
    engine.store(StoreMode.SET, b"store", 2, 100, b"w")
    assert engine.fetch(b"store") is not None  # a fetch record rewrites the entry
    assert engine.read(b"set", engine.now()) is not None
    entries = [engine.hot._entries[key] for key in (b"set", b"store")]
    assert [type(entry) for entry in entries] == [tuple, tuple]
    gc.collect()
    assert not any(gc.is_tracked(entry) for entry in entries)
    hit = engine.hot.get(b"set")
    assert type(hit) is Item  # what callers get is still an Item


def test_an_item_larger_than_an_eighth_is_not_kept_and_replaces_nothing_stale() -> None:
    hot = HotItems(8 * 1024)
    hot.put(b"big", item(b"small"))
    hot.put(b"big", item(b"x" * 1024))  # too big: the old entry must not survive either
    assert hot.peek(b"big") is None
    assert hot.bytes == 0


def test_capacity_zero_keeps_nothing() -> None:
    hot = HotItems(0)
    hot.put(b"a", item(b"x"))
    assert hot.get(b"a") is None
    assert hot.misses == 1


def test_a_second_read_is_served_from_memory(engine: Engine) -> None:
    engine.set(b"k", 5, 0, b"value")
    engine.hot.clear()  # as after a restart
    first = engine.read(b"k", engine.now())
    hits = engine.hot.hits
    second = engine.read(b"k", engine.now())
    assert first == second
    assert second is not None
    assert (second.data, second.flags) == (b"value", 5)
    assert engine.hot.hits == hits + 1


def test_expired_and_flushed_hot_items_are_not_returned(engine: Engine, clock: Clock) -> None:
    engine.set(b"short", 0, 10, b"v")
    engine.set(b"flushed", 0, 0, b"v")
    assert engine.read(b"short", engine.now()) is not None
    clock.now += 11
    assert engine.read(b"short", engine.now()) is None
    assert engine.hot.peek(b"short") is None  # the lazy delete dropped it
    engine.flush_all(0)
    assert engine.fetch(b"flushed") is None
    assert_coherent(engine)


def test_random_operations_keep_the_hot_items_coherent(tmp_path: Path, clock: Clock) -> None:
    # A small cache, so entries also leave by the bound while the operations run.
    engine = open_engine(tmp_path / "db", clock, hot_cache_size=40 * cost(b"key:00", b"x" * 64))
    rng = random.Random(12)
    try:
        for step in range(3000):
            key = b"key:%02d" % rng.randrange(60)
            op = rng.randrange(10)
            data = b"%d" % rng.randrange(1000) if op in (3, 4) else b"x" * rng.randrange(65)
            if op == 0:
                engine.set(key, rng.randrange(4), rng.choice((0, 0, 3)), data)
            elif op == 1:
                engine.store(StoreMode.ADD, key, 0, 0, data)
            elif op == 2:
                engine.store(StoreMode.APPEND, key, 0, 0, b"+")
            elif op == 3:
                engine.delta(key, rng.randrange(5), rng.random() < 0.5)
            elif op == 4:
                engine.store(StoreMode.SET, key, 0, 0, data)
            elif op == 5:
                engine.touch(key, rng.choice((0, 2)))
            elif op == 6:
                engine.remove(key)
            else:
                engine.fetch(key)
            if step % 97 == 0:
                clock.now += 1
            if step % 211 == 0:
                assert_coherent(engine)
        assert_coherent(engine)
        assert engine.hot.evictions > 0
    finally:
        engine.close()


def test_reclaim_batches_drop_what_they_delete_or_requeue(tmp_path: Path, clock: Clock) -> None:
    bound = 2 * 1024 * 1024
    engine = make_engine(tmp_path / "db", clock, max_disk_bytes=bound)
    try:
        reclaimer = Reclaimer(engine, max_disk_bytes=bound)
        for i in range(4000):
            key = b"e:%d" % i
            engine.set(key, 0, 30 if i % 3 == 0 else 0, b"%d:" % i + VALUE)
            if i % 2 == 0:
                engine.fetch(key)  # sets the active bit: eviction requeues instead
            if i % 250 == 0:
                drain(reclaimer)
                assert_coherent(engine)
        clock.now += 31  # a third expire: the expiry pass deletes them
        drain(reclaimer)
        assert engine.counters.evictions > 0
        assert engine.counters.expired_reaped > 0
        assert_coherent(engine)
    finally:
        engine.close()
