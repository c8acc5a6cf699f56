"""The open RocksDB database: its column families, write options, figures and maintenance.

What the engine's item operations do not need but the background work and introspection do:
bounded walks, persisted reclaimer state, disk usage against ``max_disk_bytes``, manual
compaction, memtable flushes and RocksDB's size figures. The engine owns one ``Database``
(``Engine.db``); the reclaimer, the crawler and ``stats`` reach it there.

Column families: ``default`` holds items (key = raw memcached key, value = ``codec``
format); ``expiry`` and ``age`` the indexes (``storage.index``); ``meta`` the engine's own
state (CAS reservation, flush_all state, index completeness, the warm-restart record).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from petracache.config import StorageSettings
from petracache.storage import rocks
from petracache.storage.errors import StorageError
from petracache.storage.rocks import AGE_CF, EXPIRY_CF, META_CF, Family

BUDGET_CHECK_EVERY = 16  # entries between two clock reads of a time-budgeted walk
ITEMS = "default"  # the items family's name, as ``walk`` and ``compact`` take it
STATISTICS = {  # ``statistics()`` label -> RocksDB property of the items family
    "estimated_keys": "rocksdb.estimate-num-keys",
    "live_data_bytes": "rocksdb.estimate-live-data-size",
    "live_sst_bytes": "rocksdb.live-sst-files-size",
    "memtable_bytes": "rocksdb.cur-size-all-mem-tables",
    "block_cache_usage": "rocksdb.block-cache-usage",
    "block_cache_capacity": "rocksdb.block-cache-capacity",
    "pending_compaction_bytes": "rocksdb.estimate-pending-compaction-bytes",
}


class Database:
    """One open RocksDB database (``rocks.open_db``) and its families.

    Args:
        settings: the ``[storage]`` section.

    Attributes:
        items: the database itself, whose default family holds the items.
        meta: the ``meta`` family.
        write_opts: every logged write's options (the WAL off only with ``durability =
            "none"``; fsync mode writes un-synced too: group commit syncs the WAL for many
            writes at once, ``storage.write_sequence``).
        hint_opts: fetch records' options: no WAL (they are hints, ``storage.hot``).

    Raises:
        DatabaseLocked: another process has the database open.
        StorageError: RocksDB could not open the directory.
    """

    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self.items = rocks.open_db(settings)
        self.meta = self.items.get_column_family(META_CF)
        self.write_opts = rocks.write_options(wal=settings.durability != "none")
        self.items.set_write_options(self.write_opts)
        self.hint_opts = rocks.write_options(wal=False)
        self._families: dict[str, Family] = {
            ITEMS: self.items,
            EXPIRY_CF: self.items.get_column_family(EXPIRY_CF),
            AGE_CF: self.items.get_column_family(AGE_CF),
            META_CF: self.meta,
        }

    def family(self, name: str) -> Family:
        """A column family by name (``default``, ``expiry``, ``age``, ``meta``)."""
        return self._families[name]

    def walk(
        self, family: str, start: bytes, limit: int, deadline: float, timer: Callable[[], float]
    ) -> Walk:
        """A bounded walk over one family from ``start`` (``Walk``)."""
        return Walk(self._families[family], start, limit, deadline, timer)

    def load_state(self, key: bytes) -> bytes | None:
        """A value the background work persisted in the ``meta`` family."""
        raw = self.meta.get(key)
        return None if raw is None else bytes(raw)

    def save_state(self, key: bytes, value: bytes) -> None:
        """Persist background state in the ``meta`` family (synced)."""
        rocks.put_synced(self.meta, key, value)

    def sequence_number(self) -> int:
        """The latest sequence number (``rocks.sequence_number``)."""
        return rocks.sequence_number(self.items)

    # -- what max_disk_bytes bounds ------------------------------------------------------------

    def disk_usage(self) -> int:
        """SST bytes plus the unflushed writes' bytes.

        The unflushed writes are counted once, as the larger of the memtables and the WAL
        files on disk (a WAL file outlives its memtable's flush until every family's data in
        it is flushed; without a WAL only the memtables count). SST bytes include the
        inputs a running compaction still holds.
        """
        sst = memtables = 0
        for family in self._families.values():
            sst += rocks.property_int(family, "rocksdb.total-sst-files-size")
            memtables += rocks.property_int(family, "rocksdb.cur-size-all-mem-tables")
        return sst + max(memtables, rocks.wal_bytes(self.settings.db_path))

    def unflushed(self) -> tuple[int, int, int]:
        """(entries, deletes) in the items family's memtables and the WAL bytes on disk:
        whether a flush would release a log that holds mostly deleted data. The index
        families are left out: they are small, and an index delete often shadows nothing."""
        entries, deletes = rocks.memtable_entries(self.items)
        return entries, deletes, rocks.wal_bytes(self.settings.db_path)

    # -- blocking maintenance: call from a worker thread ------------------------------------------

    def compact(self, family: str, begin: bytes | None, end: bytes | None) -> int:
        """Compact a key range of one family; returns the SST bytes freed."""
        return rocks.compact(self._families[family], begin, end)

    def flush_memtables(self) -> None:
        """Write every family's memtables to SST files, releasing the WAL files they held."""
        rocks.flush_all(self.items)

    # -- figures -----------------------------------------------------------------------------

    def property_int(self, name: str) -> int:
        """An integer RocksDB property of the items family (0 if unavailable)."""
        return rocks.property_int(self.items, name)

    def statistics(self) -> dict[str, int]:
        """A snapshot of RocksDB's size and memory figures (``STATISTICS``)."""
        return {label: self.property_int(prop) for label, prop in STATISTICS.items()}

    def close(self) -> None:
        """Flush the memtables and the WAL, then close. Closes even when the flush fails.

        Raises:
            StorageError: the flush or the close failed (a full disk, say); with a WAL, the
                next start replays what was not flushed.
        """
        error: Exception | None = None
        try:
            self.items.flush(True)
            self.items.flush_wal(True)
        except Exception as exc:  # rocksdict raises bare Exception
            error = exc
        try:
            self.items.close()
        except Exception as exc:
            error = error or exc
        if error is not None:
            raise StorageError(f"closing the database: {error}") from error


class Walk:
    """A walk over a family from ``start``, bounded by an entry count and a time budget.

    Iterating yields each key; ``value()`` is the current entry's value. The walk stops
    after ``limit`` entries, or once ``timer()`` passes ``deadline`` (checked every
    ``BUDGET_CHECK_EVERY`` entries). A caller that breaks out leaves the walk on the entry
    it broke at, so ``head()`` and ``more`` then describe that entry.
    """

    def __init__(
        self,
        family: Family,
        start: bytes,
        limit: int,
        deadline: float,
        timer: Callable[[], float],
    ) -> None:
        self._it = family.iter()
        self._it.seek(start)
        self._limit = limit
        self._deadline = deadline
        self._timer = timer

    def __iter__(self) -> Iterator[bytes]:
        it = self._it
        n = 0
        while it.valid() and n < self._limit:
            yield bytes(it.key())
            n += 1
            it.next()
            if n % BUDGET_CHECK_EVERY == 0 and self._timer() > self._deadline:
                return

    def value(self) -> bytes:
        return bytes(self._it.value())

    @property
    def more(self) -> bool:
        """Whether entries remain past the walk's position."""
        return bool(self._it.valid())

    def head(self) -> bytes | None:
        """The key at the walk's position, or None at the end."""
        return bytes(self._it.key()) if self._it.valid() else None
