"""RocksDB plumbing: options, opening, synced metadata writes, properties, WAL size, walks.

Invariants:

* This is the only module that imports ``rocksdict``; the rest of the storage layer holds
  its objects through the Protocols below (``Family``, ``RocksDB``, ``Batch``,
  ``RawIterator``: the methods of rocksdict's objects that petracache calls, so mypy checks
  every call at the boundary) and calls them through the helpers here or their plain
  methods (``get``, ``put``, ``delete``, ``iter``).
* rocksdict raises a bare ``Exception`` for every RocksDB failure; helpers here turn a
  failure that matters into ``StorageError`` and a failed read of an optional figure
  (a property, a WAL file that vanished) into 0.
* Only ``flush``, ``flush_wal``, ``compact_range`` and ``close`` release the GIL (rocksdict
  ``src/rdict.rs``); callers run those in a worker thread, everything else inline.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Protocol, cast

import rocksdict

from petracache.config import StorageSettings
from petracache.storage.dirs import makedirs_durable
from petracache.storage.errors import DatabaseLocked, StorageError
from petracache.storage.layout import Layout, layout

META_CF = "meta"
EXPIRY_CF = "expiry"
AGE_CF = "age"
META_WRITE_BUFFER = 64 * 1024  # the smallest write_buffer_size StorageSettings accepts
INDEX_WRITE_BUFFER = 8 * 1024 * 1024  # index entries are small: a smaller memtable suffices
# Each index family gets its own small block cache (RocksDB would otherwise give each one a
# default 32 MiB cache): the head of an index is read sequentially, so little cache helps.
INDEX_BLOCK_CACHE = 4 * 1024 * 1024
# RocksDB's CompactOnDeletionCollector: mark an SST for compaction once 50% of any 1,024
# consecutive entries are tombstones (the deletion pattern reaping and eviction produce).
DELETION_WINDOW = 1024
DELETION_TRIGGER = 512
DELETION_RATIO = 0.5
# RocksDB's message when the LOCK file is held: "IO error: While lock file: <path>/LOCK: ..."
_LOCK_MESSAGE = "while lock file"
# A flush_all state in the meta family: oldest_live (Unix s, 0 = no flush), oldest_cas.
FLUSH_STATE = struct.Struct("<qQ")


# -- the rocksdict objects petracache uses, as typed Protocols ----------------------------------


class WriteOptions(Protocol):
    """rocksdict's ``WriteOptions`` (opaque here: built by ``write_options``)."""

    sync: bool


class RawIterator(Protocol):
    """rocksdict's ``RdictIter`` over a raw-mode family."""

    def valid(self) -> bool: ...
    def seek(self, key: bytes) -> None: ...
    def seek_to_first(self) -> None: ...
    def seek_for_prev(self, key: bytes) -> None: ...
    def next(self) -> None: ...
    def prev(self) -> None: ...
    def key(self) -> bytes: ...
    def value(self) -> bytes: ...


class Batch(Protocol):
    """rocksdict's ``WriteBatch`` in raw mode; ``family`` is a column family handle."""

    def put(self, key: bytes, value: bytes, family: object = ...) -> None: ...
    def delete(self, key: bytes, family: object = ...) -> None: ...
    def __len__(self) -> int: ...


class Family(Protocol):
    """A raw-mode column family (rocksdict's ``Rdict`` for one family)."""

    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes, write_opt: WriteOptions = ...) -> None: ...
    def delete(self, key: bytes, write_opt: WriteOptions = ...) -> None: ...
    def key_may_exist(self, key: bytes) -> bool: ...
    def iter(self) -> RawIterator: ...
    def property_int_value(self, name: str) -> int | None: ...
    def compact_range(self, begin: bytes | None, end: bytes | None, opts: object) -> None: ...
    def flush(self, wait: bool = ...) -> None: ...


class RocksDB(Family, Protocol):
    """The open database: its default family (the items) and the whole-database calls."""

    def get_column_family(self, name: str) -> Family: ...
    def get_column_family_handle(self, name: str) -> object: ...
    def set_write_options(self, write_opt: WriteOptions) -> None: ...
    def write(self, batch: Batch, write_opt: WriteOptions = ...) -> None: ...
    def flush_wal(self, sync: bool = ...) -> None: ...
    def latest_sequence_number(self) -> int: ...
    def close(self) -> None: ...


# -- options -------------------------------------------------------------------------------------


def _collect_deletions(opts: Any) -> None:
    """Let RocksDB compact tombstone-dense SST files on its own (compact-on-deletion)."""
    opts.add_compact_on_deletion_collector_factory(
        DELETION_WINDOW, DELETION_TRIGGER, DELETION_RATIO
    )


