"""The reclaimer's compactions and memtable flushes, queued for one worker thread.

What was deleted is compacted once it is worth rewriting SST files for (``after_backlog``:
a drained backlog that deleted at least ``COMPACT_MIN_BYTES``; a compaction in the middle
of a backlog would rewrite data about to be deleted, and briefly hold both copies on disk;
smaller deletions are left to RocksDB's compact-on-deletion collector). A memtable flush
goes ahead of the compactions when the memtables hold mostly deleted data
(``memtables_mostly_dead``): on an idle server the memtable never fills, so without it the
write-ahead log would hold the deleted items, and their tombstones, indefinitely. Queued
compactions of one family merge into one range.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from petracache.storage.rocks import AGE_CF, EXPIRY_CF

COMPACT_MIN_BYTES = 1 << 20  # reclaimed bytes worth a manual compaction
# Memtable flushes after reclaim: only when the WAL holds at least FLUSH_MIN_WAL (below
# that, an SST file of tombstones costs more than the log it releases), at most one per
# FLUSH_MIN_INTERVAL seconds (a steady expiry stream drains its backlog every poll), and
# only when at least DEAD_SHARE of the puts in the memtables are shadowed by deletes.
FLUSH_MIN_WAL = 1 << 20
FLUSH_MIN_INTERVAL = 5.0
DEAD_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Compaction:
    """A key range of one column family to compact (``None`` = open end)."""

    family: str
    begin: bytes | None
    end: bytes | None


@dataclass(frozen=True, slots=True)
class Flush:
    """Flush every family's memtables, so the WAL files holding them are deleted."""


Job = Compaction | Flush


def memtables_mostly_dead(entries: int, deletes: int, wal: int) -> bool:
    """Whether flushing the memtables would release a log of mostly deleted data.

    Args:
        entries: entries in the items family's memtables (puts and deletes).
        deletes: the deletes among them.
        wal: bytes of WAL files on disk.

    Each delete is taken to shadow one put in the memtables (reclaim deletes what was
    written; a delete of an already flushed item shadows nothing here but pins the log all
    the same), so a memtable of tombstones alone counts as all dead.
    """
    if wal < FLUSH_MIN_WAL:
        return False
    puts = entries - deletes
    return deletes >= DEAD_SHARE * puts


class JobQueue:
    """Queued compactions (by family, or by ``slot`` for a range of its own) and flushes,
    and the key range deleted since the last compaction was asked for.

    Args:
        unflushed: (entries, deletes) in the items family's memtables and the WAL bytes on
            disk (``Database.unflushed``).
        timer: monotonic seconds, for the flush interval.
    """

    def __init__(self, unflushed: Callable[[], tuple[int, int, int]], timer: Callable[[], float]):
        self._unflushed = unflushed
        self._timer = timer
        self._last_flush = -FLUSH_MIN_INTERVAL
        self._flush_wanted = False
        self._requests: dict[str, Compaction] = {}
        self._round_bytes = 0  # deleted since the current backlog began
        self._lo: bytes | None = None  # the items family's key range deleted meanwhile
        self._hi: bytes | None = None

    def deleted(self, key: bytes, size: int) -> None:
        """An item of ``size`` bytes under ``key`` was deleted."""
        self._round_bytes += size
        if self._lo is None or key < self._lo:
            self._lo = key
        if self._hi is None or key > self._hi:
            self._hi = key

    def forget_range(self) -> None:
        """The deleted range is covered by a compaction already asked for."""
        self._lo = self._hi = None

    def after_backlog(self, expiry_cursor: bytes) -> None:
        """A backlog is drained: ask for a compaction of what it deleted, if worth it (and
        of the ``expiry`` entries it consumed, below ``expiry_cursor``)."""
        round_bytes, self._round_bytes = self._round_bytes, 0
        if self._lo is None or round_bytes < COMPACT_MIN_BYTES:
            return
        self.flush_if_mostly_dead()
        self.request(Compaction("default", self._lo, self._hi))
        if expiry_cursor:
            self.request(Compaction(EXPIRY_CF, None, expiry_cursor))
        self.forget_range()

    def flush_if_mostly_dead(self) -> None:
        """Queue a memtable flush (ahead of compactions) if the log is mostly deleted data,
        at most once per ``FLUSH_MIN_INTERVAL``."""
        if self._timer() - self._last_flush < FLUSH_MIN_INTERVAL:
            return
        if memtables_mostly_dead(*self._unflushed()):
            self.flush_now()

    def flush_now(self) -> None:
        """Queue a memtable flush whatever the memtables hold."""
        self._flush_wanted = True
        self._last_flush = self._timer()

    def everything(self) -> None:
        """Flush every memtable (the log it pins goes) and compact every family: the disk
        is over the mark with garbage, not live data."""
        self.flush_now()
        for family in (EXPIRY_CF, AGE_CF, "default"):  # the items last: it ends the wait
            self.request(Compaction(family, None, None))
        self.forget_range()

    def request(self, job: Compaction, slot: str | None = None) -> None:
        """Queue a compaction, merging it with a queued one of the same family (or
        ``slot``: the main queue's range has its own, so it is not merged with the small
        queue's)."""
        name = slot or job.family
        queued = self._requests.get(name)
        if queued is not None:
            begin = None if None in (queued.begin, job.begin) else min(queued.begin, job.begin)  # type: ignore[type-var]
            end = None if None in (queued.end, job.end) else max(queued.end, job.end)  # type: ignore[type-var]
            job = Compaction(job.family, begin, end)
        self._requests[name] = job

    def take(self) -> Job | None:
        """The next queued job, a flush before any compaction (both release the GIL)."""
        if self._flush_wanted:
            self._flush_wanted = False
            return Flush()
        if not self._requests:
            return None
        family = next(iter(self._requests))
        return self._requests.pop(family)
