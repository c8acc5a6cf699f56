"""The hot items: recently used items kept in memory, in front of RocksDB.

Why: a RocksDB ``get`` of a 1 KB item costs 4-5 µs on this hardware once the data set is
larger than the CPU caches (a skiplist walk in the memtables or a block lookup in the SST
files, plus the copy), which was the largest single cost of a ``get`` (docs/benchmarks.md).
memcached answers from a hash table in memory; here the recently used items are answered
from a dict: a hit costs a dictionary lookup and a header decode.

Invariants (what makes it a cache and not a second store):

* Write-through and exact: an entry, when present, is the very value (the encoded bytes)
  RocksDB holds under its key *now*. Every write to the items family updates or drops the
  entry in the same synchronous call that writes RocksDB (``Engine`` writes; a reclaim
  batch drops the keys it deletes or rewrites when it commits). RocksDB stays the only
  durable copy; a reply never depends on something only this cache holds. Losing the cache
  (a restart) loses speed, never data.
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
  metadump) ask this cache first (``peek``).
* Liveness is not cached: an entry may be expired or covered by a ``flush_all``; the engine
  checks every item it reads, from here or from RocksDB, the same way.
* Bounded: ``capacity`` bytes, counting each entry as its key and value plus
  ``ENTRY_OVERHEAD`` (the objects and dict slots around them). An item larger than
  ``capacity // MAX_SHARE`` is not kept (one big value must not empty the cache).
  ``capacity`` 0 turns the cache off.
* Invisible to the garbage collector: entries are bytes in plain dicts, with ``True`` as the
  mark of a recent hit. CPython never tracks a plain dict that holds only objects which
  cannot form cycles, so its full collections never walk the entries. They did while the
  entries were tuples in an ``OrderedDict`` (which is always tracked): with 100,000 items
  a full collection took 40-80 ms of CPU, visiting every key and entry at a cache miss each,
  a pause for every client at once (docs/benchmarks.md, workload 3).
* Eviction is second chance (CLOCK), the approximation of least-recently-used that needs
  no reordering on a hit: entries sit in insertion order (a plain dict keeps it); a hit or
  a rewrite marks the key; when over the bound, entries are taken oldest first, a marked
  one goes to the back once with its mark cleared, an unmarked one leaves. One such pass
  frees ``capacity // SHRINK_MARGIN`` beyond the bound, so passes are rare and short.
* Single-threaded: used only on the trio thread, like the engine's item operations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from petracache.storage import codec
from petracache.storage.codec import Item

# Bytes per entry beyond key and value: the two bytes objects' headers, the slots of the
# entry in the values dict and of its mark (measured with tracemalloc: 171 B at 100,000
# entries; a dict holds up to twice its entries in slots just after it grows).
ENTRY_OVERHEAD: Final = 192
MAX_SHARE: Final = 8  # an item may take at most 1/8 of the cache
SHRINK_MARGIN: Final = 64  # an eviction pass frees 1/64 of the cache beyond the bound


class HotItems:
    """A bounded map of key -> the encoded item RocksDB holds (see the module docstring).

    Args:
        capacity: bytes the entries may take (``storage.hot_cache_size``); 0 = off.
        write_back: stores a dirty entry's value in RocksDB as the entry is evicted (best
            effort: it must not raise).
    """

    __slots__ = (
        "_dirty",
        "_largest",
        "_recent",
        "_values",
        "_write_back",
        "bytes",
        "capacity",
        "evictions",
        "hits",
        "misses",
    )

    def __init__(self, capacity: int, write_back: Callable[[bytes, bytes], None]) -> None:
        self._values: dict[bytes, bytes] = {}  # oldest first
        self._recent: dict[bytes, bool] = {}  # keys hit or rewritten since last looked at
        self._dirty: dict[bytes, bool] = {}  # entries newer than RocksDB (fetch state only)
        self._write_back = write_back
        self.capacity = capacity
        self._largest = capacity // MAX_SHARE
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: bytes) -> Item | None:
        """The item under ``key``, decoded (and the key marked as recently used), or None."""
        raw = self._values.get(key)
        if raw is None:
            self.misses += 1
            return None
        self.hits += 1
        self._recent[key] = True
        return codec.decode(raw)

    def peek(self, key: bytes) -> bytes | None:
        """The stored value under ``key``, without counting or marking (a write's
        bookkeeping)."""
        return self._values.get(key)

    @property
    def dirty(self) -> int:
        """Entries whose fetch state RocksDB does not have yet."""
        return len(self._dirty)

    def put(self, key: bytes, value: bytes) -> None:
        """``value`` (an encoded item) is what RocksDB now holds under ``key``."""
        values = self._values
        old = values.get(key)
        if self._dirty:
            self._dirty.pop(key, None)
        cost = len(key) + len(value) + ENTRY_OVERHEAD
        if old is not None:
            if cost > self._largest:
                self.drop(key)  # the old entry must not outlive its value
                return
            values[key] = value  # in place: the mark below keeps it from leaving first
            self._recent[key] = True
            self.bytes += len(value) - len(old)
        elif cost > self._largest:
            return
        else:
            values[key] = value
            self.bytes += cost
        if self.bytes > self.capacity:
            self._shrink(key)

    def hint(self, key: bytes, value: bytes) -> bool:
        """``value`` is the entry's item with only its fetch state changed: keep it here,
        dirty, instead of writing RocksDB. False if ``key`` has no entry (then the caller
        writes RocksDB itself)."""
        values = self._values
        if key not in values:
            return False
        values[key] = value  # the same data, so the same size
        self._recent[key] = True
        self._dirty[key] = True
        return True

    def take_hints(self) -> list[tuple[bytes, bytes]]:
        """Every dirty entry's (key, value), now counted as written (the caller writes them)."""
        values = self._values
        hints = [(key, values[key]) for key in self._dirty]
        self._dirty.clear()
        return hints

    def drop(self, key: bytes) -> None:
        """RocksDB no longer holds what the entry says (deleted or rewritten elsewhere)."""
        old = self._values.pop(key, None)
        if old is not None:
            self.bytes -= len(key) + len(old) + ENTRY_OVERHEAD
            self._recent.pop(key, None)
            self._dirty.pop(key, None)

    def clear(self) -> None:
        """Forget every entry, dirty ones included (the database under it was replaced)."""
        self._values.clear()
        self._recent.clear()
        self._dirty.clear()
        self.bytes = 0

    def _shrink(self, newest: bytes) -> None:
        """Evict, second chance, until ``capacity // SHRINK_MARGIN`` below the bound.

        ``newest``, the entry just written, is spared as if marked: when every older entry
        is marked, a round reaches the back of the dict, and the entry being added must not
        be the one that leaves. Terminates: each round clears the marks of the entries it
        passes over, so the next round finds them unmarked.
        """
        values, recent = self._values, self._recent
        target = self.capacity - self.capacity // SHRINK_MARGIN
        while self.bytes > target and values:
            spared: list[bytes] = []
            freed = 0
            need = self.bytes - target
            victims: list[bytes] = []
            for key, value in values.items():  # oldest first
                if freed >= need:
                    break
                if key in recent or key == newest:
                    spared.append(key)
                else:
                    victims.append(key)
                    freed += len(key) + len(value) + ENTRY_OVERHEAD
            dirty = self._dirty
            for key in victims:
                value = values.pop(key)
                if key in dirty:
                    del dirty[key]
                    self._write_back(key, value)
            self.bytes -= freed
            self.evictions += len(victims)
            for key in spared:  # to the back, unmarked
                recent.pop(key, None)
                values[key] = values.pop(key)
