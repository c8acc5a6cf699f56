"""Eviction off (``eviction = "none"``, memcached's ``-M``): nothing is evicted; where a
round would start, ``Engine.out_of_space`` is set (stores are then refused by the commands),
and it clears again once live data goes; garbage over the mark is still reclaimed.

The controller's rule alone (pure, fake disk), then the reclaimer on a real RocksDB with its
steps driven by the test, as in ``test_eviction``.
"""

from __future__ import annotations

import math
from pathlib import Path

from petracache.rules.verbs import StoreMode
from petracache.storage.reclaim.eviction_control import (
    GARBAGE_INTERVAL,
    HIGH_WATER,
    EvictionControl,
)
from petracache.storage.reclaim.reclaimer import Reclaimer
from tests.storage.engines import Clock
from tests.storage.reclaiming import VALUE, drain, make_engine

BOUND = 10_000_000
HIGH = HIGH_WATER * BOUND


def test_full_is_live_data_at_the_eviction_mark() -> None:
    timer = Clock(0.0)
    control = EvictionControl(BOUND, timer)
    below, reaching = math.floor(HIGH) - 2, math.ceil(HIGH) + 2
    assert not control.full(lambda: below, lambda: below)
    assert control.full(lambda: reaching, lambda: reaching)
    assert control.full(lambda: reaching, lambda: None)  # live data unknown: usage decides
    assert control.target == 0  # never a round
    # over the mark with little live data: garbage, reclaimed (at most once an interval)
    assert not control.full(lambda: 3 * BOUND, lambda: 4096)
    assert control.garbage
    control.garbage = False
    control.compacted()
    timer.now = GARBAGE_INTERVAL / 2
    assert not control.full(lambda: 3 * BOUND, lambda: 4096)
    assert not control.garbage
    timer.now = GARBAGE_INTERVAL
    assert not control.full(lambda: 3 * BOUND, lambda: 4096)
    assert control.garbage


def test_the_engine_refuses_at_the_mark_and_evicts_nothing(tmp_path: Path, clock: Clock) -> None:
    bound = 2 * 1024 * 1024
    engine = make_engine(tmp_path / "db", clock, max_disk_bytes=bound, eviction="none")
    try:
        assert not engine.index.track_age  # no eviction: the age index is not kept
        reclaimer = Reclaimer(engine, max_disk_bytes=bound, eviction="none")
        assert reclaimer.eviction_enabled  # the bound is enforced: polled often
        written = 0
        while not engine.out_of_space:
            for _ in range(20):
                engine.store(StoreMode.SET, b"k:%d" % written, 0, 0, VALUE)
                written += 1
            drain(reclaimer)
            assert written < 5000, "never reached the mark"
        live = engine.item_counts.bytes
        assert HIGH_WATER * bound * 0.8 < live < HIGH_WATER * bound * 1.2
        assert engine.counters.evictions == 0
        assert all(engine.stored(b"k:%d" % i)[0] is not None for i in range(written))
        # deleting live data lifts it at the next measurement
        for i in range(written // 2):
            engine.delete(b"k:%d" % i)
        drain(reclaimer)
        assert not engine.out_of_space
    finally:
        engine.close()
