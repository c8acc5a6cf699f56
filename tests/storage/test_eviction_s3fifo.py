"""S3-FIFO (``eviction = "s3fifo"``) on a real RocksDB: how the small and main queues are held
in the ``age`` family, what moves an item between them, and what a restart keeps.

Reclaim steps run synchronously between the test's writes (``tests.storage.reclaiming``);
the rules themselves are tested pure in ``test_queues``.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

from petracache.rules.verbs import StoreMode
from petracache.storage import index as idx, items
from petracache.storage.engine import Engine
from petracache.storage.reclaim import queues
from petracache.storage.reclaim.age_queues import oldest_write
from petracache.storage.reclaim.reclaimer import Reclaimer
from petracache.storage.reclaim.s3fifo import MainQueue
from tests.storage.engines import Clock
from tests.storage.reclaiming import BOUND, VALUE, bounded, fill_until, gone, keys_of, make_engine


def entries(engine: Engine, key: bytes) -> list[tuple[int, bytes]]:
    """(position, value) of every ``age`` entry naming ``key``."""
    age = engine.db.family("age")
    found = []
    for entry in keys_of(age):
        position, name = idx.parse_age_key(entry)
        if name == key:
            value = age.get(entry)
            assert value is not None
            found.append((position, bytes(value)))
    return found


def in_main(engine: Engine, key: bytes) -> Callable[[], bool]:
    return lambda: any(p >= idx.MAIN_BASE for p, _ in entries(engine, key))


def moved(engine: Engine, key: bytes) -> Callable[[], bool]:
    """True once ``key``'s entries are no longer where they are now."""
    before = entries(engine, key)
    return lambda: entries(engine, key) != before


def fill_main(engine: Engine, reclaimer: Reclaimer) -> None:
    """Fill the cache with items read once each (so promoted): from the first round on,
    the main queue holds most items. (Before that, the items a round promotes are the
    main queue's head in the same round, with no chance to be read since.)"""
    fill_until(engine, reclaimer, b"w", lambda: engine.counters.evictions > 0, read_each=True)


def test_a_read_item_moves_to_the_main_queue_as_the_same_version(
    tmp_path: Path, clock: Clock
) -> None:
    with bounded(tmp_path, clock, "s3fifo") as (engine, reclaimer):
        engine.store(StoreMode.SET, b"hot", 0, 0, VALUE)
        engine.store(StoreMode.SET, b"cold", 0, 0, VALUE)
        before = engine.fetch(b"hot")
        assert before is not None
        fill_until(engine, reclaimer, b"a", gone(engine, b"cold"))
        [(position, value)] = entries(engine, b"hot")
        stored, _ = engine.stored(b"hot")
        assert stored is not None
        assert position >= idx.MAIN_BASE
        assert idx.age_version(position, value) == stored.cas
        assert idx.main_freq(value) == 0
        # The same version; the active bit cleared, so the next read is recorded again.
        assert stored.replace(bits=stored.bits | items.ACTIVE) == before
        assert stored.bits & items.FETCHED
        assert items.fetch_is_news(stored, engine.now())
        extra = engine.counters.extra
        assert extra["moves_to_main"] - extra.get("ghost_admissions", 0) == 1  # read: hot
        assert b"cold" in reclaimer.ghost


def test_the_ghost_admits_a_key_written_again_without_a_read(tmp_path: Path, clock: Clock) -> None:
    with bounded(tmp_path, clock, "s3fifo") as (engine, reclaimer):
        engine.store(StoreMode.SET, b"again", 0, 0, VALUE)
        fill_until(engine, reclaimer, b"a", gone(engine, b"again"))
        assert b"again" in reclaimer.ghost
        engine.store(StoreMode.SET, b"again", 0, 0, b"second")  # never read from here on
        fill_until(engine, reclaimer, b"b", in_main(engine, b"again"))
        assert engine.counters.extra["ghost_admissions"] >= 1
        stored, _ = engine.stored(b"again")
        assert stored is not None
        assert stored.data == b"second"
        assert not stored.bits & items.ACTIVE  # moved, not rewritten: nothing to clear


def test_main_queue_frequency_counts_passes_with_a_read(tmp_path: Path, clock: Clock) -> None:
    def freq() -> int:
        [(position, value)] = entries(engine, b"hot")
        assert position >= idx.MAIN_BASE
        return idx.main_freq(value)

    with bounded(tmp_path, clock, "s3fifo") as (engine, reclaimer):
        fill_main(engine, reclaimer)  # then "hot" is read after every 20 writes: every pass
        engine.store(StoreMode.SET, b"hot", 0, 0, VALUE)
        engine.fetch(b"hot")
        fill_until(engine, reclaimer, b"a", in_main(engine, b"hot"), b"hot", read_each=True)
        assert freq() == 0
        kept = []
        for prefix in (b"b", b"c"):  # a read in each pass: +2, -1 for the pass, at most 3
            fill_until(engine, reclaimer, prefix, moved(engine, b"hot"), b"hot", read_each=True)
            kept.append(freq())
        assert kept == [1, 2]
        stored, _ = engine.stored(b"hot")
        assert stored is not None
        assert stored.bits & items.ACTIVE  # read since its last move
        # No reads from here on (the last one counts for the pass under way): one pass for
        # each unit of frequency, then evicted.
        for prefix in (b"d", b"e", b"f"):
            fill_until(engine, reclaimer, prefix, moved(engine, b"hot"), read_each=True)
            kept.append(freq())
        assert kept == [1, 2, 2, 1, 0]
        fill_until(engine, reclaimer, b"g", gone(engine, b"hot"), read_each=True)
        assert not entries(engine, b"hot")


