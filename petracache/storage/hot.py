"""The hot items: recently used items kept decoded in memory, in front of RocksDB.

Why: a RocksDB ``get`` of a 1 KB item costs 4-5 µs on this hardware once the data set is
larger than the CPU caches (a skiplist walk in the memtables or a block lookup in the SST
files, plus the copy and the decode), which was the largest single cost of a ``get``
(docs/benchmarks.md). memcached answers from a hash table in memory; here the recently used
items are answered from an LRU map in C (``lru-dict``): a hit costs a lookup and no decode.

Invariants (what makes it a cache and not a second store):

* Write-through and exact: an entry, when present, is the decoded form of what RocksDB holds
  under its key *now*. Every write to the items family updates or drops the entry in the
  same synchronous call that writes RocksDB (``Engine`` writes; a reclaim batch drops the
  keys it deletes or rewrites when it commits). RocksDB stays the only durable copy; a reply
  never depends on something only this cache holds. Losing the cache (a restart) loses
  speed, never data.
* One exception, the fetch state: a read that only changes an item's fetch state (the
  fetched and active bits, the access time: ``items.fetched``) updates the entry here and
  marks it *dirty* instead of writing RocksDB (``hint``). The dirty entry is then the newer
  version; it reaches RocksDB when it leaves this cache (``write_back``, called as it is
  evicted), when the engine closes (``take_hints``), or never, if a write replaces or
  deletes the key first. Why: the first read of every item after it is written records the
  fetch, and writing those records cost a fifth of the CPU of a read-mostly workload
  (docs/benchmarks.md); memcached keeps this state in memory only. What is lost in a crash is
  what a crash already lost when the records were written without the WAL: that an item was
  read. Readers of RocksDB that need the fetch state (the reclaimer's second chance, the
  metadump) ask this cache first (``newer``).
* Liveness is not cached: an entry may be expired or covered by a ``flush_all``; the engine
  checks every item it reads, from here or from RocksDB, the same way.
* Bounded: ``capacity`` bytes, counting each entry as its key and data plus
  ``ENTRY_OVERHEAD`` (the objects around them). Least recently used entries leave first. An
  item larger than ``capacity // MAX_SHARE`` is not kept (one big value must not empty the
  cache). ``capacity`` 0 turns the cache off.
* Invisible to the garbage collector: ``lru.LRU`` is not a container the collector tracks,
  entries are plain tuples of ints and bytes (which the collector stops tracking after one
  look) and the dirty marks are ``True`` in a plain dict (never tracked). So a full
  collection never walks the entries. It did when they were ``NamedTuple`` instances
  (tracked forever) or sat in an ``OrderedDict`` (always tracked, and walked entry by entry
  at a cache miss each): 40-150 ms of CPU with 100,000 items, a pause for every client at
  once (docs/benchmarks.md, workload 3). ``tests/storage/test_hot.py`` checks this. An
  ``Item`` is built again on each hit (``tuple.__new__``, about 0.1 µs compiled).
* Single-threaded: used only on the trio thread, like the engine's item operations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from lru import LRU

from petracache.storage import codec
from petracache.storage.codec import Item

# Bytes per entry beyond key and data: the entry's tuple and its ints, the bytes objects'
# headers, lru-dict's node and its dict slot (measured with tracemalloc: 262 B).
ENTRY_OVERHEAD: Final = 272
MAX_SHARE: Final = 8  # an item may take at most 1/8 of the cache
_DATA: Final = Item._fields.index("data")
# lru.LRU bounds entries by count; the bound here is in bytes, so its count never binds.
_NO_COUNT_BOUND: Final = 1 << 40
_tuple_new = tuple.__new__


def _as_item(fields: tuple[Any, ...]) -> Item:
    """The ``Item`` an entry's plain tuple holds (no field checks)."""
    return _tuple_new(Item, fields)


