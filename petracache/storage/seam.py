"""The engine's operations for the reclaimer, the tally, liveness and ``stats``.

Why a separate module: ``storage.engine`` holds the item operations the commands use (reads,
writes, stores); this mixin holds what the background work and introspection use: the
index state, bounded walks, atomic index batches, persisted reclaimer state, disk usage,
compaction, the heartbeat, the recount, and RocksDB's figures. ``Engine`` inherits it, so
there is still one object over one database and one place that opens it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from petracache.config import StorageSettings
from petracache.storage import codec, rocks
from petracache.storage.codec import Item
from petracache.storage.errors import CorruptValue, StorageError
from petracache.storage.hot import HotItems
from petracache.storage.index import IndexBatch, ItemIndex, parse_age_key
from petracache.storage.liveness import Heartbeat
from petracache.storage.rocks import AGE_CF
from petracache.storage.tally import ItemTally, Recount

OLDEST_PROBE: Final = (
    64  # age-index entries looked at for ``oldest_write`` (stale ones are skipped)
)


class EngineSeam:
    """Mixed into ``Engine``; the attributes below are set by ``Engine.__init__``."""

    _db: Any
    _meta: Any
    _families: dict[str, Any]
    _index: ItemIndex
    _settings: StorageSettings
    _heartbeat: Heartbeat
    _exact_count: bool
    tally: ItemTally
    hot: HotItems

    def now(self) -> int:
        raise NotImplementedError  # Engine's clock

    # -- the reclaimer's seam ----------------------------------------------------------------

    @property
    def tracks_expiry(self) -> bool:
        """Whether the ``expiry`` index is maintained (``enable_ttl_compaction``)."""
        return self._index.track_expiry

    @property
    def tracks_age(self) -> bool:
        """Whether the ``age`` index is maintained (``max_disk_bytes`` > 0)."""
        return self._index.track_age

    def needs_backfill(self) -> bool:
        """Whether a maintained index misses items written before it was maintained."""
        return self._index.needs_backfill

    def mark_indexed(self) -> None:
        """A full crawl has indexed every item."""
        self._index.mark_complete()

    def stored(self, key: bytes) -> tuple[Item | None, int]:
        """The stored version under ``key``, dead or alive (None if absent or undecodable),
        and its key+value size.

        From the hot items when their entry carries a fetch state RocksDB does not have yet
        (``storage.hot``), which the reclaimer's second chance needs."""
        newer = self.hot.newer(key)
        if newer is not None:
            return newer, codec.item_stored_size(key, newer)
        try:
            raw = self._db.get(key)
        except Exception as exc:
            raise StorageError(f"read failed: {exc}") from exc
        if raw is None:
            return None, 0
        try:
            return codec.decode(raw), len(key) + len(raw)
        except CorruptValue:
            return None, 0

    def walk(
        self, family: str, start: bytes, limit: int, deadline: float, timer: Callable[[], float]
    ) -> rocks.Walk:
        """A bounded walk over ``default`` (items), ``expiry`` or ``age`` (``rocks.Walk``)."""
        return rocks.Walk(self._families[family], start, limit, deadline, timer)

    def batch(self) -> IndexBatch:
        """A batch of item deletions and index changes, applied atomically by its commit."""
        return self._index.batch(self.tally, self.hot)

    def load_state(self, key: bytes) -> bytes | None:
        """A value the reclaimer persisted in the ``meta`` family."""
        raw = self._meta.get(key)
        return None if raw is None else bytes(raw)

    def save_state(self, key: bytes, value: bytes) -> None:
        """Persist reclaimer state in the ``meta`` family (synced)."""
        rocks.put_synced(self._meta, key, value)

    def disk_usage(self) -> int:
        """What ``max_disk_bytes`` bounds: SST bytes plus the unflushed writes' bytes.

        The unflushed writes are counted once, as the larger of the memtables and the WAL
        files on disk (a WAL file outlives its memtable's flush until every family's data in
        it is flushed; without a WAL only the memtables count). SST bytes include the
        inputs a running compaction still holds.
        """
        sst = memtables = 0
        for family in self._families.values():
            sst += rocks.property_int(family, "rocksdb.total-sst-files-size")
            memtables += rocks.property_int(family, "rocksdb.cur-size-all-mem-tables")
        return sst + max(memtables, rocks.wal_bytes(self._settings.db_path))

    def unflushed(self) -> tuple[int, int, int]:
        """(entries, deletes) in the items family's memtables and the WAL bytes on disk:
        whether a flush would release a log that holds mostly deleted data. The index
        families are left out: they are small, and an index delete often shadows nothing."""
        entries, deletes = rocks.memtable_entries(self._db)
        return entries, deletes, rocks.wal_bytes(self._settings.db_path)

    def compact(self, family: str, begin: bytes | None, end: bytes | None) -> int:
        """Compact a key range of one family (blocking: call from a worker thread); returns
        the SST bytes freed."""
        return rocks.compact(self._families[family], begin, end)

    def oldest_write(self) -> int:
        """When the oldest surviving version was written (Unix s), from the head of the
        ``age`` index; 0 when that index is not kept or holds nothing live."""
        if not self._index.track_age:
            return 0
        walk = rocks.Walk(self._families[AGE_CF], b"", OLDEST_PROBE, float("inf"), time.monotonic)
        for entry in walk:
            cas, key = parse_age_key(entry)
            item, _size = self.stored(key)
            if item is not None and item.cas == cas:  # else a stale entry (see storage.index)
                return item.stored_at
        return 0

    # -- liveness and the item tally -----------------------------------------------------------

    def heartbeat(self) -> None:
        """Record that the server is alive now (``storage.liveness``; called periodically)."""
        self._heartbeat.beat(self.now())

    def recount(self) -> Recount | None:
        """A recount of the items to run in steps, or None when the tally is already exact."""
        if self.tally.exact or not self._exact_count:
            return None
        return Recount(self._db, self.tally)

    def property_int(self, name: str) -> int:
        """An integer RocksDB property of the items column family (0 if unavailable)."""
        return rocks.property_int(self._db, name)

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
