"""Eviction policies and the release of the WAL after reclaim, on a real RocksDB in tmp_path.

As in ``test_reclaim``, reclaim steps and their jobs (flushes, compactions) are driven
synchronously, so which items are read, written and evicted is chosen by the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from petracache.rules.verbs import StoreMode
from petracache.storage import index as idx, items, rocks
from petracache.storage.engine import Engine
from petracache.storage.reclaim.jobs import memtables_mostly_dead
from petracache.storage.reclaim.reclaimer import Reclaimer
from tests.storage.engines import Clock
from tests.storage.reclaiming import (
    BOUND,
    VALUE,
    bounded,
    drain,
    fill_until,
    gone,
    keys_of,
    make_engine,
    settle,
)


def requeued(engine: Engine, count: int) -> Callable[[], bool]:
    return lambda: engine.counters.extra.get("evicted_active", 0) >= count


@pytest.mark.parametrize(
    ("eviction", "kept", "counter"),
    [("s3fifo", True, "moves_to_main"), ("clock", True, "evicted_active"), ("fifo", False, "")],
)
def test_a_read_item_outlives_an_unread_younger_one_unless_fifo(
    tmp_path: Path, clock: Clock, eviction: str, kept: bool, counter: str
) -> None:
    with bounded(tmp_path, clock, eviction) as (engine, reclaimer):
        engine.store(StoreMode.SET, b"hot", 0, 0, VALUE)
        engine.store(StoreMode.SET, b"cold", 0, 0, VALUE)  # written after hot, never read
        assert engine.fetch(b"hot") is not None
        fill_until(engine, reclaimer, b"fill", gone(engine, b"cold"))
        assert (engine.read(b"hot", engine.now()) is not None) is kept
        extra = engine.counters.extra
        # Spared because read (a ghost admission is a Bloom filter's false positive here).
        spared = sum(extra.get(name, 0) for name in ("evicted_active", "moves_to_main"))
        assert spared - extra.get("ghost_admissions", 0) == (1 if kept else 0)
        if counter:
            assert extra[counter] - extra.get("ghost_admissions", 0) == 1


def test_a_spared_item_is_the_same_version_and_is_evicted_unless_read_again(
    tmp_path: Path, clock: Clock
) -> None:
    with bounded(tmp_path, clock, "clock") as (engine, reclaimer):
        engine.store(StoreMode.SET, b"once", 0, 0, VALUE)
        engine.store(StoreMode.SET, b"often", 0, 0, VALUE)
        before = engine.fetch(b"once")
        assert before is not None
        assert engine.fetch(b"often") is not None
        fill_until(engine, reclaimer, b"a", requeued(engine, 2))
        spared = engine.read(b"once", engine.now())
        assert spared is not None
        # Only the eviction state moved: data, CAS, deadline and the fetched bit (meta h) stay.
        assert spared.replace(bits=spared.bits | items.ACTIVE) == before
        assert spared.bits & items.FETCHED
        assert not spared.bits & items.ACTIVE
        # The next read records the access again (one hint write); the reads after it do not.
        engine.fetch(b"often")
        again, _ = engine.stored(b"often")
        assert again is not None
        assert again.bits & items.ACTIVE
        assert not items.fetch_is_news(again, engine.now())
        # Another pass: "once" was not read since it was spared, "often" keeps being read.
        fill_until(engine, reclaimer, b"b", gone(engine, b"once"), read=b"often")
        assert engine.read(b"often", engine.now()) is not None


def test_requeued_entries_name_their_version_and_go_stale_on_rewrite(
    tmp_path: Path, clock: Clock
) -> None:
    with bounded(tmp_path, clock, "clock") as (engine, reclaimer):
        engine.store(StoreMode.SET, b"k", 0, 0, VALUE)
        engine.fetch(b"k")
        fill_until(engine, reclaimer, b"a", requeued(engine, 1))
        stored, _ = engine.stored(b"k")
        assert stored is not None
        age = engine.db.family("age")
        entries = [e for e in keys_of(age) if idx.parse_age_key(e)[1] == b"k"]
        assert len(entries) == 1
        position, _key = idx.parse_age_key(entries[0])
        assert position > stored.cas  # moved to the tail
        value = age.get(entries[0])
        assert value is not None
        assert idx.age_version(position, value) == stored.cas
        engine.store(
            StoreMode.SET, b"k", 0, 0, b"new"
        )  # a blind set: the requeued entry goes stale
        fill_until(engine, reclaimer, b"b", gone(engine, b"k"))
        assert not [e for e in keys_of(age) if idx.parse_age_key(e)[1] == b"k"]


@pytest.mark.parametrize("eviction", ["s3fifo", "clock"])
def test_over_the_bound_nothing_is_spared(tmp_path: Path, clock: Clock, eviction: str) -> None:
    with bounded(tmp_path, clock, eviction) as (engine, reclaimer):
        for i in range(3000):  # 1.5x the bound before eviction looks: usage is past it
            engine.store(StoreMode.SET, b"r:%d" % i, 0, 0, VALUE)
            engine.fetch(b"r:%d" % i)
        settle(reclaimer)
        assert engine.counters.evictions > 0
        assert reclaimer.disk_usage() < BOUND


def wal(engine: Engine) -> int:
    return rocks.wal_bytes(engine.settings.db_path)


@contextmanager
def big_memtables(tmp_path: Path, clock: Clock) -> Iterator[Engine]:
    """An engine whose memtables hold every write of these tests, so only a flush releases
    the log (the idle server of issue 16); closed afterwards."""
    engine = make_engine(tmp_path / "db", clock, write_buffer_size=16 << 20)
    try:
        yield engine
    finally:
        engine.close()


def test_the_wal_is_released_once_expired_items_are_reaped(tmp_path: Path, clock: Clock) -> None:
    with big_memtables(tmp_path, clock) as engine:
        for i in range(4000):
            engine.store(StoreMode.SET, b"ttl:%d" % i, 0, 3, VALUE)
        engine.store(StoreMode.SET, b"keep", 0, 0, b"x")
        assert wal(engine) > 4000 * len(VALUE)
        clock.now += 4
        drain(Reclaimer(engine))
        assert engine.counters.expired_reaped == 4000
        assert engine.counters.extra["reclaim_flushes"] == 1
        assert wal(engine) < 64 * 1024
        assert engine.fetch(b"keep") is not None


def test_the_wal_is_released_after_flush_all(tmp_path: Path, clock: Clock) -> None:
    with big_memtables(tmp_path, clock) as engine:
        for i in range(3000):
            engine.store(StoreMode.SET, b"f:%d" % i, 0, 0, VALUE)
        engine.flush_all(0)
        clock.now += 1
        drain(Reclaimer(engine))
        assert engine.counters.flushed_reaped == 3000
        assert wal(engine) < 64 * 1024


def test_live_memtables_are_not_flushed(tmp_path: Path, clock: Clock) -> None:
    with big_memtables(tmp_path, clock) as engine:
        for i in range(3000):
            engine.store(StoreMode.SET, b"live:%d" % i, 0, 0, VALUE)
        for i in range(1200):
            engine.store(StoreMode.SET, b"ttl:%d" % i, 0, 3, VALUE)
        clock.now += 4
        drain(Reclaimer(engine))
        assert engine.counters.expired_reaped == 1200
        assert "reclaim_flushes" not in engine.counters.extra
        assert wal(engine) > 3000 * len(VALUE)


@pytest.mark.parametrize(
    ("entries", "deletes", "wal_bytes", "flush"),
    [
        (0, 0, 0, False),
        (10, 10, 8 << 20, True),  # tombstones only
        (200, 100, 8 << 20, True),  # every put shadowed
        (300, 100, 8 << 20, True),  # half of them
        (400, 100, 8 << 20, False),  # a third
        (200, 100, 1000, False),  # too little log to bother
    ],
)
def test_mostly_dead(entries: int, deletes: int, wal_bytes: int, flush: bool) -> None:
    assert memtables_mostly_dead(entries, deletes, wal_bytes) is flush