class HotItems:
    """A bounded, least-recently-used map of key -> ``Item`` (see the module docstring).

    Args:
        capacity: bytes the entries may take (``storage.hot_cache_size``); 0 = off.
        write_back: stores a dirty entry's encoded value in RocksDB as the entry is evicted
            (best effort: it must not raise).
    """

    __slots__ = (
        "_dirty",
        "_entries",
        "_largest",
        "_write_back",
        "bytes",
        "capacity",
        "evictions",
        "hits",
        "misses",
    )

    def __init__(self, capacity: int, write_back: Callable[[bytes, bytes], object]) -> None:
        self._entries: Any = LRU(_NO_COUNT_BOUND)  # lru.LRU: key -> plain tuple of fields
        self._dirty: dict[bytes, bool] = {}  # entries newer than RocksDB (fetch state only)
        self._write_back = write_back
        self.capacity = capacity
        self._largest = capacity // MAX_SHARE
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def dirty(self) -> int:
        """Entries whose fetch state RocksDB does not have yet."""
        return len(self._dirty)

    def get(self, key: bytes) -> Item | None:
        """The entry for ``key`` (now the most recently used), or None."""
        fields = self._entries.get(key)
        if fields is None:
            self.misses += 1
            return None
        self.hits += 1
        return _as_item(fields)

    def peek(self, key: bytes) -> Item | None:
        """The entry for ``key``, not counted as a hit (a write's bookkeeping, just before
        the write: lru-dict has no lookup that leaves the order alone)."""
        fields = self._entries.get(key)
        return None if fields is None else _as_item(fields)

    def newer(self, key: bytes) -> Item | None:
        """The entry for ``key`` if it is newer than what RocksDB holds (dirty), else None:
        for readers of RocksDB that need the fetch state."""
        if key not in self._dirty:
            return None
        return _as_item(self._entries.get(key))

    def put(self, key: bytes, item: Item) -> None:
        """``item`` is what RocksDB now holds under ``key``."""
        if self._dirty:
            self._dirty.pop(key, None)
        entries = self._entries
        cost = len(key) + len(item.data) + ENTRY_OVERHEAD
        # Replaced in place (``get`` then a store to the same node), not popped and inserted
        # again: a set has just looked the key up, so both lookups hit warm cache lines.
        old = entries.get(key)
        if old is not None:
            self.bytes -= len(key) + len(old[_DATA]) + ENTRY_OVERHEAD
            if cost > self._largest:
                del entries[key]  # the old entry must not outlive its value
                return
        elif cost > self._largest:
            return
        entries[key] = tuple(item)
        self.bytes += cost
        if self.bytes > self.capacity:
            self._shrink()

    def hint(self, key: bytes, item: Item) -> bool:
        """``item`` is the entry's item with only its fetch state changed: keep it here,
        dirty, instead of writing RocksDB. False if ``key`` has no entry (then the caller
        writes RocksDB itself)."""
        entries = self._entries
        if key not in entries:
            return False
        entries[key] = tuple(item)  # the same data, so the same size
        self._dirty[key] = True
        return True

    def take_hints(self) -> list[tuple[bytes, bytes]]:
        """Every dirty entry's key and encoded value, now counted as written (the caller
        writes them)."""
        entries = self._entries
        hints = [(key, codec.encode_item(_as_item(entries.get(key)))) for key in self._dirty]
        self._dirty.clear()
        return hints

    def drop(self, key: bytes) -> None:
        """RocksDB no longer holds what the entry says (deleted or rewritten elsewhere)."""
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= len(key) + len(old[_DATA]) + ENTRY_OVERHEAD
            self._dirty.pop(key, None)

    def clear(self) -> None:
        """Forget every entry, dirty ones included (the database under it was replaced)."""
        self._entries.clear()
        self._dirty.clear()
        self.bytes = 0

    def _shrink(self) -> None:
        entries, dirty = self._entries, self._dirty
        while self.bytes > self.capacity and entries:
            key, old = entries.popitem(True)  # the least recently used
            self.bytes -= len(key) + len(old[_DATA]) + ENTRY_OVERHEAD
            self.evictions += 1
            if key in dirty:
                del dirty[key]
                self._write_back(key, codec.encode_item(_as_item(old)))
