"""The hot items (``storage.hot``): bounded, second chance, and what RocksDB holds.

The invariant checked throughout: an entry, when present, is the value RocksDB holds under
its key, after every kind of write (set, stores, deltas, touches, fetch records, deletes,
lazy expiry, reclaim batches that delete, evict or requeue); a *dirty* entry differs from it
only in the fetch state a read recorded, and RocksDB gets that state when the entry leaves
the cache or the engine closes.
"""

from __future__ import annotations

import gc
import random
from pathlib import Path

import pytest

from petracache.app import _freeze_startup_objects
from petracache.storage import codec
from petracache.storage.engine import Engine, StoreMode
from petracache.storage.hot import (
    MAX_SHARE,
    MEMORY_PER_ENTRY,
    SHARD_BITS,
    SHARDED_FROM,
    HotItems,
)
from petracache.storage.index import age_key
from petracache.storage.items import ACTIVE, FETCHED, Item
from petracache.storage.reclaim.reclaimer import Reclaimer
from tests.storage.engines import Clock, open_engine
from tests.storage.reclaiming import VALUE, drain, make_engine

FETCH_BITS = FETCHED | ACTIVE


class Written(list[tuple[bytes, Item]]):
    """What a ``HotItems`` wrote back, in order."""

    def __call__(self, records: list[tuple[bytes, Item]]) -> None:
        self.extend(records)


def new_hot(capacity: int) -> HotItems:
    return HotItems(capacity, Written())


def item(data: bytes, cas: int = 1, bits: int = 0) -> Item:
    return Item(0, 0, 0, cas, data, 0, bits)


def cost(key: bytes, data: bytes) -> int:
    return len(key) + len(data) + MEMORY_PER_ENTRY


def without_fetch_state(item: Item) -> Item:
    return item.replace(last_access=0, bits=item.bits & ~FETCH_BITS)


def read_after_restart(path: Path, clock: Clock, key: bytes) -> Item | None:
    """``key`` as a new engine on the database at ``path`` reads it (the caller has closed
    and dropped its engine)."""
    gc.collect()  # the dropped engine's handles release RocksDB's lock
    engine = open_engine(path, clock)
    try:
        return engine.read(key, engine.now())
    finally:
        engine.close()


def assert_coherent(engine: Engine) -> None:
    """Every hot entry is the decoded value RocksDB holds under its key, with the fetch state
    the key sizes keep for it; a dirty one differs only in its fetch state. The bytes
    counted are the entries' and within the bound."""
    db = engine.db.items
    hot = engine.hot
    held = hot.held()
    entries = [(key, hot.peek(key)) for key in held]
    assert hot.bytes == sum(cost(key, entry.data) for key, entry in entries if entry is not None)
    assert hot.bytes <= hot.capacity
    for key in held:
        raw = db.get(key)
        assert raw is not None, f"hot entry for deleted key {key!r}"
        cached = hot.peek(key)
        assert cached is not None
        stored = engine.with_state(key, codec.decode(raw))  # what readers of RocksDB see
        if hot.newer(key) is not None:
            assert without_fetch_state(cached) == without_fetch_state(stored), key
        else:
            assert cached == stored, key


def test_least_recently_used_leave_first_and_the_bound_holds() -> None:
    one = cost(b"k00", b"x" * 100)
    hot = new_hot(10 * one)
    for i in range(10):
        hot.put(b"k%02d" % i, item(b"x" * 100))
    assert hot.hint(b"k00", item(b"x" * 100, bits=FETCH_BITS))  # a recorded fetch: a use
    hot.put(b"k01", item(b"y" * 100, cas=2))  # a write: a use
    assert hot.get(b"k02") is not None  # a plain hit is not (memcached's bump interval)
    hot.put(b"k10", item(b"x" * 100))
    hot.put(b"k11", item(b"x" * 100))
    assert hot.peek(b"k02") is None
    assert hot.peek(b"k03") is None
    assert all(hot.peek(b"k%02d" % i) is not None for i in (0, 1, *range(4, 12)))
    assert hot.bytes == 10 * one <= hot.capacity
    assert hot.evictions == 2


