"""The engine's memcached semantics on a real RocksDB in tmp_path, with an injected clock.

No mocks: every test opens a real database; time moves only when a test moves ``clock``.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from petracache.storage.engine import DeltaResult, Engine, StoreMode, StoreResult
from petracache.storage.errors import StorageError
from tests.storage.engines import T0, Clock, delete, delta, open_engine, store

THIRTY_DAYS = 60 * 60 * 24 * 30
U64 = 2**64


def release(engine: Engine) -> None:
    """Close; the caller then drops its reference (column-family handles hold RocksDB's
    lock until they are collected)."""
    engine.close()


def set_(engine: Engine, key: bytes, data: bytes, exptime: int = 0, flags: int = 0) -> int:
    result, cas = store(engine, StoreMode.SET, key, flags, exptime, data)
    assert result is StoreResult.STORED
    return cas


# -- TTL rules ---------------------------------------------------------------------------


def test_exptime_zero_never_expires(engine: Engine, clock: Clock) -> None:
    set_(engine, b"k", b"v", 0)
    clock.now += 10 * 365 * 86400
    assert engine.fetch(b"k") is not None


def test_relative_exptime(engine: Engine, clock: Clock) -> None:
    set_(engine, b"k", b"v", 10)
    clock.now += 9
    assert engine.fetch(b"k") is not None
    clock.now += 1
    assert engine.fetch(b"k") is None


def test_thirty_days_is_still_relative(engine: Engine, clock: Clock) -> None:
    set_(engine, b"k", b"v", THIRTY_DAYS)
    clock.now += THIRTY_DAYS - 1
    assert engine.fetch(b"k") is not None
    clock.now += 1
    assert engine.fetch(b"k") is None


def test_above_thirty_days_is_absolute(engine: Engine, clock: Clock) -> None:
    set_(engine, b"past", b"v", THIRTY_DAYS + 1)  # a Unix time in 1970: dead at once
    set_(engine, b"future", b"v", T0 + 100)
    assert engine.fetch(b"past") is None
    clock.now += 99
    assert engine.fetch(b"future") is not None
    clock.now += 1
    assert engine.fetch(b"future") is None


def test_negative_exptime_is_already_expired(engine: Engine) -> None:
    set_(engine, b"k", b"old")
    set_(engine, b"k", b"v", -1)  # STORED, and the old value is gone too
    assert engine.fetch(b"k") is None


def test_lazy_expiry_deletes_the_item(engine: Engine, clock: Clock) -> None:
    set_(engine, b"k", b"v", 5)
    assert engine.db.items.get(b"k") is not None
    clock.now += 5
    before = engine.counters.expired_lazy
    assert engine.fetch(b"k") is None
    assert engine.counters.expired_lazy == before + 1
    assert engine.db.items.get(b"k") is None


def test_touch_and_gat_set_a_new_ttl_and_keep_the_cas(engine: Engine, clock: Clock) -> None:
    cas = set_(engine, b"k", b"v", 5)
    assert engine.touch(b"k", 100)
    item = engine.touch(b"k", 200)
    assert item is not None
    assert item.cas == cas
    clock.now += 150
    got = engine.fetch(b"k")
    assert got is not None
    assert got.cas == cas
    assert engine.touch(b"k", -1)
    assert engine.fetch(b"k") is None
    assert not engine.touch(b"missing", 10)


# -- CAS uniques ----------------------------------------------------------------------------


def test_cas_increases_with_every_modification(engine: Engine) -> None:
    seen = [set_(engine, b"k", b"1")]
    for mode, data in [
        (StoreMode.REPLACE, b"2"),
        (StoreMode.APPEND, b"3"),
        (StoreMode.PREPEND, b"4"),
    ]:
        result, cas = store(engine, mode, b"k", 0, 0, data)
        assert result is StoreResult.STORED
        seen.append(cas)
    result, cas = store(engine, StoreMode.CAS, b"k", 0, 0, b"5", seen[-1])
    assert result is StoreResult.STORED
    seen.append(cas)
    delta(engine, b"k", 0, True)  # even incr by 0 is a modification
    item = engine.fetch(b"k")
    assert item is not None
    seen.append(item.cas)
    result, cas = store(engine, StoreMode.ADD, b"other", 0, 0, b"x")
    seen.append(cas)
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)
    assert seen[0] > 0


def test_failed_operations_change_nothing(engine: Engine) -> None:
    cas = set_(engine, b"k", b"v")
    assert store(engine, StoreMode.ADD, b"k", 0, 0, b"x") == (StoreResult.NOT_STORED, 0)
    assert store(engine, StoreMode.CAS, b"k", 0, 0, b"x", cas + 999) == (StoreResult.EXISTS, 0)
    assert store(engine, StoreMode.CAS, b"nope", 0, 0, b"x", 1) == (StoreResult.NOT_FOUND, 0)
    assert store(engine, StoreMode.REPLACE, b"nope", 0, 0, b"x") == (StoreResult.NOT_STORED, 0)
    assert store(engine, StoreMode.APPEND, b"nope", 0, 0, b"x") == (StoreResult.NOT_STORED, 0)
    item = engine.fetch(b"k")
    assert item is not None
    assert (item.cas, item.data) == (cas, b"v")
    assert engine.fetch(b"nope") is None


def test_cas_stays_unique_across_reopen(tmp_path: Path, clock: Clock) -> None:
    eng = open_engine(tmp_path / "db", clock)
    before = [set_(eng, b"k%d" % i, b"v") for i in range(5)]
    release(eng)
    del eng
    gc.collect()
    eng = open_engine(tmp_path / "db", clock)
    try:
        item = eng.fetch(b"k4")
        assert item is not None
        assert item.cas == before[-1]
        after = set_(eng, b"k4", b"new")
        assert after > max(before)
        # a gets token from before the restart does not match the new value
        result, _ = store(eng, StoreMode.CAS, b"k4", 0, 0, b"x", before[-1])
        assert result is StoreResult.EXISTS
    finally:
        eng.close()


# -- flush_all ------------------------------------------------------------------------------


def test_flush_all_now_invalidates_exactly_earlier_items(engine: Engine) -> None:
    set_(engine, b"old", b"v")
    engine.flush_all(0)
    set_(engine, b"new", b"v")  # the same second: still alive (the cut uses CAS)
    assert engine.fetch(b"old") is None
    assert engine.fetch(b"new") is not None


def test_negative_flush_delay_means_now(engine: Engine) -> None:
    set_(engine, b"old", b"v")
    engine.flush_all(-5)
    assert engine.fetch(b"old") is None


def test_delayed_flush_all(engine: Engine, clock: Clock) -> None:
    set_(engine, b"before", b"v")
    engine.flush_all(10)
    clock.now += 5
    set_(engine, b"between", b"v")
    assert engine.fetch(b"before") is not None  # nothing changes until the deadline
    clock.now += 5
    set_(engine, b"at", b"v")  # stored in the deadline's second: after it, not covered
    assert engine.fetch(b"before") is None
    assert engine.fetch(b"between") is None  # memcached: updated at or before the deadline
    clock.now += 1
    set_(engine, b"after", b"v")
    assert engine.fetch(b"after") is not None


def test_flush_all_survives_reopen(tmp_path: Path, clock: Clock) -> None:
    eng = open_engine(tmp_path / "db", clock)
    set_(eng, b"old", b"v")
    eng.flush_all(0)
    release(eng)
    del eng
    gc.collect()
    eng = open_engine(tmp_path / "db", clock)
    assert eng.fetch(b"old") is None  # the immediate flush still holds
    set_(eng, b"fresh", b"v")
    eng.flush_all(100)
    release(eng)
    del eng
    gc.collect()
    eng = open_engine(tmp_path / "db", clock)
    try:
        assert eng.fetch(b"fresh") is not None
        clock.now += 100
        assert eng.fetch(b"fresh") is None  # the delayed flush fires after the reopen
        clock.now += 1
        set_(eng, b"fresh", b"v")
        assert eng.fetch(b"fresh") is not None
    finally:
        eng.close()


def test_delayed_flush_after_an_immediate_one_is_memcacheds(engine: Engine) -> None:
    """memcached moves oldest_live into the future, so unread flushed items show again."""
    set_(engine, b"old", b"v")
    engine.flush_all(0)
    engine.flush_all(100)
    assert engine.fetch(b"old") is not None


def test_flush_all_at_an_absolute_time_before_start_is_a_no_op(engine: Engine) -> None:
    set_(engine, b"k", b"v")
    engine.flush_all(THIRTY_DAYS + 1)  # memcached: realtime() = 1, so oldest_live = 0
    assert engine.fetch(b"k") is not None


# -- incr / decr ----------------------------------------------------------------------------


def test_incr_wraps_at_2_64(engine: Engine) -> None:
    set_(engine, b"n", b"%d" % (U64 - 1))
    assert delta(engine, b"n", 1, True) == 0
    set_(engine, b"n", b"%d" % (U64 - 2))
    assert delta(engine, b"n", 5, True) == 3


def test_decr_stops_at_zero(engine: Engine) -> None:
    set_(engine, b"n", b"10")
    assert delta(engine, b"n", 11, False) == 0
    assert delta(engine, b"n", 1, False) == 0


def test_shorter_result_is_space_padded_longer_grows(engine: Engine) -> None:
    set_(engine, b"n", b"100", flags=7, exptime=1000)
    assert delta(engine, b"n", 1, False) == 99
    item = engine.fetch(b"n")
    assert item is not None
    assert item.data == b"99 "
    assert item.flags == 7
    assert delta(engine, b"n", 901, True) == 1000
    item = engine.fetch(b"n")
    assert item is not None
    assert item.data == b"1000"
    set_(engine, b"n", b"1 2")
    assert delta(engine, b"n", 1, True) == 2
    item = engine.fetch(b"n")
    assert item is not None
    assert item.data == b"2  "


def test_arithmetic_keeps_ttl(engine: Engine, clock: Clock) -> None:
    set_(engine, b"n", b"1", exptime=10)
    delta(engine, b"n", 1, True)
    clock.now += 10
    assert engine.fetch(b"n") is None


@pytest.mark.parametrize("data", [b"", b"abc", b"-1", b"12ab", b"0x1", b"18446744073709551616"])
def test_non_numeric_values(engine: Engine, data: bytes) -> None:
    set_(engine, b"n", data)
    assert delta(engine, b"n", 1, True) is DeltaResult.NON_NUMERIC


def test_arithmetic_on_missing_key(engine: Engine) -> None:
    assert delta(engine, b"missing", 1, True) is DeltaResult.NOT_FOUND
    assert engine.fetch(b"missing") is None  # never auto-created


# -- append / prepend -----------------------------------------------------------------------


def test_append_prepend_keep_flags_and_ttl(engine: Engine, clock: Clock) -> None:
    cas = set_(engine, b"k", b"b", exptime=100, flags=9)
    result, cas2 = store(engine, StoreMode.APPEND, b"k", 5, 0, b"c")
    assert result is StoreResult.STORED
    assert cas2 > cas
    result, _ = store(engine, StoreMode.PREPEND, b"k", 7, -1, b"a")  # exptime ignored too
    assert result is StoreResult.STORED
    item = engine.fetch(b"k")
    assert item is not None
    assert (item.data, item.flags) == (b"abc", 9)
    clock.now += 100
    assert engine.fetch(b"k") is None


def test_append_past_the_item_size_limit_is_not_stored(tmp_path: Path, clock: Clock) -> None:
    eng = open_engine(tmp_path / "db", clock, item_size_max=1024)
    try:
        set_(eng, b"k", b"x" * 900)
        assert store(eng, StoreMode.APPEND, b"k", 0, 0, b"y" * 200)[0] is StoreResult.NOT_STORED
        item = eng.fetch(b"k")
        assert item is not None
        assert item.data == b"x" * 900
    finally:
        eng.close()


def test_delete(engine: Engine, clock: Clock) -> None:
    set_(engine, b"k", b"v")
    assert delete(engine, b"k")
    assert not delete(engine, b"k")
    set_(engine, b"k", b"v", 1)
    clock.now += 1
    assert not delete(engine, b"k")  # an expired item is absent for delete too


def test_close_after_the_database_went_away_raises_a_storage_error(
    tmp_path: Path, clock: Clock
) -> None:
    eng = open_engine(tmp_path / "db", clock)
    eng.store(StoreMode.SET, b"k", 0, 0, b"v")
    eng.db.items.close()  # as if RocksDB had been closed under the engine
    with pytest.raises(StorageError):
        eng.close()


def test_a_failed_set_leaves_no_hot_entry_and_the_counts_as_they_were(
    tmp_path: Path, clock: Clock
) -> None:
    """A set updates the hot items before RocksDB (one lookup gives the old size): when the
    RocksDB write fails, the entry must go, so no read answers what RocksDB does not hold."""
    eng = open_engine(tmp_path / "db", clock)
    eng.store(StoreMode.SET, b"k", 0, 0, b"v1")
    before = (eng.item_counts.items, eng.item_counts.bytes)
    assert eng.hot.peek(b"k") is not None
    db = eng.db.items
    db.close()  # every RocksDB call fails from here
    with pytest.raises(StorageError):
        eng.store(StoreMode.SET, b"k", 0, 0, b"v2")
    assert eng.hot.peek(b"k") is None
    assert (eng.item_counts.items, eng.item_counts.bytes) == before
    with pytest.raises(StorageError):
        eng.close()
