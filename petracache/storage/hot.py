"""The hot items: recently used items kept decoded in memory, in front of RocksDB.

Why: a RocksDB ``get`` of a 1 KB item costs 4-5 µs on this hardware once the data set is
larger than the CPU caches (a skiplist walk in the memtables or a block lookup in the SST
files, plus the copy and the decode), which was the largest single cost of a ``get``
(docs/benchmarks.md). memcached answers from a hash table in memory; here the recently used
items are answered from a dict: a hit costs a dictionary lookup and no decode.

Invariants (what makes it a cache and not a second store):

* Write-through and exact: an entry, when present, is the decoded form of what RocksDB holds
  under its key *now*. Every write to the items family updates or drops the entry in the
  same synchronous call that writes RocksDB (``Engine`` writes; a reclaim batch drops the
  keys it deletes or rewrites when it commits). RocksDB stays the only durable copy; a
  reply never depends on something only this cache holds. Losing the cache (a restart)
  loses speed, never data.
* Liveness is not cached: an entry may be expired or covered by a ``flush_all``; the engine
  checks every item it reads, from here or from RocksDB, the same way.
* Bounded: ``capacity`` bytes, counting each entry as its key and data plus
  ``ENTRY_OVERHEAD`` (the Python objects around them). Least recently used entries leave
  first. An item larger than ``capacity // MAX_SHARE`` is not kept (one big value must not
  empty the cache). ``capacity`` 0 turns the cache off.
* Single-threaded: used only on the trio thread, like the engine's item operations.
* Entries are plain tuples, not ``Item`` objects: CPython's collector stops tracking a plain
  tuple of ints and bytes after one look, but never an instance of a tuple subclass such as
  a ``NamedTuple``. Holding ``Item`` objects, every full collection walked every hot item
  (151 ms with 100,000 items and 1,000 connections, a pause for every client); an ``Item``
  is built again on each hit (about 0.15 µs).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

from petracache.storage.codec import Item

# Bytes per entry beyond key and data: the Item tuple and its ints, the bytes objects'
# headers and the ordered dict's node and slot (measured with tracemalloc: ~385 B).
ENTRY_OVERHEAD: Final = 384
MAX_SHARE: Final = 8  # an item may take at most 1/8 of the cache
_DATA: Final = Item._fields.index("data")


def _as_item(fields: tuple[Any, ...]) -> Item:
    """The ``Item`` an entry's plain tuple holds (``tuple.__new__``: no field checks)."""
    return tuple.__new__(Item, fields)


class HotItems:
    """A bounded, least-recently-used map of key -> ``Item`` (see the module docstring).

    Args:
        capacity: bytes the entries may take (``storage.hot_cache_size``); 0 = off.
    """

    __slots__ = ("_entries", "_largest", "bytes", "capacity", "evictions", "hits", "misses")

    def __init__(self, capacity: int) -> None:
        self._entries: OrderedDict[bytes, tuple[Any, ...]] = OrderedDict()
        self.capacity = capacity
        self._largest = capacity // MAX_SHARE
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Item | None:
        """The entry for ``key`` (now the most recently used), or None."""
        fields = self._entries.get(key)
        if fields is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return _as_item(fields)

    def peek(self, key: bytes) -> Item | None:
        """The entry for ``key`` without counting or reordering (for a write's bookkeeping)."""
        fields = self._entries.get(key)
        return None if fields is None else _as_item(fields)

    def put(self, key: bytes, item: Item) -> None:
        """``item`` is what RocksDB now holds under ``key``."""
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self.bytes -= len(key) + len(old[_DATA]) + ENTRY_OVERHEAD
        cost = len(key) + len(item.data) + ENTRY_OVERHEAD
        if cost > self._largest:
            return
        entries[key] = tuple(item)
        self.bytes += cost
        if self.bytes > self.capacity:
            self._shrink()

    def drop(self, key: bytes) -> None:
        """RocksDB no longer holds what the entry says (deleted or rewritten elsewhere)."""
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= len(key) + len(old[_DATA]) + ENTRY_OVERHEAD

    def clear(self) -> None:
        """Forget every entry (e.g. after the database under it was replaced)."""
        self._entries.clear()
        self.bytes = 0

    def _shrink(self) -> None:
        entries = self._entries
        while self.bytes > self.capacity and entries:
            key, old = entries.popitem(last=False)
            self.bytes -= len(key) + len(old[_DATA]) + ENTRY_OVERHEAD
            self.evictions += 1