def test_a_stale_main_entry_does_not_evict_the_version_that_replaced_it(
    tmp_path: Path, clock: Clock
) -> None:
    with bounded(tmp_path, clock, "s3fifo") as (engine, reclaimer):
        fill_main(engine, reclaimer)
        engine.store(StoreMode.SET, b"k", 0, 0, VALUE)
        engine.fetch(b"k")
        fill_until(engine, reclaimer, b"a", in_main(engine, b"k"), b"k", read_each=True)
        [(old_position, _)] = entries(engine, b"k")
        engine.store(StoreMode.SET, b"k", 0, 0, b"new")  # a blind set: the main entry goes stale
        engine.fetch(b"k")

        def stale_gone() -> bool:
            engine.fetch(b"k")  # read in every pass, so the new version stays
            return all(p != old_position for p, _ in entries(engine, b"k"))

        fill_until(engine, reclaimer, b"b", stale_gone, read_each=True)
        stored, _ = engine.stored(b"k")
        assert stored is not None
        assert stored.data == b"new"


def promote_hot_evict_cold(tmp_path: Path, clock: Clock) -> int:
    """``hot`` read and promoted, ``cold`` evicted (into the ghost); the engine closed and
    every reference to it dropped (column-family handles hold RocksDB's lock until they are
    collected). Returns ``hot``'s main-queue position."""
    with bounded(tmp_path, clock, "s3fifo") as (engine, reclaimer):
        engine.store(StoreMode.SET, b"hot", 0, 0, VALUE)
        engine.store(StoreMode.SET, b"cold", 0, 0, VALUE)
        engine.fetch(b"hot")
        fill_until(engine, reclaimer, b"a", gone(engine, b"cold"))
        assert b"cold" in reclaimer.ghost
        [(position, _)] = entries(engine, b"hot")
        return position


def test_a_restart_keeps_the_queues_and_forgets_the_ghost(tmp_path: Path, clock: Clock) -> None:
    hot_position = promote_hot_evict_cold(tmp_path, clock)
    gc.collect()
    engine = make_engine(tmp_path / "db", clock, max_disk_bytes=BOUND, eviction="s3fifo")
    try:
        reclaimer = Reclaimer(engine, max_disk_bytes=BOUND, eviction="s3fifo")
        assert hot_position >= idx.MAIN_BASE
        assert [p for p, _ in entries(engine, b"hot")] == [hot_position]
        assert b"cold" not in reclaimer.ghost
        # Positions handed out after the restart come after the ones before it.
        engine.store(StoreMode.SET, b"next", 0, 0, VALUE)
        engine.fetch(b"next")
        fill_until(engine, reclaimer, b"b", in_main(engine, b"next"))
        [(next_position, _)] = entries(engine, b"next")
        assert next_position > hot_position
    finally:
        engine.close()


def test_the_oldest_write_includes_the_main_queue(tmp_path: Path, clock: Clock) -> None:
    with bounded(tmp_path, clock, "s3fifo") as (engine, reclaimer):
        engine.store(StoreMode.SET, b"hot", 0, 0, VALUE)
        written = engine.now()
        engine.fetch(b"hot")
        clock.now += 100
        fill_until(engine, reclaimer, b"a", in_main(engine, b"hot"))
        assert oldest_write(engine) == written


def write_and_close(tmp_path: Path, clock: Clock, prefix: bytes, count: int) -> int:
    """``count`` items written under a bound, the engine closed (every reference dropped);
    returns the first one's position."""
    engine = make_engine(tmp_path / "db", clock, max_disk_bytes=BOUND, eviction="s3fifo")
    try:
        for i in range(count):
            engine.store(StoreMode.SET, b"%b:%d" % (prefix, i), 0, 0, VALUE)
        return entries(engine, prefix + b":0")[0][0]
    finally:
        engine.close()


def test_the_small_queue_is_measured_in_writes_across_a_restart(
    tmp_path: Path, clock: Clock
) -> None:
    first = write_and_close(tmp_path, clock, b"before", 30)
    gc.collect()
    engine = make_engine(tmp_path / "db", clock, max_disk_bytes=BOUND, eviction="s3fifo")
    try:
        main = MainQueue(engine, lambda _name: None)
        for i in range(20):
            engine.store(StoreMode.SET, b"after:%d" % i, 0, 0, VALUE)
        newest, resumed = engine.current_cas, engine.cas_resumed_at
        assert newest - first > 1 << 19  # the uniques skip the last run's reserved block
        last_before = main.last_before(resumed)
        assert queues.writes_since(first, newest, resumed, last_before) == 29 + 20
    finally:
        engine.close()