def test_eviction_frees_a_chunk_and_keeps_the_young_end() -> None:
    one = cost(b"k0000", b"x" * 100)
    hot = new_hot(1000 * one)
    for i in range(1000):
        hot.put(b"k%04d" % i, item(b"x" * 100))
    hot.put(b"k1000", item(b"x" * 100))  # one over: a 64th of the capacity goes at once
    kept = 984  # at most the capacity less a 64th (15.6 entries' worth)
    assert len(hot) == kept
    assert hot.evictions == 1001 - kept
    assert hot.bytes == kept * one
    assert [hot.peek(b"k%04d" % i) is None for i in range(1001)] == [
        i <= 1000 - kept for i in range(1001)
    ]
    for i in range(1001, 1001 + 1000 - kept):  # room again until the next chunk
        hot.put(b"k%04d" % i, item(b"x" * 100))
    assert hot.evictions == 1001 - kept


def test_replacing_and_dropping_keep_the_byte_count_exact() -> None:
    hot = new_hot(1 << 20)
    hot.put(b"a", item(b"x" * 10))
    hot.put(b"a", item(b"y" * 50, cas=2))
    assert hot.bytes == cost(b"a", b"y" * 50)
    assert hot.get(b"a") == item(b"y" * 50, cas=2)
    hot.drop(b"a")
    hot.drop(b"never there")
    assert hot.bytes == 0
    assert len(hot) == 0


def test_an_item_larger_than_an_eighth_is_not_kept_and_replaces_nothing_stale() -> None:
    hot = new_hot(8 * 1024)
    hot.put(b"big", item(b"small"))
    hot.put(b"big", item(b"x" * 1024))  # too big: the old entry must not survive either
    assert hot.peek(b"big") is None
    assert hot.bytes == 0


def test_capacity_zero_keeps_nothing() -> None:
    hot = new_hot(0)
    hot.put(b"a", item(b"x"))
    assert hot.get(b"a") is None
    assert hot.misses == 1


def test_the_garbage_collector_never_walks_the_entries(engine: Engine) -> None:
    # storage.hot's reason: a full collection walks every tracked object and every entry of a
    # tracked container. The map of entries is frozen with start-up's objects (the server
    # opens the engine first), its entries (Items, which hold only ints and bytes) are
    # untracked as they are stored, and writes after the freeze do not bring it back.
    hot = engine.hot
    _freeze_startup_objects()
    try:
        engine.store(StoreMode.SET, b"set", 1, 0, b"v")
        engine.store(StoreMode.SET, b"store", 2, 100, b"w")
        assert engine.fetch(b"store") is not None  # a fetch record: a dirty entry
        assert engine.read(b"set", engine.now()) is not None
        gc.collect()
        walked = gc.get_objects()  # every generation a collection walks
        maps = {id(part) for part in (*hot._shards, *hot._dirty, hot._shards, hot._dirty)}
        assert not any(id(obj) in maps for obj in walked)
        assert not any(gc.is_tracked(dirty) for dirty in hot._dirty)
        entries = [hot.peek(key) for key in (b"set", b"store")]
        assert [type(entry) for entry in entries] == [Item, Item]
        assert not any(gc.is_tracked(entry) for entry in entries)  # without a collection first
        assert hot.get(b"set") is entries[0]
    finally:
        gc.unfreeze()


def test_a_hint_stays_in_memory_until_its_entry_leaves() -> None:
    written = Written()
    one = cost(b"k00", b"x" * 100)
    hot = HotItems(10 * one, written)
    assert not hot.hint(b"absent", item(b"x" * 100, bits=FETCHED))  # the caller writes it
    for i in range(10):
        hot.put(b"k%02d" % i, item(b"x" * 100))
    fetched = item(b"x" * 100, bits=FETCHED)
    assert hot.hint(b"k00", fetched)
    assert hot.hint(b"k01", fetched)
    assert hot.dirty == 2
    assert hot.newer(b"k00") == fetched
    assert hot.newer(b"k02") is None  # not dirty: RocksDB's value is the same
    hot.put(b"k01", item(b"y" * 100))  # a write replaces the hint: nothing to write back
    assert hot.dirty == 1
    for i in range(10, 30):  # k00 becomes the least recently used, then leaves
        hot.put(b"k%02d" % i, item(b"x" * 100))
    assert hot.peek(b"k00") is None
    assert written == [(b"k00", fetched)]
    assert hot.dirty == 0


