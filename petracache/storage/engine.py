"""The item store on RocksDB: memcached's storage semantics over a persistent key-value store.

Invariants:

* RocksDB is reached through ``storage.rocks`` (the only module importing ``rocksdict``).
* What a command does to an item is decided by ``storage.items`` (pure transitions shared
  by classic and meta commands); the engine reads the live item, applies a transition and
  writes the result. Its API, by kind:

  - reads: ``read`` (the live item, as stored) and ``fetch`` (a read that records the
    fetch, as a ``get`` does);
  - writes: ``write`` (one version, exactly as given), ``set`` (a store of fields, the
    hot path's ``set``: no ``Item``, and no read unless the bloom filters say the key may
    exist, for the exact tally), ``record_fetch`` (a fetch-state
    hint) and ``remove``;
  - whole operations: ``store``, ``delta``, ``touch``, ``flush_all``;
  - the reclaimer's seam: ``stored``, ``walk``, ``batch``, ``disk_usage``, ``compact``,
    the index state and ``load_state``/``save_state``.
* Every method is synchronous and runs on the server's trio thread. A read-modify-write
  (add, cas, append, incr, touch...) therefore has no await point inside it and is atomic
  with respect to every other command without any lock.
* Dead items (expired, or invalidated by flush_all) are never returned; a read that finds one
  deletes it (lazy expiry).
* CAS uniques strictly increase, across restarts too (``storage.state.CasSource``).
* flush_all state is persisted (``storage.state.FlushState``).
* ``tally`` (``storage.tally``) is the exact item count and bytes: every write and delete
  here, and every committed reclaim batch, moves it by what it changed.
* A liveness record (``storage.liveness``) is written at open, by ``heartbeat``, and at a
  clean ``close``; at open, a downtime past ``max_warm_downtime`` invalidates everything
  stored before (``flush_all(0)``).

Column families: ``default`` holds items (key = raw memcached key, value = ``codec`` format);
``meta`` holds the engine's own state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from petracache.config import StorageSettings
from petracache.rules import ttl
from petracache.rules.sizes import DEFAULT_ITEM_SIZE_MAX
from petracache.rules.verbs import StoreMode
from petracache.storage import codec, items, rocks
from petracache.storage.codec import Item
from petracache.storage.commit import CommitLog
from petracache.storage.errors import CorruptValue, StorageError
from petracache.storage.hot import HotItems
from petracache.storage.index import ItemIndex
from petracache.storage.items import DeltaResult, StoreResult
from petracache.storage.liveness import Heartbeat, LastRun, Verdict, judge, read_last_run
from petracache.storage.rocks import AGE_CF, EXPIRY_CF, META_CF
from petracache.storage.seam import EngineSeam
from petracache.storage.state import CasSource, EngineCounters, FlushState
from petracache.storage.tally import ItemTally

__all__ = ["DeltaResult", "Engine", "EngineCounters", "StoreMode", "StoreResult"]

log = logging.getLogger(__name__)


class Engine(EngineSeam):
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
        self._settings = settings
        self._clock = clock
        self._item_size_max = item_size_max
        self.counters = EngineCounters()
        self._db = rocks.open_db(settings)
        self._meta = self._db.get_column_family(META_CF)
        # Read before anything below writes: the previous run's record and whether anything
        # was written since it (its sequence number) decide if its tally is still exact.
        self.last_run: LastRun | None = read_last_run(self._meta)
        self._exact_count = settings.exact_item_count
        self.tally = _restored_tally(self.last_run, rocks.sequence_number(self._db))
        if not self._exact_count:
            self.tally.exact = False  # and it stays so: no recount either
        self._heartbeat = Heartbeat(self._meta)
        # fsync mode writes un-synced too: group commit (``commit``) syncs the WAL for many
        # writes at once before their replies are released.
        write_opts = rocks.write_options(wal=settings.durability != "none")
        self._db.set_write_options(write_opts)
        self.commit = CommitLog(self._db)
        # Fetch records (``_write_hint``) skip the WAL: they are hints, and a crash that
        # loses one leaves the previous, WAL-logged version with the same data in place.
        self._hint_opts = rocks.write_options(wal=False)
        self._index = ItemIndex(
            self._db,
            self._meta,
            write_opts,
            track_expiry=settings.enable_ttl_compaction,
            track_age=settings.max_disk_bytes > 0,
        )
        self._families: dict[str, Any] = {
            "default": self._db,
            EXPIRY_CF: self._db.get_column_family(EXPIRY_CF),
            AGE_CF: self._db.get_column_family(AGE_CF),
            META_CF: self._meta,
        }
        # Recently used items in memory, in front of RocksDB (write-through: storage.hot).
        # Stores one fetch record, for ``_write_hint`` and as the hot items evict a dirty
        # entry. Not a bound method: the engine must not be in a reference cycle (its
        # RocksDB handles, and the database's lock, go when the last reference does).
        self._store_hint = partial(
            _store_hint, self._db, self._hint_opts, self.commit, self.counters
        )
        self.hot = HotItems(settings.hot_cache_size, self._store_hint)
        self._cas = CasSource(self._meta)
        # Bound once: ``next_cas`` is on the write path, so no wrapper method.
        self.next_cas = self._cas.take
        # memcached's process_started: its clock cannot express an absolute time before this.
        self._flush = FlushState(self._meta, self.now() - ttl.EPOCH_SLACK)
        self.verdict: Verdict = judge(self.last_run, self.now(), settings.max_warm_downtime)
        if self.verdict.cold:
            self.flush_all(0)
            self.counters.extra["cold_starts"] = 1
        self._heartbeat.beat(self.now())
        self._closed = False

    # -- clock and CAS ---------------------------------------------------------------------

    def now(self) -> int:
        """Current time in whole seconds (memcached's clock ticks once per second)."""
        return int(self._clock())

    @property
    def current_cas(self) -> int:
        """The last CAS unique handed out (``next_cas`` takes the next one)."""
        return self._cas.current

    @property
    def item_size_max(self) -> int:
        return self._item_size_max

    # -- liveness ----------------------------------------------------------------------------

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
            try:
                raw = self._db.get(key)
            except Exception as exc:
                raise StorageError(f"read failed: {exc}") from exc
            if raw is None:
                return None
            try:
                item = codec.decode(raw)
            except CorruptValue:
                self.counters.corrupt_values += 1
                return None
            hot.put(key, item)
        if item.deadline and item.deadline <= now:
            self.counters.expired_lazy += 1
            self._remove_dead(key, item)
            return None
        flush = self._flush
        if flush.oldest_live and flush.covers(item, now):
            self.counters.flushed_lazy += 1
            self._remove_dead(key, item)
            return None
        return item

    def fetch(self, key: bytes) -> Item | None:
        """A ``get``: the live item, or None; a hit records the fetch (``items.fetched``)."""
        now = self.now()
        item = self.read(key, now)
        if item is not None and items.fetch_is_news(item, now):
            seen = items.fetched(item, now)
            return seen if self._write_hint(key, seen) else item
        return item

    # -- writes ------------------------------------------------------------------------------

    def write(self, key: bytes, item: Item, old: Item | None, *, link: bool = True) -> None:
        """Write ``item`` under ``key``; ``old`` is the version it replaces, if read.

        ``link`` (memcached's do_item_link): a new version, counted in ``total_items``.
        ``link=False``: the same version with changed state (meta flags). Either way it is
        written exactly as given, even when already dead: memcached links an item whose
        absolute exptime is in the past too, and the next get counts it in ``get_expired``.
        """
        value = codec.encode_item(item)
        self._put(key, value, item, old)
        tally = self.tally
        if old is None:
            tally.items += 1
            tally.bytes += len(key) + len(value)
        else:
            tally.bytes += len(value) - len(old.data) - codec.HEADER_SIZE
        if link:
            self.counters.total_items += 1

    def set(self, key: bytes, flags: int, exptime: int, data: bytes) -> int:
        """memcached's ``set``: a store without decoding the old version (no ``Item``).

        An already-dead item (an absolute exptime in the past) is stored as memcached links
        it: the next read finds it expired (``get_expired``) and the reclaimer reaps it.
        Returns the version's CAS unique (the binary protocol's reply carries it).
        """
        now = int(self._clock())
        deadline = ttl.deadline(exptime, now) if exptime else ttl.NEVER
        cas = self.next_cas()
        item = codec.new_item(flags, deadline, now, cas, data, now, 0)
        value = codec.encode_item(item)
        if not self._exact_count:  # storage.exact_item_count = false: a blind write
            self._put(key, value, item, None)
            self.counters.total_items += 1
            return cas
        # Whether the key is new, and the old size, for the exact tally (``storage.tally``).
        # The hot items are updated first: the lookup that replaces their entry also says
        # the old size (a separate peek cost a set about 2 us, docs/benchmarks.md). Only a
        # key they do not hold is read, and the bloom filters answer "absent" for most new
        # keys (a set after a miss) without reading a block.
        hot = self.hot
        cached = hot.put(key, item)
        try:
            if cached is not None:
                old_size = codec.item_stored_size(key, cached)
            else:
                try:
                    raw = self._db.get(key) if self._db.key_may_exist(key) else None
                except Exception as exc:
                    raise StorageError(f"read failed: {exc}") from exc
                old_size = 0 if raw is None else codec.stored_size(key, raw)
            self._store(key, value, item, None)
        except BaseException:
            hot.drop(key)  # what RocksDB holds now is not known here
            raise
        self.commit.written += 1
        tally = self.tally
        if old_size:
            tally.bytes += len(key) + len(value) - old_size
        else:
            tally.items += 1
            tally.bytes += len(key) + len(value)
        self.counters.total_items += 1
        return cas

    def _put(self, key: bytes, value: bytes, item: Item, old: Item | None) -> None:
        """Store ``value`` (``item`` encoded); ``old`` (the version it replaces, if read)
        unindexes it. The hot items follow (``storage.hot``)."""
        try:
            self._store(key, value, item, old)
        except BaseException:
            self.hot.drop(key)  # what RocksDB holds now is not known here
            raise
        self.hot.put(key, item)
        self.commit.written += 1

    def _store(self, key: bytes, value: bytes, item: Item, old: Item | None) -> None:
        """Write ``value`` to RocksDB, through the expiry index when ``item`` needs it."""
        if self._index.wants(item.deadline, old):
            self._index.put(key, value, item.deadline, item.cas, old)
        else:
            try:
                self._db.put(key, value)
            except Exception as exc:
                raise StorageError(f"write failed: {exc}") from exc

    def remove(self, key: bytes, old: Item | None = None) -> None:
        """Delete ``key``; ``old`` (the stored version, if read) also drops its index entries.

        Without ``old`` the key is looked up first (for the tally); an absent key is left
        alone (no tombstone).
        """
        if old is None:
            old = self.hot.peek(key)
        if old is not None:
            size = codec.item_stored_size(key, old)
        else:
            try:
                raw = self._db.get(key)
            except Exception as exc:
                raise StorageError(f"read failed: {exc}") from exc
            if raw is None:
                return
            size = codec.stored_size(key, raw)
        self.hot.drop(key)
        if old is not None and self._index.wants(0, old):
            self._index.delete(key, old)
        else:
            try:
                self._db.delete(key)
            except Exception as exc:
                raise StorageError(f"delete failed: {exc}") from exc
        self.tally.removed(size)
        self.commit.written += 1

    def record_fetch(self, key: bytes, item: Item) -> None:
        """Write ``item``, which differs from the stored version only in fetch state
        (``items.only_fetch_differs``), as a side write of a read: best effort, and no reply
        waits for its fsync."""
        self._write_hint(key, item)

    def _write_hint(self, key: bytes, item: Item) -> bool:
        """Store a fetch record: ``item`` differs from the stored version only in its fetch
        state (fetched bit, access time), never in data, CAS or deadline.

        An item in the hot items keeps the record there, dirty, until it leaves them
        (``storage.hot``: RocksDB gets it then, or at close, or never if a write comes
        first). Otherwise it is written now: its index entries are unchanged (a plain put
        suffices), and the write skips the WAL, a memtable insert rather than a log append
        on the read path. Losing it in a crash only forgets that the item was fetched;
        reads return the newest version either way, and any later store is WAL-logged as
        usual.

        A side write of a read, best effort and untracked as ``_remove_dead`` says, done
        inline because a first read of every item makes one (the read path's most frequent
        write): True if recorded.
        """
        if self.hot.hint(key, item):
            return True
        if not self._store_hint(key, codec.encode_item(item)):
            self.hot.drop(key)
            return False
        self.hot.put(key, item)
        return True

    def write_hints(self) -> None:
        """Store every fetch record the hot items still keep (at close: a clean stop keeps
        them). One unlogged batch; best effort, like the records."""
        hints = self.hot.take_hints()
        if not hints:
            return
        batch = rocks.new_batch()
        for key, value in hints:
            batch.put(key, value)
        try:
            rocks.commit_batch(self._db, batch, self._hint_opts)
        except StorageError:
            _count_side_write_failure(self.counters)
            return
        self.commit.untracked += len(hints)

    def _remove_dead(self, key: bytes, item: Item) -> None:
        """Delete a dead item a read found (lazy expiry): a write a read makes on the side.

        Best effort, so reads keep working on a full disk: a failure is counted
        (``read_write_failures``), never raised. And not counted for group commit: losing
        it in a power cut changes nothing a client was told (a dead item stays dead), so the
        read's reply need not wait for an fsync. (A method, not a closure passed to a
        helper: compiled, a closure would cost every ``read`` an environment object.)
        """
        written = self.commit.written
        try:
            self.remove(key, item)
        except StorageError:
            _count_side_write_failure(self.counters)
        finally:
            self.commit.untrack_since(written)

    # -- whole operations (read, transition, write) ------------------------------------------

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
    ) -> Item | StoreResult:
        """Any store (``items.store`` says what each parameter does; ``exptime`` and
        ``vivify`` are client exptimes). Returns the version written, or why none was."""
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
            self._item_size_max,
            self.next_cas,
            compare=compare,
            cas=cas,
            binary_key=binary_key,
            invalidate=invalidate,
            vivify=None if vivify is None else ttl.deadline(vivify, now),
        )
        if type(new) is Item:
            self.write(key, new, old)
        return new

    def delta(self, key: bytes, amount: int, incr: bool, compare: int = 0) -> Item | DeltaResult:
        """incr/decr (``items.delta``); returns the version written, or why none was.

        ``compare``: a non-zero CAS the item must have (the binary protocol's header CAS).
        """
        now = self.now()
        item = self.read(key, now)
        if item is None:
            return DeltaResult.NOT_FOUND
        # memcached's do_add_delta: an empty value is non-numeric before any CAS check.
        if compare and compare != item.cas and item.data:
            return DeltaResult.EXISTS
        new = items.delta(item, amount, incr, now, self.next_cas)
        if type(new) is Item:
            self.write(key, new, item)
        return new

    def touch(self, key: bytes, exptime: int) -> Item | None:
        """touch/gat: give the live item a new TTL (``items.touched``); returns it as it was."""
        now = self.now()
        item = self.read(key, now)
        if item is not None:
            self.write(key, items.touched(item, ttl.deadline(exptime, now), now), item)
        return item

    def flush_all(self, delay: int) -> None:
        """Invalidate every item stored before now, or before ``delay`` (``FlushState``)."""
        self._flush.flush_all(delay, self.now(), self.next_cas)

    # -- lifecycle (the reclaimer's and introspection's operations: storage.seam) ------

    @property
    def settings(self) -> StorageSettings:
        return self._settings

    def raw_db(self) -> Any:
        """The underlying ``rocksdict.Rdict`` (for tests)."""
        return self._db

    def family(self, name: str) -> Any:
        """A column family by name (for tests)."""
        return self._families[name]

    def flush_memtables(self) -> None:
        """Write every family's memtables to SST files, releasing the WAL files they held
        (blocking; call from a worker thread)."""
        rocks.flush_all(self._db)

    def _record_stop(self) -> None:
        """The clean-stop record (``storage.liveness``), best effort: if it cannot be written
        (a full disk), the next start measures the downtime from the last heartbeat, which
        is longer (the safe direction), and recounts; the flush that follows reports the
        failure."""
        tally = self.tally
        try:
            if tally.exact:  # else the figures are changes since an unfinished recount
                sequence = rocks.sequence_number(self._db) + 1  # this record's own
                self._heartbeat.stopped(self.now(), tally.items, tally.bytes, sequence)
            else:
                self._heartbeat.stopped(self.now(), 0, 0, 0)
        except StorageError as exc:
            log.warning("could not record the clean stop: %s", exc)

    def close(self) -> None:
        """Flush memtables and close the database cleanly. Idempotent.

        Raises:
            StorageError: the flush or the close failed (a full disk, say). The database is
                closed anyway; with a WAL, the next start replays what was not flushed.
        """
        if self._closed:
            return
        self._closed = True
        error: Exception | None = None
        self.write_hints()
        self._record_stop()
        try:
            self._db.flush(True)
            self._db.flush_wal(True)
        except Exception as exc:  # rocksdict raises bare Exception
            error = exc
        try:
            self._db.close()
        except Exception as exc:
            error = error or exc
        if error is not None:
            raise StorageError(f"closing the database: {error}") from error


def _store_hint(
    db: Any, opts: Any, commit: CommitLog, counters: EngineCounters, key: bytes, value: bytes
) -> bool:
    """Put a fetch record (``Engine._write_hint``) without the WAL: True if written. Best
    effort, like the record itself: a failure is counted (``read_write_failures``), never
    raised; and untracked, since no reply waits for its fsync."""
    try:
        db.put(key, value, opts)
    except Exception:  # rocksdict raises bare Exception
        _count_side_write_failure(counters)
        return False
    commit.untracked += 1
    return True


def _count_side_write_failure(counters: EngineCounters) -> None:
    extra = counters.extra
    extra["read_write_failures"] = extra.get("read_write_failures", 0) + 1


def _restored_tally(last: LastRun | None, sequence: int) -> ItemTally:
    """The previous run's tally if nothing was written since its clean stop, else an
    inexact one (``Engine.recount`` rebuilds it)."""
    if last is not None and last.stopped_cleanly and last.sequence == sequence:
        return ItemTally(last.items, last.size)
    if sequence == 0:
        return ItemTally()  # a new database: nothing to count
    return ItemTally(exact=False)
