"""The item store on RocksDB: memcached's storage semantics over a persistent key-value store.

Invariants:

* This is the only module that imports ``rocksdict``.
* Every method is synchronous and runs on the server's trio thread. A read-modify-write
  (add, cas, append, incr, touch...) therefore has no await point inside it and is atomic
  with respect to every other command without any lock.
* Dead items (expired, or invalidated by flush_all) are never returned; a read that finds one
  deletes it (lazy expiry).
* CAS uniques strictly increase, across restarts too: the engine persists a high-water mark
  ``CAS_RESERVATION`` ids ahead of use (synced to the WAL before any id from the block is
  handed out), and resumes from it after a restart or a crash.
* flush_all state (``oldest_live``, ``oldest_cas``, memcached's names) is persisted, so a
  flush keeps invalidating the items it covered after a restart.

Column families: ``default`` holds items (key = raw memcached key, value = ``codec`` format);
``meta`` holds the engine's own state.
"""

from __future__ import annotations

import enum
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import rocksdict

from petracache.config import StorageSettings
from petracache.rules import ttl
from petracache.rules.numbers import U64_MAX, parse_stored_counter
from petracache.rules.sizes import DEFAULT_ITEM_SIZE_MAX, item_size_ok
from petracache.rules.verbs import StoreMode
from petracache.storage import codec
from petracache.storage.codec import Item
from petracache.storage.commit import CommitLog
from petracache.storage.errors import CorruptValue, DatabaseLocked, StorageError
from petracache.storage.index import (
    AGE_CF,
    EXPIRY_CF,
    ItemIndex,
    collect_deletions,
    index_cf_options,
)

META_CF = "meta"
CAS_KEY = b"cas_high_water"
FLUSH_KEY = b"flush_state"
CAS_RESERVATION = 1 << 20  # ids handed out per synced high-water write
META_WRITE_BUFFER = 64 * 1024  # the smallest write_buffer_size StorageSettings accepts
# RocksDB's message when the LOCK file is held: "IO error: While lock file: <path>/LOCK: ..."
_LOCK_MESSAGE = "while lock file"
_U64 = struct.Struct("<Q")
_FLUSH = struct.Struct("<qQ")  # oldest_live (Unix s, 0 = no flush), oldest_cas


class StoreResult(enum.Enum):
    STORED = "stored"
    NOT_STORED = "not_stored"
    EXISTS = "exists"
    NOT_FOUND = "not_found"


class ArithResult(enum.Enum):
    NOT_FOUND = "not_found"
    NON_NUMERIC = "non_numeric"


@dataclass(slots=True)
class EngineCounters:
    """Plain integer counters, read by stats and /metrics on demand."""

    expired_lazy: int = 0
    # Background reclaim (storage.reaper): items deleted because they expired, because a
    # flush_all covered them, or to stay under max_disk_bytes; their key+value bytes; and the
    # SST bytes that the reclaimer's compactions gave back to the filesystem.
    expired_reaped: int = 0
    flushed_reaped: int = 0
    evictions: int = 0
    reclaimed_bytes: int = 0
    compactions: int = 0
    compacted_bytes: int = 0
    flushed_lazy: int = 0
    corrupt_values: int = 0
    total_items: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def _options(settings: StorageSettings) -> rocksdict.Options:
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    opts.set_write_buffer_size(settings.write_buffer_size)
    opts.set_max_write_buffer_number(settings.max_write_buffer_number)
    opts.set_target_file_size_base(settings.target_file_size_base)
    opts.set_max_background_jobs(settings.max_background_jobs)
    opts.set_compression_type(
        rocksdict.DBCompressionType.lz4()
        if settings.enable_compression
        else rocksdict.DBCompressionType.none()
    )
    table = rocksdict.BlockBasedOptions()
    if settings.block_cache_size:
        table.set_block_cache(rocksdict.Cache(settings.block_cache_size))
    else:
        table.disable_cache()
    table.set_bloom_filter(10, False)
    # RocksDB refuses cache_index_and_filter_blocks without a block cache.
    table.set_cache_index_and_filter_blocks(bool(settings.block_cache_size))
    opts.set_block_based_table_factory(table)
    collect_deletions(opts)
    # A WAL file is deleted only once every family's data in it is flushed; the small
    # families (meta, expiry, age) would otherwise pin old WALs and the disk would grow with
    # every write. Past this total, RocksDB flushes the families holding the oldest WAL.
    opts.set_max_total_wal_size(settings.write_buffer_size * settings.max_write_buffer_number)
    if settings.max_disk_bytes:
        _bounded_layout(opts, settings)
    return opts