def test_taken_and_dropped_hints_are_not_written_back() -> None:
    written = Written()
    hot = HotItems(1 << 20, written)
    for key in (b"a", b"b", b"c"):
        hot.put(key, item(b"x"))
        hot.hint(key, item(b"x", bits=FETCHED))
    hot.drop(b"b")  # deleted: its hint goes with it
    assert sorted(hot.take_hints()) == [
        (b"a", item(b"x", bits=FETCHED)),
        (b"c", item(b"x", bits=FETCHED)),
    ]
    assert hot.dirty == 0
    hot.hint(b"a", item(b"x", bits=FETCHED | ACTIVE))
    hot.clear()  # the database was replaced
    assert hot.take_hints() == []
    assert written == []


def test_a_second_read_is_served_from_memory(engine: Engine) -> None:
    engine.store(StoreMode.SET, b"k", 5, 0, b"value")
    engine.hot.clear()  # as after a restart
    first = engine.read(b"k", engine.now())
    hits = engine.hot.hits
    second = engine.read(b"k", engine.now())
    assert first == second
    assert second is not None
    assert (second.data, second.flags) == (b"value", 5)
    assert engine.hot.hits == hits + 1


def test_expired_and_flushed_hot_items_are_not_returned(engine: Engine, clock: Clock) -> None:
    engine.store(StoreMode.SET, b"short", 0, 10, b"v")
    engine.store(StoreMode.SET, b"flushed", 0, 0, b"v")
    assert engine.read(b"short", engine.now()) is not None
    clock.now += 11
    assert engine.read(b"short", engine.now()) is None
    assert engine.hot.peek(b"short") is None  # the lazy delete dropped it
    engine.flush_all(0)
    assert engine.fetch(b"flushed") is None
    assert_coherent(engine)


@pytest.mark.parametrize("sharded", [False, True])
def test_random_operations_keep_the_hot_items_coherent(
    tmp_path: Path, clock: Clock, sharded: bool
) -> None:
    # A cache smaller than the data, so entries also leave by the bound while the operations
    # run: one dict (exact LRU), or the shards of a cache of SHARDED_FROM bytes.
    if sharded:
        capacity, keys, size = SHARDED_FROM, 600, 12000
    else:
        capacity, keys, size = 40 * cost(b"key:00", b"x" * 64), 60, 65
    engine = open_engine(tmp_path / "db", clock, hot_cache_size=capacity)
    assert len(engine.hot._shards) == (1 << SHARD_BITS if sharded else 1)
    rng = random.Random(12)
    try:
        for step in range(3000):
            key = b"key:%03d" % rng.randrange(keys)
            op = rng.randrange(10)
            data = b"%d" % rng.randrange(1000) if op in (3, 4) else b"x" * rng.randrange(size)
            if op == 0:
                engine.store(StoreMode.SET, key, rng.randrange(4), rng.choice((0, 0, 3)), data)
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
                engine.delete(key)
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
            engine.store(StoreMode.SET, key, 0, 30 if i % 3 == 0 else 0, b"%d:" % i + VALUE)
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


