"""The exact live-item count and stored bytes (``stats`` ``curr_items`` and ``bytes``).

RocksDB's ``estimate-num-keys`` counts entries, not keys: every rewrite of a key and every
fetch record is one more entry until compaction merges them (20 keys written three times
and read once each read as 120). memcached's ``curr_items`` is the number of linked items,
expired-but-not-yet-reaped ones included; here that is the number of keys in the items
family, and ``bytes`` is ``codec.stored_size`` summed over them.

Strategy: the engine keeps the count as it writes. Every write knows whether its key was
there before and how large it was: the read-modify-write commands read the old version
anyway; a ``set`` asks the hot items, then the key sizes kept in memory
(``storage.key_sizes``), and reads RocksDB only for a key those cannot answer for (before
the start-up scan has finished); a reclaim batch deletes only versions it has just read. So
each write moves the count by exactly what it changed.

Across restarts: a clean stop persists the count with the database's sequence number
(``storage.warm_restart``); a start that finds the same sequence number (nothing written since,
not even by an offline tool) takes it as exact. Otherwise (a crash, a restored backup) the
count is rebuilt by ``KeyScan``: one RocksDB iterator, whose view is fixed when it is
created, walked in bounded steps on the trio thread, while the live counts record the
changes made after that moment from zero. The exact count is the walked count plus those
changes. Until the walk ends, ``stats`` reports RocksDB's estimate.

Known inexactness: a value that cannot be decoded (``corrupt_values``) reads as a miss, so a
later ``add`` of its key counts it a second time; such values are reported separately.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from petracache.storage import codec
from petracache.storage.key_sizes import KeySizes
from petracache.storage.rocks import Family, RawIterator
from petracache.storage.warm_restart import LastRun

RECOUNT_STEP_ITEMS: Final = 4096  # keys per recount step (the step also stops after its budget)
RECOUNT_STEP_BUDGET: Final = 0.005  # seconds of trio-thread time per step


class ItemCounts:
    """The live-item count and bytes; ``exact`` is False while a recount runs.

    They change only through ``link`` and ``unlink``, as memcached's ``curr_items`` and
    ``bytes`` change only in ``do_item_link`` and ``do_item_unlink`` (``items.c``): every
    store, delete, eviction, expiry and flush goes through these two.
    """

    __slots__ = ("bytes", "exact", "items")

    def __init__(self, items: int = 0, size: int = 0, *, exact: bool = True) -> None:
        self.items = items
        self.bytes = size
        self.exact = exact

    def link(self, size: int, old_size: int) -> None:
        """A version of ``size`` stored bytes (``codec.stored_size``) now stands under a key
        that held one of ``old_size`` (0: the key is new)."""
        if old_size:
            self.bytes += size - old_size
        else:
            self.items += 1
            self.bytes += size

    def unlink(self, size: int, count: int = 1) -> None:
        """``count`` keys, of ``size`` stored bytes in all, are gone."""
        self.items -= count
        self.bytes -= size


def restored_counts(last: LastRun | None, sequence: int) -> ItemCounts:
    """The previous run's counts if nothing was written since its clean stop (the same
    sequence number), else inexact ones (``KeyScan`` rebuilds them)."""
    if last is not None and last.stopped_cleanly and last.sequence == sequence:
        return ItemCounts(last.items, last.size)
    if sequence == 0:
        return ItemCounts()  # a new database: nothing to count
    return ItemCounts(exact=False)


class KeyScan:
    """Walks every key of the items family as of its creation, in steps: recounts the
    counts when they are not exact, and fills the key sizes (``storage.key_sizes``).

    Args:
        family: the items column family.
        counts: the live counts. When not exact they are reset to zero now, so they record
            the changes made after the iterator's view was fixed, and ``finish`` adds the
            walked totals to them.
        sizes: the key sizes to fill (None when counts are not kept exact); a key they
            already hold was written or deleted after the view was fixed, and is left alone.
        timer: monotonic seconds (injected for tests).
    """

    def __init__(
        self,
        family: Family,
        counts: ItemCounts,
        sizes: KeySizes | None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._it: RawIterator | _Exhausted = family.iter()  # the view is fixed here
        self._it.seek_to_first()
        self._recount = not counts.exact
        if self._recount:  # the counts record what changes from now
            counts.items = counts.bytes = 0
        self._counts = counts
        self._sizes = sizes
        self._timer = timer
        self.items = 0
        self.bytes = 0
        self.done = False

    def step(self) -> bool:
        """Walk the next keys; True while keys remain (then call again after a yield)."""
        if self.done:
            return False
        it = self._it
        sizes = self._sizes
        deadline = self._timer() + RECOUNT_STEP_BUDGET
        n = 0
        while it.valid():
            key = it.key()
            size = codec.stored_size(key, it.value())
            self.items += 1
            self.bytes += size
            if sizes is not None:
                sizes.put_if_unknown(key, size)
            it.next()
            n += 1
            if n % 256 == 0 and (n >= RECOUNT_STEP_ITEMS or self._timer() > deadline):
                return bool(it.valid())
        self.finish()
        return False

    def finish(self) -> None:
        """Make the counts exact (the walked totals plus the changes made meanwhile) and the
        key sizes complete."""
        if self._recount:
            counts = self._counts
            counts.items += self.items
            counts.bytes += self.bytes
            counts.exact = True
        if self._sizes is not None:
            self._sizes.complete = True
        self.done = True
        self._it = _Exhausted()


class _Exhausted:
    """Stands in for the dropped iterator, so the walk's view (and its SSTs) is released."""

    def valid(self) -> bool:
        return False

    def seek_to_first(self) -> None:
        pass

    def key(self) -> bytes:
        raise IndexError("the walk is over")

    def value(self) -> bytes:
        raise IndexError("the walk is over")

    def next(self) -> None:
        pass
