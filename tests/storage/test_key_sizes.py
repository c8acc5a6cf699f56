"""The key sizes (``storage.key_sizes``) against a dict model, and the exact counts they
keep without reads: a real engine with the hot items off, so every set of a key must be
answered by the table (or, before the start-up scan ends, by RocksDB)."""

from __future__ import annotations

import gc
import random
from pathlib import Path

import pytest

from petracache.config import StorageSettings
from petracache.rules.verbs import StoreMode
from petracache.storage.engine import Engine
from petracache.storage.key_sizes import MIN_SLOTS, UNKNOWN, KeySizes
from tests.storage.engines import Clock, walked


@pytest.mark.parametrize("complete", [False, True])
def test_the_table_agrees_with_a_dict(complete: bool) -> None:
    """Random puts, removes and gets over more keys than the first table holds (it
    doubles, probe runs wrap around its end, removals shift entries back)."""
    rng = random.Random(7)
    table = KeySizes()
    table.complete = complete
    model: dict[bytes, int] = {}
    states: dict[bytes, tuple[int, int]] = {}  # fetch states: cleared by every write
    keys = [b"key:%d" % i for i in range(3 * MIN_SLOTS)]
    absent = 0 if complete else UNKNOWN
    for _ in range(60_000):
        key = rng.choice(keys)
        op = rng.random()
        if op < 0.25:
            size = rng.randrange(1, 1 << 31)
            table.put(key, size)
            model[key] = size
            states.pop(key, None)
        elif op < 0.5:  # a set: the old size and the new one in one probe
            size = rng.randrange(1, 1 << 31)
            assert table.swap(key, size) == model.get(key, absent)
            model[key] = size
            states.pop(key, None)
        elif op < 0.7:
            table.remove(key)
            model[key] = 0
            states.pop(key, None)
        elif op < 0.8:  # an evicted hot entry's fetch state: kept for stored keys only
            state = (rng.randrange(1 << 32), rng.randrange(32))
            if table.record(key, *state):
                states[key] = state
            else:
                assert not model.get(key)
        else:
            assert table.get(key) == model.get(key, absent)
            assert table.state(key) == states.get(key)
    assert [table.get(k) for k in keys] == [model.get(k, absent) for k in keys]
    assert [table.state(k) for k in keys] == [states.get(k) for k in keys]
    assert table.nbytes >= 12 * table.count


def test_a_scan_never_overrides_what_was_written_or_deleted_since() -> None:
    table = KeySizes()
    table.put(b"written", 10)
    table.remove(b"deleted")  # before completion: held as known absent
    for key, size in ((b"written", 99), (b"deleted", 99), (b"old", 5)):
        table.put_if_unknown(key, size)  # what the scan's older view says
    assert (table.get(b"written"), table.get(b"deleted"), table.get(b"old")) == (10, 0, 5)
    table.complete = True
    table.remove(b"old")
    assert table.get(b"old") == 0
    table.forget(b"written")  # a failed write: the table can no longer say
    assert (table.complete, table.get(b"written"), table.get(b"never")) == (
        False,
        UNKNOWN,
        UNKNOWN,
    )


def open_cold(path: Path, clock: Clock) -> Engine:
    """No hot items: nothing but the key sizes (or RocksDB) can tell a set what it replaces."""
    return Engine(StorageSettings(db_path=str(path), hot_cache_size=0), clock=clock)


def test_counts_stay_exact_while_the_scan_runs_and_after(tmp_path: Path, clock: Clock) -> None:
    rng = random.Random(3)
    engine = open_cold(tmp_path / "db", clock)
    for i in range(2000):
        engine.store(StoreMode.SET, b"k%d" % i, 0, 0, b"v" * rng.randrange(1, 50))
    engine.db.items.close()  # a crash: the counts must be rebuilt, the sizes filled
    del engine
    gc.collect()
    engine = open_cold(tmp_path / "db", clock)
    try:
        scan = engine.scan_keys()
        assert scan is not None
        while True:
            for _ in range(50):  # writes between the scan's steps, over keys seen or not
                key = b"k%d" % rng.randrange(2500)
                if rng.random() < 0.3:
                    engine.delete(key)
                else:
                    engine.store(StoreMode.SET, key, 0, 0, b"w" * rng.randrange(1, 50))
            if not scan.step():
                break
        assert engine.key_sizes is not None
        assert engine.key_sizes.complete
        counts = engine.item_counts
        assert counts.exact
        assert (counts.items, counts.bytes) == walked(engine)
        for _ in range(3000):  # the complete table alone answers now
            key = b"k%d" % rng.randrange(2500)
            if rng.random() < 0.3:
                engine.delete(key)
            else:
                engine.store(StoreMode.SET, key, 0, 0, b"x" * rng.randrange(1, 50))
        assert (counts.items, counts.bytes) == walked(engine)
    finally:
        engine.close()
