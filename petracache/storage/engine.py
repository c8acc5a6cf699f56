"""The item store: memcached's storage semantics over RocksDB.

Shape (memcached's ``items.c``): every protocol's commands call the operations here, and
each operation reads the live item, lets ``storage.items`` decide what the command does to
it (the pure rules, shared by every protocol), and writes the result. So there is one store
path (``store``: set, add, replace, append, prepend, cas, ms in every mode, the binary
opcodes, with a fast branch for a plain ``set``), one delta path (``delta``: incr, decr,
ma, binary increment), one delete path (``delete``), one fetch path (``fetch``).

The meta protocol's flags act on the item a command hands back before it is written, as
memcached's proto_text.c does to the item its do_* functions return: ``store``, ``delta``
and ``fetch`` take that as a callable (``finish``/``change``), and ``delete`` takes
md's replacement (``keep``). The rules stay here and in ``storage.items``; the flags'
rendering stays in ``commands.meta``.

Invariants:

* Every method is synchronous and runs on the server's trio thread: a read-modify-write
  (add, cas, append, incr, touch...) has no await point inside it and is atomic with
  respect to every other command without a lock.
* Every write goes through ``storage.writer`` (memcached's do_item_link/do_item_unlink):
  the live-item count and bytes change only there and in a reclaim batch's commit.
* Dead items (expired, or invalidated by flush_all) are never returned; a read that finds one
  deletes it (lazy expiry).
* CAS uniques strictly increase, across restarts too (``storage.cas``); flush_all state is
  persisted (``storage.flush``).
* A warm-restart record (``storage.warm_restart``) is written at open, by ``heartbeat``, and
  at a clean ``close``; at open, a downtime past ``max_warm_downtime`` invalidates
  everything stored before (``flush_all(0)``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from petracache.config import StorageSettings
from petracache.rules import ttl
from petracache.rules.sizes import DEFAULT_ITEM_SIZE_MAX
from petracache.rules.verbs import StoreMode
from petracache.storage import codec, items
from petracache.storage.cas import CasSource
from petracache.storage.database import Database
from petracache.storage.errors import CorruptValue, StorageError
from petracache.storage.flush import FlushState
from petracache.storage.index import (
    IndexBatch,
    ItemIndex,
)
from petracache.storage.item_counts import KeyScan, restored_counts
from petracache.storage.items import DeleteResult, DeltaResult, Item, StoreResult
from petracache.storage.key_sizes import KeySizes, with_state
from petracache.storage.rocks import Family
from petracache.storage.statistics import EngineCounters
from petracache.storage.warm_restart import Heartbeat, LastRun, Verdict, judge, read_last_run
from petracache.storage.write_sequence import WriteSequence
from petracache.storage.writer import ItemWriter

__all__ = ["DeleteResult", "DeltaResult", "Engine", "EngineCounters", "StoreMode", "StoreResult"]

log = logging.getLogger(__name__)


class Engine:
    """memcached operations on a RocksDB database.

    Args:
        settings: the ``[storage]`` section.
        clock: returns the current Unix time; injected so tests control ttl.
        item_size_max: the item size limit (append/prepend may not grow past it).

    Raises:
        DatabaseLocked: another process has the database open.
        StorageError: RocksDB could not open the directory.
    """

    def __init__(
        self,
        settings: StorageSettings,
        clock: Callable[[], float] = time.time,
        item_size_max: int = DEFAULT_ITEM_SIZE_MAX,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self.item_size_max = item_size_max
        self.counters = EngineCounters()
        self.db = db = Database(settings)
        self._items: Family = db.items
        # Read before anything below writes: the previous run's record and whether anything
        # was written since it (its sequence number) decide if its counts are still exact.
        self.last_run: LastRun | None = read_last_run(db.meta)
        self._exact_count = settings.exact_item_count
        self.item_counts = restored_counts(self.last_run, db.sequence_number())
        if not self._exact_count:
            self.item_counts.exact = False  # and it stays so: no recount either
        self._heartbeat = Heartbeat(db.meta)
        self.sequence = WriteSequence(db.items)
        self.index = ItemIndex(
            db.items,
            db.meta,
            db.write_opts,
            track_expiry=settings.enable_ttl_compaction,
            track_age=settings.max_disk_bytes > 0 and settings.eviction != "none",
        )
        # Every key's size, so a set knows what it replaces without a read (exact counts).
        self.key_sizes = (
            KeySizes(db.property_int("rocksdb.estimate-num-keys"))
            if settings.exact_item_count
            else None
        )
        self.writer = writer = ItemWriter(
            db.items,
            db.write_opts,
            db.hint_opts,
            self.index,
            self.item_counts,
            self.sequence,
            self.counters,
            settings.hot_cache_size,
            self.key_sizes,
        )
        self.hot = writer.hot
        self._pending = writer.pending  # the writes not committed yet (group commit)
        self._cas = CasSource(db.meta)
        self.next_cas = self._cas.take  # bound once: it is on the write path
        # memcached's process_started: its clock cannot express an absolute time before this.
        self._flush = FlushState(db.meta, self.now() - ttl.EPOCH_SLACK)
        self.verdict: Verdict = judge(self.last_run, self.now(), settings.max_warm_downtime)
        if self.verdict.cold:
            self.flush_all(0)
            self.counters.extra["cold_starts"] = 1
        self._heartbeat.beat(self.now())
        self._closed = False
        # Set by the reclaimer when eviction is off (memcached -M) and the live data reached
        # where eviction would start: stores are then refused (commands.classic.store_item).
        self.out_of_space = False

    def now(self) -> int:
        """Current time in whole seconds (memcached's clock ticks once per second)."""
        return int(self._clock())

    @property
    def current_cas(self) -> int:
        """The last CAS unique handed out (``next_cas`` takes the next one)."""
        return self._cas.current

    @property
    def cas_resumed_at(self) -> int:
        """The CAS unique this run started after: a restart skips the rest of the last
        run's reserved block (``storage.cas``), so the uniques are not a count of writes
        across it."""
        return self._cas.resumed

    def is_dead(self, item: Item, now: int) -> bool:
        """Expired, or covered by a flush_all: never to be returned again."""
        return ttl.is_expired(item.deadline, now) or self._flush.covers(item, now)

    @property
    def flush_state(self) -> tuple[int, int]:
        """(oldest_live, oldest_cas) of the latest flush_all; (0, 0) if none."""
        return self._flush.oldest_live, self._flush.oldest_cas

    # -- reads -------------------------------------------------------------------------------

    def read(self, key: bytes, now: int) -> Item | None:
        """The live item under ``key`` as stored (no fetch recorded), or None.

        From the hot items when there (``storage.hot``), else from RocksDB (and then kept
        there). A dead or undecodable item reads as None; a dead one is deleted (lazy
        expiry).
        """
        hot = self.hot
        item = hot.get(key)
        if item is None:
            pending = self._pending
            if pending and key in pending:
                item = pending[key]  # written earlier in this pass (None: deleted)
                if item is None:
                    return None
            else:
                item = self._load(key)
                if item is None:
                    return None
                hot.put(key, item)
        if ttl.is_expired(item.deadline, now):
            self.counters.expired_lazy += 1
            self.writer.delete_dead(key, item)
            return None
        flush = self._flush
        if flush.oldest_live and flush.covers(item, now):
            self.counters.flushed_lazy += 1
            self.writer.delete_dead(key, item)
            return None
        return item

    def _load(self, key: bytes) -> Item | None:
        """The version RocksDB holds under ``key``; None if absent or undecodable."""
        try:
            raw = self._items.get(key)
        except Exception as exc:
            raise StorageError(f"read failed: {exc}") from exc
        if raw is None:
            return None
        try:
            item = codec.decode(raw)
        except CorruptValue:
            self.counters.corrupt_values += 1
            return None
        return self.with_state(key, item)

    def with_state(self, key: bytes, item: Item) -> Item:
        """``item``, stored under ``key``, as readers of RocksDB see it (``key_sizes``)."""
        return with_state(self.key_sizes, key, item)

    def defer_commits(self) -> None:
        """From now on writes wait in one batch until ``commit`` (the server commits once
        per reactor pass, before the pass's replies); until then each is committed at once."""
        self.writer.autocommit = False

    def write_directly(self) -> None:
        """Write each version at once until one succeeds (the storage is failing: every
        write is then refused on its own, not with a whole pass of them)."""
        self.writer.write_directly()

    def commit(self) -> None:
        """Write the pending writes (``storage.writer``: group commit): before any reply
        that depends on them is sent.

        Raises:
            StorageError: none of them was written.
        """
        self.writer.commit()

    def fetch(self, key: bytes, change: Callable[[Item, int], Item] | None = None) -> Item | None:
        """A get: the live item as read, or None.

        A hit records the fetch (``items.fetch_state``), or with ``change`` (mg's flags) the
        state ``change(item, now)`` returns: kept as a fetch record when only the fetch
        state differs (``items.only_fetch_differs``), else written as a new state of the
        same version.
        """
        now = self.now()
        item = self.read(key, now)
        if item is None:
            return None
        if change is None:
            if items.fetch_is_news(item, now):
                return self.writer.record_read(key, item, now)
            return item
        new = change(item, now)
        if not items.only_fetch_differs(new, item):
            self.writer.write(key, new, item, link=False)
        elif new != item:
            self.writer.record_fetch(key, new)
        return item

    # -- whole operations --------------------------------------------------------------------

    def store(
        self,
        mode: StoreMode,
        key: bytes,
        flags: int,
        exptime: int,
        data: bytes,
        compare: int = 0,
        *,
        cas: int = 0,
        binary_key: bool = False,
        invalidate: bool = False,
        vivify: int | None = None,
        finish: Callable[[Item], Item] | None = None,
    ) -> Item | StoreResult:
        """memcached's do_store_item for every store (``items.store`` says what each
        parameter does; ``exptime`` and ``vivify`` are client exptimes). ``finish`` (meta
        flags) turns the new version into the one written. Returns the version written, or
        why none was.

        A plain ``set`` takes a fast branch: it needs no old version, so none is decoded
        (its size, for the counts, comes from the hot entry it replaces or, when the bloom
        filters say the key may exist, from the stored value). An already-dead item (an
        absolute exptime in the past) is written as memcached links it: the next read
        finds it expired.
        """
        if mode is StoreMode.SET and finish is None and not (cas or binary_key):
            now = int(self._clock())
            deadline = ttl.deadline(exptime, now) if exptime else ttl.NEVER
            item = items.new_item(flags, deadline, now, self.next_cas(), data, now, 0)
            self.writer.set(key, item)
            return item
        now = self.now()
        old = self.read(key, now)
        new = items.store(
            mode,
            old,
            key,
            flags,
            ttl.deadline(exptime, now),
            data,
            now,
            self.item_size_max,
            self.next_cas,
            compare=compare,
            cas=cas,
            binary_key=binary_key,
            invalidate=invalidate,
            vivify=None if vivify is None else ttl.deadline(vivify, now),
        )
        if isinstance(new, Item):
            if finish is not None:
                new = finish(new)
            self.writer.write(key, new, old)
        return new

    def delta(
        self,
        key: bytes,
        amount: int,
        incr: bool,
        *,
        compare: int = 0,
        cas: int = 0,
        finish: Callable[[Item], Item] | None = None,
    ) -> Item | DeltaResult:
        """memcached's do_add_delta (``items.delta``): returns the version written, or why
        none was. ``compare``: a non-zero CAS the item must have; ``cas``: the new version's
        CAS (meta ``E``). ``finish`` (ma's flags) sees the new version; what it returns is
        written only when the number was rewritten in place, since memcached's flags act on
        the item do_add_delta hands back, which is the stored one only then.
        """
        now = self.now()
        item = self.read(key, now)
        if item is None:
            return DeltaResult.NOT_FOUND
        new = items.delta(item, amount, incr, now, self.next_cas, compare=compare, cas=cas)
        if isinstance(new, Item):
            if finish is not None:
                finished = finish(new)
                if len(new.data) == len(item.data):
                    new = finished
            self.writer.write(key, new, item)
        return new

    def touch(self, key: bytes, exptime: int) -> Item | None:
        """touch/gat: give the live item a new TTL (``items.touched``); returns it as it was."""
        now = self.now()
        item = self.read(key, now)
        if item is not None:
            self.writer.write(key, items.touched(item, ttl.deadline(exptime, now), now), item)
        return item

    def delete(
        self,
        key: bytes,
        compare: int | None = None,
        keep: Callable[[Item, int], Item] | None = None,
    ) -> Item | DeleteResult:
        """Delete the live item under ``key``; returns it as it was, or why nothing was
        deleted. ``compare``: a CAS the item must have (None compares nothing; md's ``C0``
        compares, and fails). ``keep`` (md's ``I`` and ``x``): instead of unlinking the
        item, replace it with ``keep(item, now)``, a new state of it."""
        now = self.now()
        item = self.read(key, now)
        if item is None:
            return DeleteResult.NOT_FOUND
        if compare is not None and compare != item.cas:
            return DeleteResult.EXISTS
        if keep is None:
            self.writer.delete(key, item)
        else:
            self.writer.write(key, keep(item, now), item, link=False)
        return item

    def flush_all(self, delay: int) -> None:
        """Invalidate every item stored before now, or before ``delay`` (``FlushState``)."""
        self._flush.flush_all(delay, self.now(), self.next_cas)

    # -- for the reclaimer -------------------------------------------------------------------

    def stored(self, key: bytes) -> tuple[Item | None, int]:
        """The stored version under ``key``, dead or alive (None if absent or undecodable),
        and its stored size, with the fetch state RocksDB lacks (a dirty hot entry's, else
        ``with_state``'s): the reclaimer's second chance needs it."""
        newer = self.hot.newer(key)
        if newer is not None:
            return newer, codec.item_stored_size(key, newer)
        try:
            raw = self._items.get(key)
        except Exception as exc:
            raise StorageError(f"read failed: {exc}") from exc
        if raw is None:
            return None, 0
        try:
            item = codec.decode(raw)
        except CorruptValue:
            return None, 0
        return self.with_state(key, item), len(key) + len(raw)

    def batch(self) -> IndexBatch:
        """Item deletions and index changes, applied atomically by the batch's commit, which
        unlinks what it deleted and drops it from the hot items."""
        return self.index.batch(self.item_counts, self.hot, self.key_sizes)

    # -- lifecycle ---------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Record that the server is alive now (``storage.warm_restart``; called periodically)."""
        self._heartbeat.beat(self.now())

    def scan_keys(self) -> KeyScan | None:
        """The start-up walk of every key to run in steps (a recount when the counts are not
        exact, and the key sizes' fill), or None when there is nothing to do."""
        sizes = self.key_sizes
        if sizes is None or (sizes.complete and self.item_counts.exact):
            return None
        return KeyScan(self.db.items, self.item_counts, sizes)

    def close(self) -> None:
        """Write the fetch records and the clean-stop record, flush and close. Idempotent.

        Raises:
            StorageError: the flush or the close failed (a full disk, say). The database is
                closed anyway; with a WAL, the next start replays what was not flushed.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self.writer.commit()  # nothing is pending between requests; this is a safeguard
        except StorageError as exc:
            log.warning("closing: the last pending writes failed: %s", exc)
        self.writer.write_hints()
        self._record_stop()
        self.db.close()

    def _record_stop(self) -> None:
        """The clean-stop record, best effort: if it cannot be written (a full disk), the
        next start measures the downtime from the last heartbeat, which is longer (the safe
        direction), and recounts."""
        counts = self.item_counts
        try:
            if counts.exact:  # else the figures are changes since an unfinished recount
                sequence = self.db.sequence_number() + 1  # this record's own
                self._heartbeat.stopped(self.now(), counts.items, counts.bytes, sequence)
            else:
                self._heartbeat.stopped(self.now(), 0, 0, 0)
        except StorageError as exc:
            log.warning("could not record the clean stop: %s", exc)
