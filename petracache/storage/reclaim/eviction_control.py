"""When an eviction round starts and how much it evicts: the disk bound's controller.

Why a module of its own: ``storage.reclaim`` walks the ``age`` index and deletes; this
decides from measured disk usage and the live data's size whether a round is due and its
byte target, or whether the excess is garbage to reclaim instead, and learns the write rate
that makes rounds start early. It reads no items and writes nothing.

Rules (``max_disk_bytes`` is the bound):

* Only live data is evicted. Usage counts garbage too (overwritten and deleted versions
  that the write-ahead log, the memtables and the SST files still hold until a flush and a
  compaction give them back), which no eviction frees. So what a round may evict is
  measured on the *evictable* bytes: the smaller of usage and the live data's estimated
  size on disk (the exact item counts plus a per-item overhead; usage alone while the
  counts are not exact). When usage is over the mark but the evictable bytes are not, the
  excess is garbage: ``garbage`` is set (the reclaimer flushes the memtables and compacts
  everything) and nothing is evicted; the next measurement waits for that compaction, and
  such a reclaim runs at most once per ``GARBAGE_INTERVAL``. A cache whose live data fits
  is never emptied by a burst of garbage.
* A round starts when the evictable bytes plus the *lead* reach ``HIGH_WATER`` of the bound
  and aims for ``LOW_WATER``: its target is the excess down to there, at most
  ``MAX_ROUND`` of the bound; then it compacts and measures again.
* The lead is what the writes will add while a round and its compaction run: the growth
  rate of usage (measured between rounds only, since a compaction's drop is not growth;
  smoothed by ``GROWTH_SMOOTHING``) times the last round's duration, capped at
  ``HIGH_WATER - LOW_WATER`` of the bound. So at high write rates a round starts that much
  sooner and stops that much lower, and the writes arriving during it land below the bound;
  slow writes make the lead zero. (The alternatives measured, and why they did not lower
  the peaks: docs/benchmarks.md.)
* No new round starts while the last one's compaction, or a garbage reclaim's, runs.
* With eviction off (``eviction = "none"``, memcached's ``-M``) there are no rounds:
  ``full`` says whether the evictable bytes have reached ``HIGH_WATER`` of the bound, where
  a round would start, and stores are refused while they have (the reclaimer sets
  ``Engine.out_of_space``). Garbage is reclaimed as above, and only live data counts, so
  overwrites and expired items never make the cache refuse stores for long.
"""

from __future__ import annotations

from collections.abc import Callable

from petracache.storage import index as idx
from petracache.storage.item_counts import ItemCounts

HIGH_WATER = 0.55  # share of max_disk_bytes that starts an eviction round
LOW_WATER = 0.40  # share an eviction round aims for
MAX_ROUND = 0.30  # share of max_disk_bytes one round evicts at most (2x the usual round)
GROWTH_SMOOTHING = 0.3  # weight of the newest growth-rate sample (an exponential average)
# A round's duration until one has been timed: a guess (the first timed round replaces it),
# so that the first round after a start already leads a fast writer.
FIRST_ROUND_SECONDS = 1.0
ROCKSDB_ENTRY_BYTES = 24  # RocksDB per-entry bytes (internal key trailer, block index share)
# A live item's bytes on disk beyond its key and value: its entry's and its index entries'
# overhead (an age entry, and an expiry entry when it has a TTL, each with a key prefix).
LIVE_BYTES_PER_ITEM = 3 * ROCKSDB_ENTRY_BYTES + idx.AGE_PREFIX + idx.EXPIRY_PREFIX
GARBAGE_INTERVAL = 1.0  # seconds between two garbage reclaims (each compacts everything)


def live_bytes(counts: ItemCounts) -> int | None:
    """The live data's estimated size on disk: the exact counts' bytes plus each item's
    entries' overhead; None while the counts are not exact (a recount runs, or
    ``exact_item_count`` is off)."""
    if not counts.exact:
        return None
    return counts.bytes + counts.items * LIVE_BYTES_PER_ITEM