def _item_options(settings: StorageSettings, sizes: Layout) -> Any:
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    opts.set_write_buffer_size(sizes.write_buffer_size)
    opts.set_max_write_buffer_number(sizes.max_write_buffer_number)
    opts.set_target_file_size_base(sizes.target_file_size_base)
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
    _collect_deletions(opts)
    # A WAL file is deleted only once every family's data in it is flushed; the small
    # families (meta, expiry, age) would otherwise pin old WALs and the disk would grow with
    # every write. Past this total, RocksDB flushes the families holding the oldest WAL.
    opts.set_max_total_wal_size(sizes.write_buffer_size * sizes.max_write_buffer_number)
    if settings.max_disk_bytes:
        _bounded_layout(opts, settings.max_disk_bytes, sizes)
    return opts


def _bounded_layout(opts: Any, bound: int, sizes: Layout) -> None:
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
    opts.set_max_bytes_for_level_base(max(bound // 8, sizes.write_buffer_size))
    opts.set_max_bytes_for_level_multiplier(4.0)
    opts.set_level_zero_file_num_compaction_trigger(2)
    target = min(sizes.target_file_size_base, max(bound // 32, 1 << 20))
    opts.set_target_file_size_base(target)
    opts.set_max_compaction_bytes(max(bound // 8, 4 * target))
    opts.set_max_total_wal_size(sizes.write_buffer_size)


def _meta_options() -> Any:
    """The ``meta`` family holds a few keys; a small write buffer matters for disk-full recovery.

    After ENOSPC, RocksDB's SstFileManager clears the error by itself (polling every 5 s)
    once the free space exceeds the largest ``write_buffer_size`` of any column family; the
    64 MiB default here would otherwise set that bar regardless of ``[storage]``.
    """
    opts = rocksdict.Options(raw_mode=True)
    opts.set_write_buffer_size(META_WRITE_BUFFER)
    return opts


def _index_options(write_buffer_size: int) -> Any:
    """Options for the index families: small memtables and cache, tombstone-driven compaction.

    Their memory is fixed: ``INDEX_BLOCK_CACHE`` plus two memtables of at most
    ``INDEX_WRITE_BUFFER`` each, per family.
    """
    opts = rocksdict.Options(raw_mode=True)
    opts.set_write_buffer_size(min(write_buffer_size, INDEX_WRITE_BUFFER))
    opts.set_max_write_buffer_number(2)
    table = rocksdict.BlockBasedOptions()
    table.set_block_cache(rocksdict.Cache(INDEX_BLOCK_CACHE))
    table.set_bloom_filter(10, False)
    opts.set_block_based_table_factory(table)
    _collect_deletions(opts)
    return opts


# -- opening and writing -------------------------------------------------------------------------


def open_db(settings: StorageSettings) -> RocksDB:
    """Open (creating if needed) the database with its four column families.

    A created ``db_path`` survives a power cut: its parent is fsynced (``storage.dirs``).

    Raises:
        DatabaseLocked: another process has the database open.
        StorageError: RocksDB could not open the directory.
    """
    path = settings.db_path
    try:
        # RocksDB syncs the directory's contents, never its name: a bare makedirs could lose
        # the whole database in a power cut (storage.dirs).
        makedirs_durable(path)
    except OSError as exc:
        raise StorageError(f"cannot create db_path {path!r}: {exc.strerror}") from exc
    sizes = layout(settings)
    try:
        db = rocksdict.Rdict(
            path,
            _item_options(settings, sizes),
            column_families={
                META_CF: _meta_options(),
                EXPIRY_CF: _index_options(sizes.write_buffer_size),
                AGE_CF: _index_options(sizes.write_buffer_size),
            },
        )
    except Exception as exc:  # rocksdict raises bare Exception
        text = str(exc)
        if _LOCK_MESSAGE in text.lower():
            raise DatabaseLocked(
                f"db_path {path!r} is locked by another process (is petracache running?)"
            ) from exc
        raise StorageError(f"cannot open db_path {path!r}: {text}") from exc
    return cast(RocksDB, db)


def write_options(*, wal: bool = True, sync: bool = False) -> WriteOptions:
    """``WriteOptions`` with the WAL on or off and fsync on or off."""
    opts = rocksdict.WriteOptions()
    # A settable attribute at runtime; rocksdict's stub wrongly declares a method.
    opts.disable_wal = not wal  # type: ignore[method-assign,assignment]
    opts.sync = sync
    return cast(WriteOptions, opts)


_SYNCED = write_options(sync=True)


def put_synced(family: Family, key: bytes, value: bytes) -> None:
    """Write engine state (CAS reservation, flush state, index state) synced to the WAL.

    Raises:
        StorageError: the write failed; nothing may rely on it.
    """
    try:
        family.put(key, value, _SYNCED)
    except Exception as exc:
        raise StorageError(f"metadata write failed: {exc}") from exc


def put_with(family: Family, key: bytes, value: bytes, opts: WriteOptions) -> None:
    """Write engine state with the given ``WriteOptions`` (``put_synced`` without the sync).

    Raises:
        StorageError: the write failed.
    """
    try:
        family.put(key, value, opts)
    except Exception as exc:
        raise StorageError(f"metadata write failed: {exc}") from exc


def sequence_number(db: RocksDB) -> int:
    """The database's latest sequence number (every written key takes the next one).

    Raises:
        StorageError: RocksDB refused (the database is closed, say).
    """
    try:
        return int(db.latest_sequence_number())
    except Exception as exc:  # rocksdict raises bare Exception (DbClosedError when closed)
        raise StorageError(f"reading the sequence number failed: {exc}") from exc


def new_batch() -> Batch:
    """An empty raw-mode ``WriteBatch`` (applied atomically by ``commit_batch``)."""
    return cast(Batch, rocksdict.WriteBatch(raw_mode=True))


def commit_batch(db: RocksDB, batch: Batch, opts: WriteOptions) -> None:
    try:
        db.write(batch, opts)
    except Exception as exc:
        raise StorageError(f"write failed: {exc}") from exc


def compact(family: Family, begin: bytes | None, end: bytes | None) -> int:
    """Compact a key range of ``family`` (blocking); returns the SST bytes it freed.

    ``exclusive_manual_compaction`` is off so RocksDB's own compactions keep running (and
    writes do not stall behind a long manual compaction).
    """
    before = property_int(family, "rocksdb.total-sst-files-size")
    opts = rocksdict.CompactOptions()
    opts.set_exclusive_manual_compaction(False)
    try:
        family.compact_range(begin, end, opts)
    except Exception as exc:
        raise StorageError(f"compaction failed: {exc}") from exc
    return max(before - property_int(family, "rocksdb.total-sst-files-size"), 0)


# -- reading -------------------------------------------------------------------------------------


def property_int(family: Family, name: str) -> int:
    """An integer RocksDB property of ``family`` (0 if unavailable)."""
    try:
        return int(family.property_int_value(name) or 0)
    except Exception:
        return 0


def memtable_entries(family: Family) -> tuple[int, int]:
    """(entries, deletes) in ``family``'s memtables, the active one and those being flushed."""
    entries = property_int(family, "rocksdb.num-entries-active-mem-table") + property_int(
        family, "rocksdb.num-entries-imm-mem-tables"
    )
    deletes = property_int(family, "rocksdb.num-deletes-active-mem-table") + property_int(
        family, "rocksdb.num-deletes-imm-mem-tables"
    )
    return entries, deletes


def wal_bytes(db_path: str) -> int:
    """Total size of the RocksDB WAL files (``NNNNNN.log``) in ``db_path``; 0 if none.

    A file released between listing and ``stat`` counts 0.
    """
    total = 0
    try:
        with os.scandir(db_path) as entries:
            for entry in entries:
                if entry.name.endswith(".log") and entry.name[:-4].isdigit():
                    try:
                        total += entry.stat().st_size
                    except OSError:
                        continue
    except OSError:
        return 0
    return total


def checkpoint(db: RocksDB, path: str) -> None:
    """A RocksDB checkpoint of ``db`` at ``path`` (which must not exist).

    First the WAL is synced and every family's memtable flushed, in calls that release the
    GIL: the checkpoint flushes whatever is left while holding it (rocksdict), which would
    stall the data plane for the length of those flushes (docs/benchmarks.md, "Backups").
    """
    db.flush_wal(True)
    flush_all(db)
    rocksdict.Checkpoint(cast(rocksdict.Rdict, db)).create_checkpoint(path)


def flush_all(db: RocksDB) -> None:
    """Flush every family's memtables (blocking; releases the GIL).

    A WAL file is deleted only once every family's data in it is flushed, so flushing the
    items family alone would not release the log.

    Raises:
        StorageError: a flush failed.
    """
    try:
        db.flush(True)
        for family in (EXPIRY_CF, AGE_CF, META_CF):
            db.get_column_family(family).flush(True)
    except Exception as exc:
        raise StorageError(f"flush failed: {exc}") from exc


def families_of(path: str) -> list[str]:
    """The column families of the database at ``path``.

    Raises:
        Exception: not a RocksDB database (rocksdict raises a bare ``Exception``).
    """
    return list(rocksdict.Rdict.list_cf(path))


def open_existing(path: str) -> RocksDB:
    """Open the database at ``path`` with every family it has (for offline tools).

    Raises:
        Exception: it does not open (rocksdict raises a bare ``Exception``).
    """
    families = families_of(path)
    cf_opts = {name: rocksdict.Options(raw_mode=True) for name in families if name != "default"}
    db = rocksdict.Rdict(path, rocksdict.Options(raw_mode=True), column_families=cf_opts)
    return cast(RocksDB, db)


def last_below(family: Family, limit: bytes) -> bytes | None:
    """The last key of ``family`` before ``limit``, or None."""
    it = family.iter()
    it.seek_for_prev(limit)
    if it.valid() and bytes(it.key()) == limit:
        it.prev()
    return bytes(it.key()) if it.valid() else None


def is_empty(family: Family) -> bool:
    it = family.iter()
    it.seek_to_first()
    return not it.valid()