def test_a_first_read_writes_nothing_and_the_record_reaches_rocksdb_at_close(
    tmp_path: Path, clock: Clock
) -> None:
    engine = open_engine(tmp_path / "db", clock)
    engine.store(StoreMode.SET, b"k", 0, 0, b"v")
    stored = engine.db.items.get(b"k")
    writes = engine.sequence.writes
    item = engine.fetch(b"k")
    assert item is not None
    assert item.bits & FETCHED
    assert engine.db.items.get(b"k") == stored  # kept in memory, dirty
    assert engine.sequence.writes == writes
    assert engine.stored(b"k")[0] == item  # what the reclaimer sees: the fetch state too
    engine.close()
    del engine  # column-family handles keep RocksDB's lock until they are released
    reread = read_after_restart(tmp_path / "db", clock, b"k")
    assert reread is not None
    assert reread.bits & FETCHED


def _evict_a_fetched_entry(engine: Engine) -> None:
    """Store and read b"first", then fill the hot items by reads until it leaves them."""
    engine.store(StoreMode.SET, b"first", 0, 0, b"x" * 64)
    engine.fetch(b"first")
    for i in range(60):
        engine.store(StoreMode.SET, b"key:%02d" % i, 0, 0, b"x" * 64)
    for i in range(60):  # reads fill the hot items, evicting the oldest
        engine.fetch(b"key:%02d" % i)
    assert engine.hot.peek(b"first") is None


def test_an_evicted_fetch_record_stays_in_memory_with_the_key_sizes(
    tmp_path: Path, clock: Clock
) -> None:
    """Its fetch state goes to the key sizes, not to RocksDB (no rewrite of the value);
    every reader of RocksDB sees it; a write of the key clears it; a restart forgets it."""
    engine = open_engine(tmp_path / "db", clock, hot_cache_size=20 * cost(b"key:00", b"x" * 64))
    try:
        _evict_a_fetched_entry(engine)
        raw = engine.db.items.get(b"first")
        assert raw is not None
        assert not codec.decode(raw).bits & FETCHED  # not rewritten
        stored, _size = engine.stored(b"first")  # the reclaimer's and the metadump's view
        assert stored is not None
        assert stored.bits & FETCHED
        assert stored.last_access == clock.now
        reread = engine.read(b"first", engine.now())  # a read that fills the hot items again
        assert reread is not None
        assert reread.bits & FETCHED
        engine.store(StoreMode.SET, b"first", 0, 0, b"y" * 64)  # a new version: no state
        engine.hot.drop(b"first")
        again = engine.read(b"first", engine.now())
        assert again is not None
        assert not again.bits & FETCHED
        engine.fetch(b"first")
        for i in range(60):
            engine.fetch(b"key:%02d" % i)
        assert engine.hot.peek(b"first") is None
    finally:
        engine.close()
    del engine  # column-family handles keep RocksDB's lock until they are released
    after = read_after_restart(tmp_path / "db", clock, b"first")
    assert after is not None
    assert not after.bits & FETCHED  # kept in memory only


def test_without_exact_counts_an_evicted_fetch_record_is_written_back(
    tmp_path: Path, clock: Clock
) -> None:
    engine = open_engine(
        tmp_path / "db",
        clock,
        hot_cache_size=20 * cost(b"key:00", b"x" * 64),
        exact_item_count=False,
    )
    try:
        _evict_a_fetched_entry(engine)
        raw = engine.db.items.get(b"first")
        assert raw is not None
        assert codec.decode(raw).bits & FETCHED
    finally:
        engine.close()


def test_writes_evict_nothing_reads_decide_what_stays(tmp_path: Path, clock: Clock) -> None:
    room = 20
    engine = open_engine(tmp_path / "db", clock, hot_cache_size=room * cost(b"key:00", b"x" * 64))
    try:
        for i in range(room + 10):  # writes fill the free room, then are not kept
            engine.store(StoreMode.SET, b"key:%02d" % i, 0, 0, b"x" * 64)
        assert engine.hot.evictions == 0
        held = [i for i in range(room + 10) if engine.hot.peek(b"key:%02d" % i) is not None]
        assert held == list(range(len(held)))
        assert room - 2 <= len(held) <= room
        # A write of a held key replaces its entry (the hot items follow RocksDB).
        engine.store(StoreMode.SET, b"key:00", 0, 0, b"y" * 64)
        entry = engine.hot.peek(b"key:00")
        assert entry is not None
        assert entry.data == b"y" * 64
        assert engine.hot.evictions == 0
        # A read of a key not held fills it, evicting the oldest entry.
        assert engine.fetch(b"key:%02d" % (room + 5)) is not None
        assert engine.hot.peek(b"key:%02d" % (room + 5)) is not None
        assert engine.hot.evictions > 0
        assert engine.hot.peek(b"key:01") is None
    finally:
        engine.close()


