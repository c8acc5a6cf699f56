"""The exact item counts (curr_items, bytes) and the liveness record, on a real RocksDB."""

from __future__ import annotations

import contextlib
import gc
from pathlib import Path

from petracache.rules.verbs import StoreMode
from petracache.storage import codec
from petracache.storage.engine import Engine
from petracache.storage.reclaim.reclaimer import Reclaimer
from petracache.storage.warm_restart import LastRun, judge
from tests.storage.engines import Clock, open_engine, walked


def counts(engine: Engine) -> tuple[int, int]:
    assert engine.item_counts.exact
    return engine.item_counts.items, engine.item_counts.bytes


def test_every_write_path_keeps_the_tally_exact(tmp_path: Path, clock: Clock) -> None:
    engine = open_engine(tmp_path / "db", clock)
    try:
        for _ in range(3):
            for i in range(20):
                engine.store(StoreMode.SET, b"k%d" % i, 0, 0, b"v" * i)
        for i in range(20):
            engine.fetch(b"k%d" % i)  # fetch records are rewrites, not new items
        assert counts(engine)[0] == 20
        engine.store(StoreMode.ADD, b"added", 0, 0, b"x")
        engine.store(StoreMode.APPEND, b"k1", 0, 0, b"more")
        engine.store(StoreMode.REPLACE, b"k2", 0, 0, b"r" * 100)
        engine.store(StoreMode.SET, b"n", 0, 0, b"5")
        engine.delta(b"n", 10, True)
        engine.touch(b"k3", 100)
        engine.delete(b"k4")
        engine.delete(b"absent")
        engine.store(
            StoreMode.SET, b"gone", 0, -1, b"x"
        )  # stored already expired, as memcached links it
        engine.store(StoreMode.SET, b"short", 0, 5, b"x")
        assert counts(engine) == walked(engine)
        clock.now += 10
        assert engine.fetch(b"short") is None  # lazy expiry deletes it
        assert engine.fetch(b"gone") is None
        assert counts(engine) == walked(engine)
        assert counts(engine)[0] == 21
    finally:
        engine.close()


def test_reclaim_batches_take_their_deletions_off(tmp_path: Path, clock: Clock) -> None:
    engine = open_engine(tmp_path / "db", clock, enable_ttl_compaction=True)
    try:
        for i in range(50):
            engine.store(StoreMode.SET, b"t%d" % i, 0, 5 if i % 2 else 0, b"v")
        clock.now += 10
        reclaimer = Reclaimer(engine)
        while reclaimer.step():
            pass
        assert counts(engine) == walked(engine) == (25, walked(engine)[1])
    finally:
        engine.close()


def test_clean_stop_keeps_the_tally_a_crash_rebuilds_it(tmp_path: Path, clock: Clock) -> None:
    engine = open_engine(tmp_path / "db", clock)
    for i in range(100):
        engine.store(StoreMode.SET, b"k%d" % i, 0, 0, b"value")
    expected = counts(engine)
    engine.close()
    del engine
    gc.collect()
    engine = open_engine(tmp_path / "db", clock)
    assert counts(engine) == expected  # restored, no walk
    scan = engine.scan_keys()  # the key sizes are filled; the counts are left alone
    assert scan is not None
    while scan.step():
        pass
    assert counts(engine) == expected
    assert engine.key_sizes is not None
    assert engine.key_sizes.complete
    assert engine.scan_keys() is None
    engine.db.items.close()  # a crash: no clean-stop record
    del engine
    gc.collect()
    engine = open_engine(tmp_path / "db", clock)
    try:
        assert not engine.item_counts.exact
        job = engine.scan_keys()
        assert job is not None
        engine.store(StoreMode.SET, b"during", 0, 0, b"x")  # written while the walk runs
        engine.delete(b"k0")
        while job.step():
            pass
        assert counts(engine) == walked(engine)
        assert counts(engine)[0] == 100
    finally:
        engine.close()


def test_a_write_after_the_clean_stop_forces_a_recount(tmp_path: Path, clock: Clock) -> None:
    engine = open_engine(tmp_path / "db", clock)
    engine.store(StoreMode.SET, b"a", 0, 0, b"x")
    engine.close()
    del engine
    gc.collect()
    engine = open_engine(tmp_path / "db", clock)
    engine.db.items.put(b"offline", codec.encode(0, 0, 0, 1, b"y"))  # e.g. a tool, no engine
    engine.db.items.close()
    del engine
    gc.collect()
    engine = open_engine(tmp_path / "db", clock)
    try:
        assert not engine.item_counts.exact
    finally:
        engine.close()


def test_exact_item_count_off_keeps_set_blind(tmp_path: Path, clock: Clock) -> None:
    with contextlib.closing(open_engine(tmp_path / "db", clock, exact_item_count=False)) as e:
        e.store(StoreMode.SET, b"a", 0, 0, b"x")
        assert (e.item_counts.exact, e.scan_keys()) == (False, None)  # estimates, and no recount


def test_downtime_rule() -> None:
    assert not judge(None, 1000, 60).cold  # no record: unknown, served warm
    clean = LastRun(stopped_cleanly=True, at=1000)
    killed = LastRun(stopped_cleanly=False, at=1000)
    assert not judge(clean, 1060, 60).cold
    assert judge(clean, 1061, 60).cold
    assert judge(killed, 1061, 60).cold
    assert "last heartbeat" in judge(killed, 1061, 60).reason
    assert not judge(killed, 10**9, 0).cold  # 0: always warm


def test_a_long_absence_invalidates_what_was_stored(tmp_path: Path, clock: Clock) -> None:
    engine = open_engine(tmp_path / "db", clock, max_warm_downtime=60)
    engine.store(StoreMode.SET, b"a", 0, 0, b"x")
    engine.close()
    del engine
    gc.collect()
    clock.now += 61
    engine = open_engine(tmp_path / "db", clock, max_warm_downtime=60)
    try:
        assert engine.verdict.cold
        assert engine.counters.extra["cold_starts"] == 1
        assert engine.fetch(b"a") is None
        engine.store(StoreMode.SET, b"b", 0, 0, b"y")
        assert engine.fetch(b"b") is not None
    finally:
        engine.close()