class EvictionControl:
    """The round controller (see the module docstring).

    Args:
        bound: ``max_disk_bytes`` (> 0).
        timer: monotonic seconds.
    """

    def __init__(self, bound: int, timer: Callable[[], float]) -> None:
        self.bound = bound
        self._timer = timer
        self.target = 0  # bytes the current round still has to evict (0: no round)
        self.waits_compaction = False  # the last round's compaction has not finished
        self.over_bound = False  # the evictable bytes were past the bound at the last check
        self.garbage = False  # the excess is garbage: reclaim it (the reclaimer clears this)
        self._reclaiming = False  # a garbage reclaim's compaction has not finished
        self._garbage_at = -GARBAGE_INTERVAL  # when the last garbage reclaim was asked for
        self._growth = 0.0  # bytes per second, smoothed
        self._last_usage: tuple[float, int] | None = None
        self._round_started = 0.0
        self._round_seconds = FIRST_ROUND_SECONDS  # the last round, start to compaction end

    def due(self, usage: Callable[[], int], live: Callable[[], int | None] | None = None) -> bool:
        """Whether a round is running or starts now.

        Args:
            usage: measures the disk (what the bound bounds).
            live: the live data's estimated size on disk, or None when unknown (then usage
                is taken for live data); omitted, the same as unknown.
        """
        if self.target > 0:
            return True
        if self.waits_compaction or self._reclaiming:
            return False
        used = usage()
        lead = self._lead_bytes(used)
        high = HIGH_WATER * self.bound
        if used + lead < high:
            self.over_bound = False
            return False
        known = None if live is None else live()
        evictable = used if known is None else min(used, known)
        self.over_bound = evictable >= self.bound
        if evictable + lead < high:
            now = self._timer()
            if now - self._garbage_at >= GARBAGE_INTERVAL:
                self._garbage_at = now
                self.garbage = self._reclaiming = True
            return False
        target = evictable + lead - int(LOW_WATER * self.bound)
        self.target = min(target, int(MAX_ROUND * self.bound))
        self._round_started = self._timer()
        return True

    def full(self, usage: Callable[[], int], live: Callable[[], int | None] | None = None) -> bool:
        """With eviction off: whether the evictable bytes reached the mark a round would
        start at (no lead: nothing is evicted ahead of the writes). Usage over the mark with
        less live data is garbage: a reclaim is asked for (``garbage``), as in ``due``, and
        the answer is False.

        Args:
            usage: measures the disk (what the bound bounds).
            live: the live data's estimated size on disk, or None when unknown.
        """
        used = usage()
        high = HIGH_WATER * self.bound
        if used < high:
            return False
        known = None if live is None else live()
        evictable = used if known is None else min(used, known)
        if evictable >= high:
            return True
        now = self._timer()
        if not self._reclaiming and now - self._garbage_at >= GARBAGE_INTERVAL:
            self._garbage_at = now
            self.garbage = self._reclaiming = True
        return False

    def _lead_bytes(self, usage: int) -> int:
        """The usage the writes will add while a round and its compaction run."""
        now = self._timer()
        if self._last_usage is not None:
            then, before = self._last_usage
            if now > then:
                rate = max(usage - before, 0) / (now - then)
                self._growth += GROWTH_SMOOTHING * (rate - self._growth)
        self._last_usage = (now, usage)
        cap = (HIGH_WATER - LOW_WATER) * self.bound
        return int(min(self._growth * self._round_seconds, cap))

    def end_round(self, evicted: int) -> bool:
        """The round is over (target met or the index exhausted); True when it evicted
        something, so its compaction is now awaited before the next measurement."""
        self.target = 0
        self.waits_compaction = evicted > 0
        return self.waits_compaction

    def compacted(self) -> None:
        """The items family was compacted: a round's compaction ends the round's timing, and
        a garbage reclaim ends; the next ``due`` measures again."""
        if self.waits_compaction:
            self._round_seconds = self._timer() - self._round_started
        if self.waits_compaction or self._reclaiming:
            self._last_usage = None  # the compaction's drop is not a rate
        self.waits_compaction = self._reclaiming = False
