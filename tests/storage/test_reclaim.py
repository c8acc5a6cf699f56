"""The background reclaimer against a real RocksDB in tmp_path, with an injected clock.

The reclaimer's steps and compactions are driven synchronously here (the trio loop in
``server.tasks`` only schedules them), so every interleaving of client writes and reclaim
steps below is chosen by the test, not by timing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from petracache.storage import index as idx
from petracache.storage.engine import Engine, StoreMode
from petracache.storage.reclaim.reclaimer import Reclaimer
from tests.storage.engines import Clock, store
from tests.storage.reclaiming import VALUE, drain, keys_of, make_engine, settle


@pytest.fixture
def engine(tmp_path: Path, clock: Clock) -> Iterator[Engine]:
    eng = make_engine(tmp_path / "db", clock)
    yield eng
    eng.close()


def sst_bytes(engine: Engine) -> int:
    return engine.db.property_int("rocksdb.total-sst-files-size")


def raw_keys(engine: Engine) -> set[bytes]:
    return set(keys_of(engine.db.items))


def test_reaped_items_disappear_and_their_space_is_compacted(engine: Engine, clock: Clock) -> None:
    for i in range(3000):
        engine.store(StoreMode.SET, b"ttl:%d" % i, 0, 10, VALUE)
    for i in range(50):
        engine.store(StoreMode.SET, b"keep:%d" % i, 0, 0, VALUE)
    engine.db.flush_memtables()
    full = sst_bytes(engine)
    assert full > 3000 * 1000

    reclaimer = Reclaimer(engine)
    drain(reclaimer)
    assert engine.counters.expired_reaped == 0  # nothing is due yet

    clock.now += 11
    drain(reclaimer)
    engine.db.flush_memtables()
    assert engine.counters.expired_reaped == 3000
    assert engine.counters.expired_lazy == 0
    assert engine.counters.reclaimed_bytes >= 3000 * 1000
    assert engine.counters.compactions >= 1
    assert raw_keys(engine) == {b"keep:%d" % i for i in range(50)}
    assert sst_bytes(engine) < full // 10
    assert not keys_of(engine.db.family("expiry"))


def test_lag_is_how_long_the_oldest_expired_item_has_been_dead(
    engine: Engine, clock: Clock
) -> None:
    """``Reclaimer.lag`` (petracache_reclaim_lag_seconds): 0 with nothing due, the age of the
    oldest dead item while it waits, 0 again once it is reaped."""
    engine.store(StoreMode.SET, b"ttl", 0, 10, VALUE)
    reclaimer = Reclaimer(engine)
    reclaimer.step()
    assert reclaimer.lag == 0  # due in 10 s
    clock.now += 100
    reclaimer.step()  # sees the item dead for 90 s, and reaps it
    assert reclaimer.lag == 90
    drain(reclaimer)
    assert reclaimer.lag == 0


def test_rewritten_keys_survive_reclaim(engine: Engine, clock: Clock) -> None:
    """Rewrites between reclaim steps (set, touch, gat, cas) are never lost."""
    for i in range(2000):
        engine.store(StoreMode.SET, b"k:%04d" % i, 0, 5, b"old")
    clock.now += 6
    reclaimer = Reclaimer(engine)
    assert reclaimer.step()  # one bounded step: part of the backlog is reaped
    reaped_first = engine.counters.expired_reaped
    assert 0 < reaped_first < 2000
    # The clock moved back (e.g. NTP): the items are live again, clients rewrite some.
    clock.now -= 6
    rewritten = {}
    for n, i in enumerate(range(1000, 2000, 10)):
        key = b"k:%04d" % i
        match n % 4:
            case 0:
                engine.store(StoreMode.SET, key, 0, 0, b"new")  # blind set: stale entry left
            case 1:
                assert engine.touch(key, 0)
            case 2:
                assert engine.touch(key, 100) is not None
            case _:
                old = engine.fetch(key)
                assert old is not None
                store(engine, StoreMode.CAS, key, 0, 0, b"cas", old.cas)
        rewritten[key] = engine.fetch(key)
    clock.now += 6
    drain(reclaimer)
    for key, item in rewritten.items():
        assert item is not None
        assert engine.fetch(key) == item, key
    assert engine.counters.expired_reaped == 2000 - len(rewritten)
    assert engine.counters.expired_lazy == 0


def test_entry_is_stale_once_the_item_is_rewritten(engine: Engine, clock: Clock) -> None:
    engine.store(StoreMode.SET, b"a", 0, 5, b"one")
    engine.store(StoreMode.SET, b"a", 0, 50, b"two")  # blind: the first entry is now stale
    assert len(keys_of(engine.db.family("expiry"))) == 2
    clock.now += 6
    drain(Reclaimer(engine))
    item = engine.fetch(b"a")
    assert item is not None
    assert item.data == b"two"
    assert engine.counters.expired_reaped == 0
    assert [idx.parse_expiry_key(bytes(k))[2] for k in keys_of(engine.db.family("expiry"))] == [
        b"a"
    ]


def test_flush_all_space_is_reclaimed(engine: Engine, clock: Clock) -> None:
    for i in range(2000):
        engine.store(StoreMode.SET, b"f:%d" % i, 0, 0, VALUE)
    engine.db.flush_memtables()
    full = sst_bytes(engine)
    engine.flush_all(0)
    clock.now += 1
    engine.store(StoreMode.SET, b"after", 0, 0, b"x")
    drain(Reclaimer(engine))
    engine.db.flush_memtables()
    assert engine.counters.flushed_reaped == 2000
    assert raw_keys(engine) == {b"after"}
    assert sst_bytes(engine) < full // 10
    # The reclaim is recorded: a new reclaimer (a restart) does not crawl again.
    again = Reclaimer(engine)
    drain(again)
    assert engine.counters.flushed_reaped == 2000


def test_delayed_flush_is_reclaimed_when_it_takes_effect(engine: Engine, clock: Clock) -> None:
    for i in range(100):
        engine.store(StoreMode.SET, b"d:%d" % i, 0, 0, b"x")
    engine.flush_all(10)
    reclaimer = Reclaimer(engine)
    drain(reclaimer)
    assert engine.counters.flushed_reaped == 0
    assert len(raw_keys(engine)) == 100
    clock.now += 10
    drain(reclaimer)
    assert engine.counters.flushed_reaped == 100
    assert raw_keys(engine) == set()


def test_eviction_keeps_writes_working_and_never_returns_stale_data(
    tmp_path: Path, clock: Clock
) -> None:
    bound = 2 * 1024 * 1024
    engine = make_engine(tmp_path / "db", clock, max_disk_bytes=bound)
    try:
        reclaimer = Reclaimer(engine, max_disk_bytes=bound)
        latest: dict[bytes, bytes] = {}
        peak = 0
        for i in range(6000):  # 3x the bound of writes, a quarter of them rewrites
            key = b"e:%d" % (i % 4500)
            value = b"%d:" % i + VALUE
            engine.store(StoreMode.SET, key, 0, 0, value)
            latest[key] = value
            if i % 200 == 0:
                drain(reclaimer)
                peak = max(peak, reclaimer.disk_usage())
        drain(reclaimer)
        assert engine.counters.evictions > 0
        assert peak < 2 * bound
        hits = 0
        for key, value in latest.items():
            item = engine.fetch(key)
            if item is not None:
                hits += 1
                assert item.data == value, key
        assert 0 < hits < len(latest)
        # FIFO by write age: the most recent writes survived.
        assert engine.fetch(b"e:%d" % (5999 % 4500)) is not None
    finally:
        engine.close()


def test_index_is_backfilled_when_reclaim_is_turned_on(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "db"
    engine = make_engine(path, clock, enable_ttl_compaction=False)
    for i in range(300):
        engine.store(StoreMode.SET, b"b:%d" % i, 0, 5, b"x")
    engine.store(StoreMode.SET, b"forever", 0, 0, b"x")
    assert not keys_of(engine.db.family("expiry"))
    engine.close()
    del engine  # column-family handles keep RocksDB's lock until they are released

    engine = make_engine(path, clock)
    try:
        assert engine.index.needs_backfill()
        drain(Reclaimer(engine))
        assert not engine.index.needs_backfill()
        assert len(keys_of(engine.db.family("expiry"))) == 300
        clock.now += 6
        drain(Reclaimer(engine))
        assert engine.counters.expired_reaped == 300
        assert raw_keys(engine) == {b"forever"}
    finally:
        engine.close()


def test_eviction_turned_on_later_backfills_while_it_evicts(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "db"
    engine = make_engine(path, clock)
    for i in range(3000):
        engine.store(StoreMode.SET, b"old:%d" % i, 0, 0, VALUE)
    engine.close()
    del engine

    bound = 1024 * 1024
    engine = make_engine(path, clock, max_disk_bytes=bound)
    try:
        assert engine.index.needs_backfill()
        reclaimer = Reclaimer(engine, max_disk_bytes=bound)
        drain(reclaimer)
        assert not engine.index.needs_backfill()
        assert engine.counters.evictions > 0
        settle(reclaimer)
        assert reclaimer.disk_usage() < bound
    finally:
        engine.close()


def test_without_reclaim_no_index_is_written(tmp_path: Path, clock: Clock) -> None:
    engine = make_engine(tmp_path / "db", clock, enable_ttl_compaction=False)
    try:
        engine.store(StoreMode.SET, b"k", 0, 5, b"x")
        assert not engine.index.track_expiry
        assert not engine.index.track_age
        assert not keys_of(engine.db.family("expiry"))
        assert not keys_of(engine.db.family("age"))
    finally:
        engine.close()


def on_disk(path: Path) -> int:
    """SST plus WAL bytes in the database directory, from its file listing."""
    wal = [p for p in path.glob("*.log") if p.stem.isdigit()]
    return sum(p.stat().st_size for p in [*path.glob("*.sst"), *wal])


def test_bounded_usage_counts_wal_files_the_memtables_no_longer_hold(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "db"
    engine = make_engine(path, clock, max_disk_bytes=64 << 20)
    try:
        reclaimer = Reclaimer(engine, max_disk_bytes=64 << 20)
        for i in range(200):  # less than one 256 KiB memtable
            engine.store(StoreMode.SET, b"w:%d" % i, 0, 0, VALUE)
        # Flush the items alone: their WAL file stays, pinned by the age index's memtable,
        # and still takes its space on disk.
        engine.db.items.flush(True)
        assert engine.db.property_int("rocksdb.cur-size-all-mem-tables") < 10_000  # empty arena
        assert reclaimer.disk_usage() >= on_disk(path) > 2 * 200 * len(VALUE)
    finally:
        engine.close()