def test_a_requeue_rewrites_the_kept_fetch_state_into_the_value(
    tmp_path: Path, clock: Clock
) -> None:
    """The reclaimer's second chance reads the state the key sizes keep and writes the item
    back without its active bit: the kept state must go with that rewrite, or the next
    round would see the active bit again and spare the item for ever."""
    engine = open_engine(tmp_path / "db", clock, hot_cache_size=0)
    try:
        engine.store(StoreMode.SET, b"k", 0, 0, b"v")
        engine.fetch(b"k")  # no hot items: the state goes to the key sizes
        sizes = engine.key_sizes
        assert sizes is not None
        assert sizes.state(b"k") == (clock.now, FETCHED | ACTIVE)
        item, _size = engine.stored(b"k")
        assert item is not None
        assert item.bits & ACTIVE
        spared = item.replace(bits=item.bits & ~ACTIVE)
        batch = engine.batch()
        batch.requeue(age_key(item.cas, b"k"), b"k", codec.encode_item(spared), item.cas, 99)
        batch.commit()
        assert sizes.state(b"k") is None
        assert engine.stored(b"k")[0] == spared
    finally:
        engine.close()


def test_a_sharded_cache_keeps_a_large_item_and_its_bound() -> None:
    """From SHARDED_FROM bytes the entries are spread over shards: an insertion evicts from
    its own shard first, then from the next ones, never the entry it inserts."""
    capacity = SHARDED_FROM
    hot = new_hot(capacity)
    for i in range(2000):  # about 2x the capacity in small entries
        hot.put(b"small:%d" % i, item(b"x" * 300))
        assert hot.bytes <= capacity
    assert hot.evictions > 0
    assert len(hot) < 2000
    big = item(b"y" * (capacity // MAX_SHARE - MEMORY_PER_ENTRY - 10))  # as large as may be
    hot.put(b"big", big)
    assert hot.peek(b"big") is big
    assert hot.bytes <= capacity
    assert hot.bytes == sum(
        cost(key, entry.data) for key in hot.held() if (entry := hot.peek(key)) is not None
    )


def test_a_first_read_records_its_fetch_in_the_entry_itself(tmp_path: Path, clock: Clock) -> None:
    """No new object per first read: the entry a read returns changes its fetch state in
    place, becomes dirty (RocksDB still has the old state) and moves to the young end."""
    engine = open_engine(tmp_path / "db", clock, hot_cache_size=8 * cost(b"k0", b"x" * 64))
    try:
        for i in range(9):  # the ninth finds no room: writes evict nothing
            engine.store(StoreMode.SET, b"k%d" % i, 0, 0, b"x" * 64)
        assert engine.hot.peek(b"k8") is None
        entry = engine.hot.peek(b"k0")
        assert entry is not None
        assert not entry.bits & FETCHED
        read = engine.fetch(b"k0")
        assert read is entry
        assert entry.bits & FETCHED
        assert entry.last_access == clock.now
        assert engine.hot.newer(b"k0") is entry  # dirty
        raw = engine.db.items.get(b"k0")
        assert raw is not None
        assert not codec.decode(raw).bits & FETCHED
        assert engine.fetch(b"k8") is not None  # fills, evicting the oldest: k1, not k0
        assert engine.hot.peek(b"k0") is entry
        assert engine.hot.peek(b"k1") is None
        other = entry.replace()  # not the entry: the caller hints a copy instead
        assert not engine.hot.fetched(b"k0", other, int(clock.now), FETCHED)
    finally:
        engine.close()
