"""Background reclaim: reap expired items, free flushed ones, evict to a disk bound, compact.

PetraCache drops expired items in a RocksDB compaction filter, a hook rocksdict lacks; this
uses the ``expiry`` and ``age`` index families (``storage.index``), batched deletes,
``compact_range`` and RocksDB's compact-on-deletion collector instead.

Work, most urgent first; each ``step()`` does one bounded unit (at most ``BATCH`` items and
``STEP_BUDGET`` seconds), reports whether more is waiting, and sets ``share``: the part of
the trio thread the caller should let the backlog take (``MIN_SHARE`` for a fresh expiry
backlog, growing with the age of its oldest dead item; all of it for eviction):

1. Eviction: when SST bytes plus WAL (or memtable) bytes reach ``eviction_control.HIGH_WATER`` of
   ``max_disk_bytes``, take items from the head of ``age`` (the oldest-written first) until
   an estimate of the on-disk size of those deleted covers the excess down to ``LOW_WATER``,
   then compact and measure again. ``eviction = "fifo"`` deletes every item it takes;
   ``"clock"`` gives an item read since it was written (or last spared: memcached's
   ITEM_ACTIVE, set by the fetch record a read already writes) a second chance, clearing
   the bit and moving its entry to the tail in the round's batch; ``"s3fifo"`` (the
   default) is S3-FIFO over the same index (``queues``: the rules; ``s3fifo``: the moves
   to the main queue and the ghost). While usage is past the bound, nothing is spared.
   When a round starts and how much it evicts is ``eviction_control``'s decision.
2. Expiry: walk ``expiry`` from its head while deadlines are <= now.
3. Crawl the items (no index to read): after a flush_all, and to backfill an index.

What was deleted is compacted, after a memtable flush when the memtables hold mostly
deleted data, as ``jobs`` decides; the jobs run in a worker thread (``server.tasks``).

Invariant (no lost update): every step runs synchronously on the trio thread, so no
command interleaves with it. A step re-reads each item an index entry names and deletes it
only if the stored version is the one named (same CAS) and, for expiry and flush, is dead
(``Engine.is_dead``); a newer version is left alone and only the stale entry is deleted.
The jobs in the worker thread change nothing a read returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from petracache.storage import codec, index as idx
from petracache.storage.database import BUDGET_CHECK_EVERY
from petracache.storage.engine import Engine
from petracache.storage.errors import CorruptValue
from petracache.storage.index import IndexBatch
from petracache.storage.items import ACTIVE, FETCHED, Item
from petracache.storage.reclaim import queues
from petracache.storage.reclaim.age_queues import AgeQueue
from petracache.storage.reclaim.eviction_control import (
    ROCKSDB_ENTRY_BYTES,
    EvictionControl,
    live_bytes,
)
from petracache.storage.reclaim.jobs import Compaction, Flush, Job, JobQueue
from petracache.storage.reclaim.s3fifo import MainQueue, live_items
from petracache.storage.rocks import AGE_CF, EXPIRY_CF, FLUSH_STATE

BATCH = 512  # items examined per step
STEP_BUDGET = 0.002  # seconds of trio-thread time per step: a client waits at most this long
# Share of the trio thread a backlog may take (the loop sleeps between steps to honour it):
# a fresh expiry backlog gets MIN_SHARE; one whose oldest dead item has waited FULL_SPEED_LAG
# seconds gets it all, so reaping speeds up until it keeps pace with expiry.
MIN_SHARE = 0.25
FULL_SPEED_LAG = 20.0
OVER_BOUND_SHARE = 4  # step budget multiplier while usage is past max_disk_bytes
FLUSH_DONE_KEY = b"flush_reclaimed"  # meta: the flush state whose items are all deleted
MAIN_JOB = "age main"  # the queued compaction of the main queue's consumed head


class Reclaimer:
    """Finds dead or excess items through the indexes and deletes them in bounded batches.

    Args:
        engine: the open engine (its ``index`` says which indexes are maintained).
        max_disk_bytes: the eviction bound; 0 disables eviction.
        eviction: ``"s3fifo"`` (small, main and ghost queues: ``queues``), ``"clock"``
            (spare items read since their last pass), ``"fifo"``, or ``"none"`` (memcached
            -M: nothing is evicted; at the mark where a round would start,
            ``Engine.out_of_space`` is set and stores are refused).
        timer: monotonic seconds, for the per-step time budget and the flush interval.
    """

    def __init__(
        self,
        engine: Engine,
        max_disk_bytes: int = 0,
        eviction: str = "s3fifo",
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._engine = engine
        self._evicting = eviction != "none"
        # Eviction reads the age index, kept only when a bound was configured at start.
        self._max_disk = max_disk_bytes if engine.index.track_age or not self._evicting else 0
        self._second_chance = eviction == "clock"
        self._s3fifo = eviction == "s3fifo"
        self._timer = timer
        self.jobs = JobQueue(engine.db.unflushed, timer)
        self.counters = engine.counters
        # Told of each live item an eviction round deleted, once its batch is committed
        # (``watch evictions``: app.py sets it; ``(key, item, now)``).
        self.on_evict: Callable[[bytes, Item, int], None] | None = None
        self._evicted: list[tuple[bytes, Item]] = []  # this step's, for on_evict
        # expiry walk
        self._expiry_cursor = b""
        # eviction round
        self._age_cursor = b""
        self._main_cursor = idx.MAIN_START  # s3fifo: the main queue's (the small's: above)
        self._main = MainQueue(engine, self._count_extra)  # s3fifo's moves to main
        self.ghost = self._main.ghost
        self._control = EvictionControl(self._max_disk, timer)
        self._round_evicted = 0
        self._other_turn = False
        self.share = 1.0  # of the trio thread the current backlog may take (see MIN_SHARE)
        # Seconds the oldest expired item still on disk has been dead, as of the last look at
        # the expiry index (``petracache_reclaim_lag_seconds``: reclaim falling behind).
        self.lag = 0
        # crawl (flush reclaim / backfill)
        raw = engine.db.load_state(FLUSH_DONE_KEY)
        self._flush_done: tuple[int, int] = FLUSH_STATE.unpack(raw) if raw else (0, 0)
        self._crawl_cursor: bytes | None = None
        self._crawl_flush: tuple[int, int] | None = None
        self._crawl_backfill = False
        # compaction bookkeeping: default-family key range deleted since the last request

    # -- the step ----------------------------------------------------------------------------

    def step(self) -> bool:
        """Do one bounded unit of the most urgent work; True if more is waiting.

        Raises:
            StorageError: RocksDB failed; the step's batch was not applied.
        """
        now = self._engine.now()
        deadline = self._timer() + STEP_BUDGET
        self.share = 1.0
        control = self._control
        if self._max_disk and not self._evicting:
            self._engine.out_of_space = control.full(self.disk_usage, self.live)
        elif not self._other_turn and self._max_disk and control.due(self.disk_usage, self.live):
            if control.over_bound:  # writes are outpacing eviction: take a bigger share
                deadline += STEP_BUDGET * (OVER_BOUND_SHARE - 1)
            more = self._evict(deadline)
            # Eviction reads the age index; while that is being backfilled, the crawl
            # must progress too, so it gets every other step.
            self._other_turn = self._engine.index.needs_backfill()
            return more or self._other_turn
        if control.garbage:  # over the mark with garbage, not live data: reclaim it instead
            control.garbage = False
            self._count_extra("garbage_reclaims")
            self.jobs.everything()
        self._other_turn = False
        if self._engine.index.track_expiry and self._expiry_due(now):
            more = self._reap_expired(now, deadline)
        elif self._crawl_due(now):
            self.share = MIN_SHARE  # nothing grows while a crawl waits: lazy checks hold
            more = self._crawl(now, deadline)
        else:
            more = False
        if not more:  # a drained backlog: compact what it deleted, if worth it
            self.jobs.after_backlog(self._expiry_cursor)
        return more

    def set_bound(self, max_disk_bytes: int) -> bool:
        """``cache_memlimit``: a new bound from now on; False when eviction is off (the age
        index it needs is kept only when a bound was configured at start)."""
        if not self._max_disk or max_disk_bytes <= 0:
            return False
        self._max_disk = self._control.bound = max_disk_bytes
        return True

    @property
    def eviction_enabled(self) -> bool:
        """Whether a disk bound is enforced (by evicting, or refusing stores with -M)."""
        return self._max_disk > 0

    # -- eviction ----------------------------------------------------------------------------

    def disk_usage(self) -> int:
        """What ``max_disk_bytes`` bounds (``Engine.disk_usage``)."""
        return self._engine.db.disk_usage()

    def live(self) -> int | None:
        """The live data's estimated size on disk (``live_bytes``)."""
        return live_bytes(self._engine.item_counts)

    def _evict(self, deadline: float) -> bool:
        if self._s3fifo:
            return self._evict_s3fifo(deadline)
        control = self._control
        limit = BATCH * (OVER_BOUND_SHARE if control.over_bound else 1)
        walk = self._engine.db.walk(AGE_CF, self._age_cursor, limit, deadline, self._timer)
        batch = self._engine.batch()
        spare = self._second_chance and not control.over_bound
        now = self._engine.now()
        seen: set[bytes] = set()
        for entry in walk:
            if control.target <= 0:
                break
            position, key = idx.parse_age_key(entry)
            cas = idx.age_version(position, walk.value())
            self._age_cursor = entry + b"\x00"
            item, size = self._engine.stored(key) if key not in seen else (None, 0)
            if item is None or item.cas != cas:
                batch.delete_entry(entry, AGE_CF)
                continue
            seen.add(key)
            dead = self._engine.is_dead(item, now)
            if spare and item.bits & ACTIVE and not dead:
                spared = codec.encode_item(item.replace(bits=item.bits & ~ACTIVE))
                batch.requeue(entry, key, spared, cas, self._engine.next_cas())
                self._count_extra("evicted_active")  # memcached's name for a spared item
                continue
            self._evict_item(batch, entry, key, item, size, dead)
        batch.commit()
        self._report_evictions(now)
        if control.target > 0 and walk.more:
            return True
        if self._end_round():
            self.jobs.request(Compaction(AGE_CF, None, self._age_cursor))
        return False

    def _evict_item(
        self, batch: IndexBatch, entry: bytes, key: bytes, item: Item, size: int, dead: bool
    ) -> None:
        self._delete_item(batch, key, item, size)
        if entry != idx.age_key(item.cas, key):  # a requeued entry: not where the item's is
            batch.delete_entry(entry, AGE_CF)
        self._round_evicted += 1
        self._control.target -= size + 2 * ROCKSDB_ENTRY_BYTES + len(entry)
        if dead:
            self.counters.expired_reaped += 1
        else:
            self.counters.evictions += 1
            if not item.bits & FETCHED:
                self._count_extra("evicted_unfetched")
            if self.on_evict is not None:
                self._evicted.append((key, item))

    def _report_evictions(self, now: int) -> None:
        """Tell ``on_evict`` (``watch``) of the live items the committed batch evicted."""
        if self.on_evict is not None:
            for key, item in self._evicted:
                self.on_evict(key, item, now)
        self._evicted.clear()

    def _end_round(self) -> bool:
        """Round over (target met or index exhausted): compact, then measure again. A round
        that found nothing to evict (the age index is still being backfilled) compacts
        nothing: the next measurement decides. True when it evicted something (the caller
        then asks for the compaction of the ``age`` entries it consumed)."""
        evicted, self._round_evicted = self._round_evicted, 0
        if not self._control.end_round(evicted):
            return False
        self.jobs.flush_if_mostly_dead()
        self.jobs.request(Compaction("default", None, None))  # covers every pending deletion
        self.jobs.forget_range()
        return True

    def _evict_s3fifo(self, deadline: float) -> bool:
        """One step of an S3-FIFO round (``queues``): each entry comes from the small
        queue's head while it holds its share (or the main queue is empty), else from the
        main queue's head."""
        control = self._control
        engine = self._engine
        limit = BATCH * (OVER_BOUND_SHARE if control.over_bound else 1)
        family = engine.db.family(AGE_CF)
        small = AgeQueue(family, self._age_cursor, idx.MAIN_START)
        main = AgeQueue(family, self._main_cursor, None)
        batch = engine.batch()
        spare = not control.over_bound
        now = engine.now()
        newest, resumed = engine.current_cas, engine.cas_resumed_at
        last_before = self._main.last_before(resumed)
        items = live_items(engine)
        self.ghost.resize(int(items * (1 - queues.SMALL_SHARE)))
        seen: set[bytes] = set()
        taken = 0
        while control.target > 0 and taken < limit:
            if taken % BUDGET_CHECK_EVERY == BUDGET_CHECK_EVERY - 1 and self._timer() > deadline:
                break
            head = small.entry
            if head is not None:
                position, key = idx.parse_age_key(head)
                written = queues.writes_since(position, newest, resumed, last_before)
                from_small = main.entry is None or queues.small_is_full(written, items)
            elif main.entry is not None:
                from_small = False
            else:
                break
            if from_small:
                entry, value = small.take()
                self._age_cursor = entry + b"\x00"
            else:
                entry, value = main.take()
                self._main_cursor = entry + b"\x00"
                position, key = idx.parse_age_key(entry)
            taken += 1
            cas = idx.age_version(position, value)
            item, size = engine.stored(key) if key not in seen else (None, 0)
            if item is None or item.cas != cas:
                batch.delete_entry(entry, AGE_CF)
                continue
            seen.add(key)
            dead = engine.is_dead(item, now)
            if spare and not dead and self._main.spared(batch, entry, value, key, item, from_small):
                continue
            self._evict_item(batch, entry, key, item, size, dead)
            if from_small and not dead:
                self.ghost.add(key)
        batch.commit()
        self._report_evictions(now)
        if control.target > 0 and (small.entry is not None or main.entry is not None):
            return True
        if self._end_round():
            # The consumed heads of both queues, as two jobs: one range would be the whole
            # small queue.
            self.jobs.request(Compaction(AGE_CF, None, self._age_cursor))
            if self._main_cursor > idx.MAIN_START:
                self.jobs.request(Compaction(AGE_CF, idx.MAIN_START, self._main_cursor), MAIN_JOB)
        return False

    # -- expiry ------------------------------------------------------------------------------

    def _expiry_due(self, now: int) -> bool:
        head = self._engine.db.walk(EXPIRY_CF, self._expiry_cursor, 0, 0.0, self._timer).head()
        if head is None:
            self.lag = 0
            return False
        due = idx.expiry_deadline_of(head)
        self.lag = max(now - due, 0)
        return due <= now

    def _reap_expired(self, now: int, deadline: float) -> bool:
        walk = self._engine.db.walk(EXPIRY_CF, self._expiry_cursor, BATCH, deadline, self._timer)
        head = walk.head()
        if head is not None:
            lag = now - idx.expiry_deadline_of(head)
            self.share = min(max(lag / FULL_SPEED_LAG, MIN_SHARE), 1.0)
        batch = self._engine.batch()
        seen: set[bytes] = set()
        for entry in walk:
            entry_deadline, cas, key = idx.parse_expiry_key(entry)
            if entry_deadline > now:
                break
            self._expiry_cursor = entry + b"\x00"
            item, size = self._engine.stored(key) if key not in seen else (None, 0)
            if item is not None and item.cas == cas and self._engine.is_dead(item, now):
                seen.add(key)
                self._delete_item(batch, key, item, size)
                self._count_dead(item, now)
            batch.delete_entry(entry, EXPIRY_CF)
        batch.commit()
        head = walk.head()
        return head is not None and idx.expiry_deadline_of(head) <= now

    # -- crawl (flush reclaim, index backfill) -------------------------------------------------

    def _crawl_due(self, now: int) -> bool:
        state = self._engine.flush_state
        oldest_live = state[0]
        flush_pending = state != self._flush_done and oldest_live != 0 and oldest_live <= now
        if flush_pending and self._crawl_flush != state:
            # A new flush covers more than the crawl in progress (if any): start over.
            self._crawl_flush = state
            self._crawl_cursor = b""
        if self._crawl_cursor is None and self._engine.index.needs_backfill():
            self._crawl_backfill = True
            self._crawl_cursor = b""
        return self._crawl_cursor is not None

    def _crawl(self, now: int, deadline: float) -> bool:
        assert self._crawl_cursor is not None
        walk = self._engine.db.walk("default", self._crawl_cursor, BATCH, deadline, self._timer)
        batch = self._engine.batch()
        for key in walk:
            raw = walk.value()
            self._crawl_cursor = key + b"\x00"
            try:
                item = codec.decode(raw)
            except CorruptValue:
                continue
            if self._engine.is_dead(item, now):
                self._delete_item(batch, key, item, len(key) + len(raw))
                self._count_dead(item, now)
            elif self._crawl_backfill:
                batch.index_item(key, item)
        batch.commit()
        if walk.more:
            return True
        self._finish_crawl()
        return False

    def _finish_crawl(self) -> None:
        if self._crawl_flush is not None:
            self._flush_done = self._crawl_flush
            self._engine.db.save_state(FLUSH_DONE_KEY, FLUSH_STATE.pack(*self._flush_done))
        if self._crawl_backfill:
            self._engine.index.mark_complete()
        self._crawl_cursor = None
        self._crawl_flush = None
        self._crawl_backfill = False

    # -- shared helpers ------------------------------------------------------------------------

    def _delete_item(self, batch: IndexBatch, key: bytes, item: Item, size: int) -> None:
        batch.delete_item(key, item)
        self.counters.reclaimed_bytes += size
        self.jobs.deleted(key, size)

    def _count_extra(self, name: str, amount: int = 1) -> None:
        extra = self.counters.extra
        extra[name] = extra.get(name, 0) + amount

    def _count_dead(self, item: Item, now: int) -> None:
        if item.deadline and item.deadline <= now:
            self.counters.expired_reaped += 1
        else:
            self.counters.flushed_reaped += 1

    # -- compaction ----------------------------------------------------------------------------

    def take_job(self) -> Job | None:
        """The next queued job (``JobQueue.take``); the caller runs it in a worker thread."""
        return self.jobs.take()

    def run_job(self, job: Job) -> int:
        """Run ``job`` (blocking: call from a worker thread); returns the bytes it freed
        (SST bytes for a compaction, WAL bytes for a flush)."""
        if isinstance(job, Flush):
            before = self._engine.db.unflushed()[2]
            self._engine.db.flush_memtables()
            return max(before - self._engine.db.unflushed()[2], 0)
        return self._engine.db.compact(job.family, job.begin, job.end)

    def job_done(self, job: Job, freed: int) -> None:
        """Record a finished job (on the trio thread)."""
        if isinstance(job, Flush):
            self._count_extra("reclaim_flushes")
            self._count_extra("reclaim_flushed_wal_bytes", freed)
            return
        self.counters.compactions += 1
        self.counters.compacted_bytes += freed
        if job.family == EXPIRY_CF:
            self._expiry_cursor = b""  # tombstones below it are gone; re-seek from the head
        elif job.family == AGE_CF:  # re-seek from the head of the ranges it compacted
            if job.begin is None:
                self._age_cursor = b""
            if job.end is None or job.end > idx.MAIN_START:
                self._main_cursor = idx.MAIN_START
        elif job.family == "default":
            self._control.compacted()
