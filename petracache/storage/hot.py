"""The hot items: recently used items kept decoded in memory, in front of RocksDB.

Why: memcached answers from a hash table in memory; a RocksDB ``get`` (a memtable or block
lookup, a copy and a decode) costs several times a dict lookup, and was the largest single
cost of a ``get`` (docs/benchmarks.md, "Hot items"). A hit here costs one lookup, no decode.

Invariants (what makes it a cache and not a second store):

* Write-through and exact: an entry, when present, is the decoded form of what RocksDB holds
  under its key *now*. Every write to the items family updates or drops the entry in the
  same synchronous call that writes RocksDB (``storage.writer``; a reclaim batch drops the
  keys it deletes or rewrites when it commits). RocksDB stays the only durable copy; a reply
  never depends on something only this cache holds. Losing the cache loses speed, never data.
* One exception, the fetch state: a read that only changes an item's fetch state (the
  fetched and active bits, the access time: ``items.fetch_state``) updates the entry here and
  marks it *dirty* instead of writing RocksDB (``hint``). The dirty entry is then the newer
  version; when it leaves this cache its state goes to the key sizes (``write_back``:
  ``storage.key_sizes`` keeps it in memory, or RocksDB gets the whole value when they do
  not hold the key), at close RocksDB gets it (``take_hints``), and it is dropped if a
  write replaces or deletes the key first. A crash or a restart loses only that an item
  was read, as memcached, which keeps this state in memory only. Readers of RocksDB that
  need the fetch state (the reclaimer's second chance, the metadump) ask this cache first
  (``newer``), then the key sizes (``Engine.with_state``).
* Liveness is not cached: an entry may be expired or covered by a ``flush_all``; the engine
  checks every item it reads, from here or from RocksDB, the same way.
* Bounded: ``capacity`` bytes, counting each entry as its key and data plus
  ``MEMORY_PER_ENTRY``. Least recently used entries leave first, where a use is counted as
  memcached counts it: an item moves to the young end when it is written and when a read
  records its fetch (``hint``: the first read after a write, then at most once per
  ``items.ACCESS_UPDATE_INTERVAL``, memcached's ``ITEM_UPDATE_INTERVAL``), not on every
  hit, so a hit touches no more memory than the lookup. The order is a dict's insertion
  order; eviction takes entries from its old end in chunks (``_EVICT_SLACK``), so the scan
  over the slots earlier removals left empty is paid once per chunk. From ``SHARDED_FROM``
  bytes the entries are spread over 2**``SHARD_BITS`` dicts by key hash, each in its own
  order, and an insertion that overflows the capacity evicts from its own shard (the order
  is then least recently used per shard, as in RocksDB's sharded block cache): a dict
  rebuilds its table at once when it grows or after enough deletions, which for one dict
  of 100,000 entries stopped every client for about 7 ms. An item larger than
  ``capacity // MAX_SHARE`` is not kept (one big value must not empty the cache).
  ``capacity`` 0 turns the cache off.
* Invisible to the garbage collector: the entries are ``Item``s never tracked (compiled) or
  untracked as they are stored (``_kept``: an item holds only ints and bytes, so it can be
  in no reference cycle),
  the dirty marks are ``True`` in plain dicts (never tracked), and each map of entries is
  an ``_Entries``: tracked from birth, so the server's start-up freeze (``app``, after the
  engine opens) puts it in the permanent generation, which no collection walks. A full
  collection over 100,000 tracked entries pauses every client at once
  (docs/benchmarks.md); ``tests/storage/test_hot.py`` checks this.
* Single-threaded: used only on the trio thread, like the engine's item operations.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable
from typing import Final

from petracache.storage.items import Item

# Bytes per entry beyond key and data: the entry's Item and its ints, the bytes objects'
# headers and the dict's slot (measured with tracemalloc: docs/internals.md, "Hot items").
MEMORY_PER_ENTRY: Final = 272
MAX_SHARE: Final = 8  # an item may take at most 1/8 of the cache
# The entries are spread over this many dicts by key hash (shards), each least recently
# used first: a dict rebuilds its whole table when it grows or has been churned by
# deletions, at once, about 7 ms for 100,000 entries, which would stall every client.
# A cache smaller than SHARDED_FROM bytes (a few thousand entries) keeps one dict: exact
# least-recently-used order, and its rebuilds are short.
SHARD_BITS: Final = 6
SHARDED_FROM: Final = 1 << 20
# Eviction frees this share of a shard's part of the capacity beyond what the new entry
# needs (a 64th), so the scan from the dict's old end runs once per chunk of evictions.
_EVICT_SLACK: Final = 6
# A prototype of our own (holding the GIL, like every ``pythonapi`` call), rather than
# setting argtypes on the shared ``ctypes.pythonapi`` attribute other code may use too.
_untrack: Final = ctypes.PYFUNCTYPE(None, ctypes.py_object)(
    ("PyObject_GC_UnTrack", ctypes.pythonapi)
)
# Whether an Item is tracked by the collector at all (pure Python: yes; compiled: no).
_ITEMS_TRACKED: Final = gc.is_tracked(Item(0, 0, 0, 0, b""))


def _kept(item: Item) -> Item:
    """``item``, not tracked by the garbage collector, to be kept as an entry.

    An item holds only ints and bytes, so it can never be part of a reference cycle, and
    an entry tracked would be walked by every full collection. The compiled build's
    ``Item`` is never tracked (``acyclic``); in pure Python, a class with slots is tracked
    for its whole life, and untracking it (CPython's public ``PyObject_GC_UnTrack``, which
    its deallocator also calls) is safe. Kept as ``Item``s, a hit returns the entry itself,
    with no object built per hit.
    """
    if _ITEMS_TRACKED:
        _untrack(item)
    return item


def _cost(key: bytes, item: Item) -> int:
    """Bytes an entry counts against the capacity."""
    return len(key) + len(item.data) + MEMORY_PER_ENTRY


class _Entries(dict[bytes, Item]):
    """key -> ``Item``, oldest first: a dict that stays tracked by the garbage collector.

    Why a subclass: the collector untracks an *exact* dict whose members are all untracked
    (and the first insertion tracks it again, into the youngest generation, which every
    young collection then walks whole). It never untracks a subclass's instance, which is
    tracked from birth: created before the server's start-up freeze, it stays in the
    permanent generation for good, however its members change.
    """

    __slots__ = ()


class HotItems:
    """A bounded map of key -> ``Item``, least recently used out first (see the module
    docstring).

    Args:
        capacity: bytes the entries may take (``storage.hot_cache_size``); 0 = off.
        write_back: keeps the fetch state of the dirty entries (key, item) as they are
            evicted, all of one eviction chunk at once (best effort: it must not raise).
    """

    __slots__ = (
        "_chunk",
        "_dirty",
        "_largest",
        "_mask",
        "_shards",
        "_write_back",
        "bytes",
        "capacity",
        "evictions",
        "hits",
        "misses",
    )

    def __init__(
        self, capacity: int, write_back: Callable[[list[tuple[bytes, Item]]], object]
    ) -> None:
        bits = SHARD_BITS if capacity >= SHARDED_FROM else 0
        self._mask = (1 << bits) - 1  # a key's shard: its hash & this
        # key -> Item (untracked), least recently used first, in the shard of the key's hash
        self._shards = [_Entries() for _ in range(1 << bits)]
        # the shards' entries newer than RocksDB (fetch state only)
        self._dirty: list[dict[bytes, bool]] = [{} for _ in range(1 << bits)]
        self._write_back = write_back
        self.capacity = capacity
        self._largest = capacity // MAX_SHARE
        self._chunk = capacity >> (_EVICT_SLACK + bits)  # a shrink frees this much beyond
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._shards)

    @property
    def dirty(self) -> int:
        """Entries whose fetch state RocksDB does not have yet."""
        return sum(len(dirty) for dirty in self._dirty)

    def held(self) -> list[bytes]:
        """Every key held (for checks, not the request path)."""
        return [key for entries in self._shards for key in entries]

    def get(self, key: bytes) -> Item | None:
        """The entry for ``key``, or None. A hit does not move the entry: the fetch record
        that a read writes when it is news (``hint``) does."""
        item = self._shards[hash(key) & self._mask].get(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        return item

    def peek(self, key: bytes) -> Item | None:
        """The entry for ``key``, not counted as a hit (a write's bookkeeping, just before
        the write)."""
        return self._shards[hash(key) & self._mask].get(key)

    def newer(self, key: bytes) -> Item | None:
        """The entry for ``key`` if it is newer than what RocksDB holds (dirty), else None:
        for readers of RocksDB that need the fetch state."""
        shard = hash(key) & self._mask
        if key not in self._dirty[shard]:
            return None
        return self._shards[shard].get(key)

    def put(self, key: bytes, item: Item, *, evict: bool = True) -> Item | None:
        """``item`` is what RocksDB now holds under ``key`` (or will, once the caller's
        write returns; it drops the key if the write fails), now the most recently used.
        Returns the entry it replaced, if any: a set's size bookkeeping, without a second
        lookup.

        ``evict=False`` (a write): the item replaces the key's entry, or is kept if there
        is room for it, but evicts nothing: reads decide what stays, so a stream of writes
        of keys nobody reads does not push out the items that are read (and costs no
        eviction)."""
        shard = hash(key) & self._mask
        dirty = self._dirty[shard]
        if dirty:
            dirty.pop(key, None)
        entries = self._shards[shard]
        cost = _cost(key, item)
        # Popped and inserted again, so the entry moves to the young end; the second lookup
        # hits the cache lines the first just read.
        old = entries.pop(key, None)
        if old is not None:
            self.bytes -= _cost(key, old)
        elif not evict and self.bytes + cost > self.capacity:
            return None
        if cost > self._largest:
            return old  # not kept, and the old entry must not outlive its value
        entries[key] = _kept(item)
        self.bytes += cost
        if self.bytes > self.capacity:
            self._shrink(shard, key)
        return old

    def hint(self, key: bytes, item: Item) -> bool:
        """``item`` is the entry's item with only its fetch state changed: keep it here,
        dirty, instead of writing RocksDB, and count it as a use: the entry moves to the
        young end. False if ``key`` has no entry (then the caller writes RocksDB itself)."""
        shard = hash(key) & self._mask
        entries = self._shards[shard]
        if entries.pop(key, None) is None:
            return False
        entries[key] = _kept(item)  # the same data, so the same size
        self._dirty[shard][key] = True
        return True

    def fetched(self, key: bytes, item: Item, last_access: int, bits: int) -> bool:
        """A read of ``item`` records its fetch (``hint``), and ``item`` is the entry itself
        (what a read returns): its fetch state changes in place, with no new object to
        build and untrack. False if it is not the entry (the caller hints a copy)."""
        shard = hash(key) & self._mask
        entries = self._shards[shard]
        entry = entries.pop(key, None)
        if entry is None:
            return False
        entries[key] = entry  # a use: the young end
        if entry is not item:
            return False
        item.last_access = last_access
        item.bits = bits
        self._dirty[shard][key] = True
        return True

    def take_hints(self) -> list[tuple[bytes, Item]]:
        """Every dirty entry's key and item, now counted as written (the caller writes
        them)."""
        hints: list[tuple[bytes, Item]] = []
        for entries, dirty in zip(self._shards, self._dirty, strict=True):
            hints.extend((key, entries[key]) for key in dirty)
            dirty.clear()
        return hints

    def drop(self, key: bytes) -> None:
        """RocksDB no longer holds what the entry says (deleted or rewritten elsewhere)."""
        shard = hash(key) & self._mask
        old = self._shards[shard].pop(key, None)
        if old is not None:
            self.bytes -= _cost(key, old)
            self._dirty[shard].pop(key, None)

    def clear(self) -> None:
        """Forget every entry, dirty ones included (the database under it was replaced)."""
        for entries, dirty in zip(self._shards, self._dirty, strict=True):
            entries.clear()
            dirty.clear()
        self.bytes = 0

    def _shrink(self, shard: int, keep: bytes) -> None:
        """Evict from the old end of ``shard`` (then of the next ones, should it run out)
        until a chunk (``_chunk``) below the capacity; never ``keep``, the entry just put."""
        excess = self.bytes - (self.capacity - self._chunk)
        records: list[tuple[bytes, Item]] = []
        evicted = 0
        while excess > 0:
            entries, dirty = self._shards[shard], self._dirty[shard]
            victims: list[bytes] = []
            for key, old in entries.items():  # oldest first
                if excess <= 0:
                    break
                if key is not keep:
                    excess -= _cost(key, old)
                    victims.append(key)
            for key in victims:
                old = entries.pop(key)
                if key in dirty:
                    del dirty[key]
                    records.append((key, old))
            evicted += len(victims)
            shard = (shard + 1) & self._mask
        self.bytes = self.capacity - self._chunk + excess  # what stays once the victims are gone
        self.evictions += evicted
        if records:
            self._write_back(records)