def _bounded_layout(opts: rocksdict.Options, settings: StorageSettings) -> None:
    """Keep every compaction small next to ``max_disk_bytes``, so its transient fits the bound.

    A compaction writes its outputs before it deletes its inputs, so the disk briefly holds
    both. With RocksDB's defaults a database smaller than ``max_bytes_for_level_base``
    (256 MiB) has a single sorted level, and every L0 flush is merged with all of it: each
    compaction rewrites the whole database and doubles it on disk for a moment. Here the
    base level is an eighth of the bound and levels grow 4x, so the data spreads over a few
    levels; L0 is compacted after two flushes; files, and the compactions RocksDB picks, are
    capped at a small share of the bound; and the WAL is released after about one memtable
    (the reclaimer counts WAL bytes in its usage measure).
    """
    bound = settings.max_disk_bytes
    opts.set_max_bytes_for_level_base(max(bound // 8, settings.write_buffer_size))
    opts.set_max_bytes_for_level_multiplier(4.0)
    opts.set_level_zero_file_num_compaction_trigger(2)
    target = min(settings.target_file_size_base, max(bound // 32, 1 << 20))
    opts.set_target_file_size_base(target)
    opts.set_max_compaction_bytes(max(bound // 8, 4 * target))
    opts.set_max_total_wal_size(settings.write_buffer_size)


def _meta_options() -> rocksdict.Options:
    """The ``meta`` family holds two keys; a small write buffer matters for disk-full recovery.

    After ENOSPC, RocksDB's SstFileManager clears the error by itself (polling every 5 s)
    once the free space exceeds the largest ``write_buffer_size`` of any column family; the
    64 MiB default here would otherwise set that bar regardless of ``[storage]``.
    """
    opts = rocksdict.Options(raw_mode=True)
    opts.set_write_buffer_size(META_WRITE_BUFFER)
    return opts


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
        self._settings = settings
        self._clock = clock
        self._item_size_max = item_size_max
        self.counters = EngineCounters()
        path = settings.db_path
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create db_path {path!r}: {exc.strerror}") from exc
        opts = _options(settings)
        try:
            self._db = rocksdict.Rdict(
                path,
                opts,
                column_families={
                    META_CF: _meta_options(),
                    EXPIRY_CF: index_cf_options(settings.write_buffer_size),
                    AGE_CF: index_cf_options(settings.write_buffer_size),
                },
            )
        except Exception as exc:  # rocksdict raises bare Exception
            text = str(exc)
            if _LOCK_MESSAGE in text.lower():
                raise DatabaseLocked(
                    f"db_path {path!r} is locked by another process (is petracache running?)"
                ) from exc
            raise StorageError(f"cannot open db_path {path!r}: {text}") from exc
        self._meta = self._db.get_column_family(META_CF)
        self._write_opts = rocksdict.WriteOptions()
        # A settable attribute at runtime; rocksdict's stub wrongly declares a method.
        self._write_opts.disable_wal = settings.durability == "none"  # type: ignore[method-assign,assignment]
        # fsync mode writes un-synced too: group commit (``commit``) syncs the WAL for many
        # writes at once before their replies are released.
        self._write_opts.sync = False
        self.commit = CommitLog(self._db)
        self._synced = rocksdict.WriteOptions()
        self._synced.sync = True
        # Fetch records (see ``_write_hint``) skip the WAL: they are hints, and a crash that
        # loses one leaves the previous, WAL-logged version with the same data in place.
        self._hint_opts = rocksdict.WriteOptions()
        self._hint_opts.disable_wal = True  # type: ignore[method-assign,assignment]
        self._db.set_write_options(self._write_opts)
        self.index = ItemIndex(
            self._db,
            self._meta,
            self._write_opts,
            track_expiry=settings.enable_ttl_compaction,
            track_age=settings.max_disk_bytes > 0,
        )
        raw = self._meta.get(CAS_KEY)
        self._cas = _U64.unpack(raw)[0] if raw else 0
        self._cas_reserved = self._cas
        raw = self._meta.get(FLUSH_KEY)
        flush_state = _FLUSH.unpack(raw) if raw else (0, 0)
        self._oldest_live: int = flush_state[0]
        self._oldest_cas: int = flush_state[1]
        # memcached's process_started: its clock cannot express an absolute time before this.
        self._epoch = self.now() - ttl.EPOCH_SLACK
        self._closed = False

    # -- clock and CAS ---------------------------------------------------------------------

    def now(self) -> int:
        """Current time in whole seconds (memcached's clock ticks once per second)."""
        return int(self._clock())

    def next_cas(self) -> int:
        """Take the next CAS unique, persisting a new reservation block when needed."""
        self._cas += 1
        if self._cas > self._cas_reserved:
            reserved = self._cas + CAS_RESERVATION
            try:
                self._put_meta(CAS_KEY, _U64.pack(reserved))
            except StorageError:
                self._cas -= 1  # never hand out an id the database has not reserved
                raise
            self._cas_reserved = reserved
        return self._cas

    @property
    def current_cas(self) -> int:
        return self._cas

    # -- low-level access --------------------------------------------------------------------

    def _put_meta(self, key: bytes, value: bytes) -> None:
        try:
            self._meta.put(key, value, self._synced)
        except Exception as exc:
            raise StorageError(f"metadata write failed: {exc}") from exc

    def _write(
        self, key: bytes, item_bytes: bytes, deadline: int, cas: int, old: Item | None
    ) -> None:
        """Store an item version; ``old`` (the version it replaces, if read) unindexes it."""
        if self.index.wants(deadline, old):
            self.index.put(key, item_bytes, deadline, cas, old)
        else:
            try:
                self._db.put(key, item_bytes)
            except Exception as exc:
                raise StorageError(f"write failed: {exc}") from exc
        self.commit.written += 1

    def _remove(self, key: bytes, old: Item | None = None) -> None:
        """Delete ``key``; ``old`` (the stored version, if read) also drops its index entries."""
        if old is not None and self.index.wants(0, old):
            self.index.delete(key, old)
        else:
            try:
                self._db.delete(key)
            except Exception as exc:
                raise StorageError(f"delete failed: {exc}") from exc
        self.commit.written += 1

    def _is_flushed(self, item: Item, now: int) -> bool:
        oldest_live = self._oldest_live
        if oldest_live == 0 or oldest_live > now:
            return False
        return item.stored_at <= oldest_live or (
            self._oldest_cas != 0 and item.cas < self._oldest_cas
        )

    def is_dead(self, item: Item, now: int) -> bool:
        """Expired, or covered by a flush_all: never to be returned again."""
        return ttl.is_expired(item.deadline, now) or (
            bool(self._oldest_live) and self._is_flushed(item, now)
        )

    @property
    def flush_state(self) -> tuple[int, int]:
        """(oldest_live, oldest_cas) of the latest flush_all; (0, 0) if none."""
        return self._oldest_live, self._oldest_cas

    def _lookup(self, key: bytes, now: int) -> Item | None:
        """The live item under ``key``, deleting it if it is dead or undecodable."""
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
        if item.deadline and item.deadline <= now:
            self.counters.expired_lazy += 1
            self._remove_dead(key, item)
            return None
        if self._oldest_live and self._is_flushed(item, now):
            self.counters.flushed_lazy += 1
            self._remove_dead(key, item)
            return None
        return item

    def _remove_dead(self, key: bytes, item: Item) -> None:
        """Delete a dead item found by a read (the reaper or a later read retries a failure)."""
        self._side_write(lambda: self._remove(key, item))

    def _side_write(self, write: Callable[[], None]) -> bool:
        """Run a write that a read makes on the side (lazy delete, fetch record).

        Best effort, so reads keep working on a full disk: a failure is counted
        (``read_write_failures``), never raised. And not counted for group commit: losing
        it in a power cut changes nothing a client was told (a dead item stays dead, a fetch
        record is a hint), so the read's reply need not wait for an fsync.
        """
        written = self.commit.written
        try:
            write()
        except StorageError:
            extra = self.counters.extra
            extra["read_write_failures"] = extra.get("read_write_failures", 0) + 1
            return False
        finally:
            self.commit.untrack_since(written)
        return True

    def put(
        self,
        key: bytes,
        flags: int,
        deadline: int,
        data: bytes,
        now: int,
        *,
        cas: int = 0,
        old: Item | None = None,
        last_access: int | None = None,
        bits: int = 0,
    ) -> int:
        """Store a new version of ``key`` (a dead one is removed instead); returns its CAS
        unique (``cas`` 0: take the next one).

        ``old`` is the version being replaced when the caller read it (its index entries go).
        ``last_access`` (default: now) and ``bits`` are the meta protocol's per-item state.
        """
        if cas == 0:
            cas = self.next_cas()
        if deadline and deadline <= now:
            self._remove(key, old)
        else:
            value = codec.encode(flags, deadline, now, cas, data, last_access, bits)
            self._write(key, value, deadline, cas, old)
        self.counters.total_items += 1
        return cas

    # -- memcached operations ------------------------------------------------------------------

    def get(self, key: bytes) -> Item | None:
        """The live item, or None. A hit counts as a fetch (``codec.fetch_is_news``)."""
        now = self.now()
        item = self._lookup(key, now)
        if item is not None and codec.fetch_is_news(item, now):
            seen = codec.fetched(item, now)
            return seen if self._side_write(lambda: self._write_hint(key, seen)) else item
        return item

    def _write_hint(self, key: bytes, item: Item) -> None:
        """Store a fetch record: ``item`` differs from the stored version only in its fetch
        state (fetched bit, access time), never in data, CAS or deadline.

        So its index entries are unchanged (a plain put suffices), and the write skips the
        WAL: it costs a memtable insert, not a log append, on the read path. Losing it in a
        crash only forgets that the item was fetched. Reads return the newest version in the
        memtable either way, and any later store is WAL-logged as usual.
        """
        try:
            self._db.put(key, codec.encode_item(item), self._hint_opts)
        except Exception as exc:
            raise StorageError(f"write failed: {exc}") from exc
        self.commit.written += 1  # counted, then taken back by ``_side_write``

    def get_and_touch(self, key: bytes, exptime: int) -> Item | None:
        """gat: return the item as it was and give it a new TTL (its CAS is unchanged)."""
        now = self.now()
        item = self._lookup(key, now)
        if item is not None:
            deadline = ttl.deadline(exptime, now)
            seen = codec.fetched(item, now)
            self.put(
                key,
                item.flags,
                deadline,
                item.data,
                now,
                cas=item.cas,
                old=item,
                last_access=seen.last_access,
                bits=seen.bits,
            )
        return item

    def touch(self, key: bytes, exptime: int) -> bool:
        """Give a live item a new TTL; False if there is none."""
        return self.get_and_touch(key, exptime) is not None

    def store(
        self,
        mode: StoreMode,
        key: bytes,
        flags: int,
        exptime: int,
        data: bytes,
        cas_unique: int = 0,
    ) -> tuple[StoreResult, int]:
        """set/add/replace/append/prepend/cas. Returns the result and the new CAS (0 if none)."""
        now = self.now()
        deadline = ttl.deadline(exptime, now)
        if mode is StoreMode.SET:
            return StoreResult.STORED, self.put(key, flags, deadline, data, now)
        old = self._lookup(key, now)
        if mode is StoreMode.ADD:
            if old is not None:
                return StoreResult.NOT_STORED, 0
        elif mode is StoreMode.CAS:
            if old is None:
                return StoreResult.NOT_FOUND, 0
            if old.cas != cas_unique:
                return StoreResult.EXISTS, 0
        elif old is None:
            return StoreResult.NOT_STORED, 0
        elif mode is StoreMode.APPEND or mode is StoreMode.PREPEND:
            # memcached keeps the old flags and TTL; the new ones are parsed but ignored.
            data = old.data + data if mode is StoreMode.APPEND else data + old.data
            if not item_size_ok(len(key), old.flags, len(data), self._item_size_max):
                return StoreResult.NOT_STORED, 0
            flags, deadline = old.flags, old.deadline
        return StoreResult.STORED, self.put(key, flags, deadline, data, now, old=old)

    def delete(self, key: bytes) -> bool:
        """Remove a live item; False if there was none."""
        item = self._lookup(key, self.now())
        if item is None:
            return False
        self._remove(key, item)
        return True

    def remove(self, key: bytes) -> None:
        """Drop whatever is stored under ``key`` (a failed oversized set must not leave it)."""
        self._remove(key)

    # -- meta protocol primitives (petracache.commands.meta composes its commands from these) --

    @property
    def item_size_max(self) -> int:
        return self._item_size_max

    def lookup(self, key: bytes, now: int) -> Item | None:
        """The live item under ``key`` as stored (no fetch is recorded), or None."""
        return self._lookup(key, now)

    def rewrite(self, key: bytes, item: Item, old: Item) -> None:
        """Write ``item`` exactly as given over ``old`` (same key): a state change, not a store.

        Keeps ``stored_at``, so it does not count as a modification for delayed flush_all.
        """
        self._write(key, codec.encode_item(item), item.deadline, item.cas, old)

    def record_fetch(self, key: bytes, item: Item) -> None:
        """Write ``item``, which differs from ``old`` only in fetch state (fetched bit, access
        time), as a side write of a read: best effort, and no reply waits for its fsync."""
        self._side_write(lambda: self._write_hint(key, item))

    def delete_item(self, key: bytes, item: Item) -> None:
        """Remove ``key`` whose live version ``item`` the caller just looked up."""
        self._remove(key, item)

    def arithmetic(self, key: bytes, delta: int, incr: bool) -> int | ArithResult:
        """incr (wrapping at 2**64) or decr (stopping at 0); returns the new value.

        Like memcached, when the new number is not longer than the old value it is written
        in place, right-padded with spaces to the old length; flags and TTL are kept.
        """
        now = self.now()
        item = self._lookup(key, now)
        if item is None:
            return ArithResult.NOT_FOUND
        value = parse_stored_counter(item.data)
        if value is None:
            return ArithResult.NON_NUMERIC
        value = (value + delta) & U64_MAX if incr else max(value - delta, 0)
        digits = b"%d" % value
        if len(digits) < len(item.data):
            digits = digits.ljust(len(item.data))
        la, bits = codec.after_delta(item, digits, now)
        self.put(key, item.flags, item.deadline, digits, now, old=item, last_access=la, bits=bits)
        return value

    def flush_all(self, delay: int) -> None:
        """Invalidate every item stored before now (delay <= 0) or before the deadline.

        memcached: ``oldest_live = realtime(delay) - 1`` and, when that is not in the future,
        ``oldest_cas = get_cas_id()``; an item is flushed once ``oldest_live <= now`` if it was
        stored at or before ``oldest_live`` or has a CAS older than ``oldest_cas``.
        """
        now = self.now()
        new_oldest = ttl.deadline(delay, now) if delay > 0 else now
        if delay > ttl.REALTIME_MAXDELTA and delay <= self._epoch:
            # memcached's realtime() maps an absolute time before its start to 1, which makes
            # oldest_live 0: "no flush". Such a flush_all cancels earlier ones, quirk included.
            new_oldest = 1
        self._oldest_live = new_oldest - 1
        if self._oldest_live <= now:
            self._oldest_cas = self.next_cas()
        self._put_meta(FLUSH_KEY, _FLUSH.pack(self._oldest_live, self._oldest_cas))

    # -- introspection and lifecycle ----------------------------------------------------------

    def property_int(self, name: str) -> int:
        """An integer RocksDB property of the items column family (0 if unavailable)."""
        try:
            value = self._db.property_int_value(name)
        except Exception:
            return 0
        return int(value or 0)

    def statistics(self) -> dict[str, int]:
        """A snapshot of RocksDB's size and memory figures."""
        names = {
            "estimated_keys": "rocksdb.estimate-num-keys",
            "live_data_bytes": "rocksdb.estimate-live-data-size",
            "live_sst_bytes": "rocksdb.live-sst-files-size",
            "memtable_bytes": "rocksdb.cur-size-all-mem-tables",
            "block_cache_usage": "rocksdb.block-cache-usage",
            "block_cache_capacity": "rocksdb.block-cache-capacity",
            "pending_compaction_bytes": "rocksdb.estimate-pending-compaction-bytes",
        }
        return {label: self.property_int(prop) for label, prop in names.items()}

    @property
    def settings(self) -> StorageSettings:
        return self._settings

    def raw_db(self) -> Any:
        """The underlying ``rocksdict.Rdict`` (for storage-internal helpers and tests)."""
        return self._db

    def flush_memtables(self) -> None:
        """Write memtables to SST files (blocking; call from a worker thread)."""
        try:
            self._db.flush(True)
        except Exception as exc:
            raise StorageError(f"flush failed: {exc}") from exc

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
