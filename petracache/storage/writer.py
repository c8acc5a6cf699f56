"""Writing item versions: RocksDB, their index entries, the hot items and the counts, kept
in step. memcached's do_item_link / do_item_unlink: every store, delete, expiry and fetch
record of the engine goes through ``ItemWriter``, and the live-item counts move only here
(``ItemCounts.link``/``unlink``) and in a reclaim batch's commit.

Group commit (Redis's append-only file, written once per event-loop pass): with
``autocommit`` off (the server turns it off), writes go into one pending ``WriteBatch`` and
``commit`` writes it with one WAL append; with it on (the default: tests and tools that use
an engine directly), every write is committed as it is made. The server calls ``commit``
before it sends any reply the batch's writes produced, once per reactor pass
(every connection served in it) or per read of a connection served by its own task, so a
client is told STORED only once its write is in the WAL. Meanwhile the hot items and
``pending`` (the batch's versions by key, None for a delete) are what reads see: a read
later in the same pass finds the pass's earlier writes.

Invariants:

* The hot items follow RocksDB (``storage.hot``): a write updates or drops the key's entry
  in the same call; if the RocksDB write fails, the entry is dropped, since what RocksDB
  then holds is not known here.
* ``sequence.written`` counts every write a reply may depend on (group commit waits for its
  fsync); the side writes of reads (lazy deletes of dead items, fetch records) are taken
  back as untracked: no reply waits for them, and losing one in a crash changes nothing a
  client was told.
* Side writes of reads are best effort: a failure is counted (``read_write_failures``),
  never raised, so reads keep working on a full disk.
* ``pending`` is empty whenever the trio thread may switch tasks: ``commit`` runs before
  any await that follows writes. When a commit fails (a full disk), none of the batch is
  written: its keys leave the hot items, the counts are no longer exact, the caller sends
  none of the replies that depended on it (``server.reactor_pass``), and later writes go
  straight to RocksDB one at a time (each failing with ``StorageError``, answered
  ``SERVER_ERROR``) until one succeeds; then batching resumes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from petracache.storage import codec, items, rocks
from petracache.storage.errors import StorageError
from petracache.storage.hot import HotItems
from petracache.storage.index import ItemIndex
from petracache.storage.item_counts import ItemCounts
from petracache.storage.items import Item
from petracache.storage.key_sizes import UNKNOWN, KeySizes
from petracache.storage.rocks import Batch, RocksDB, WriteOptions
from petracache.storage.statistics import EngineCounters
from petracache.storage.write_sequence import WriteSequence


class ItemWriter:
    """Writes and deletes item versions (see the module docstring).

    Args:
        db: the open database (items in its default family).
        write_opts, hint_opts: logged writes' options; fetch records' (no WAL).
        index: the expiry and age indexes, written with the items.
        counts: the live-item counts.
        sequence: the write counter group commit waits on.
        counters: the engine's counters (``total_items``, failures).
        hot_cache_size: bytes for the hot items (``storage.hot_cache_size``).
        sizes: every key's stored size (``storage.key_sizes``), kept in step with the writes,
            so a blind set knows the size it replaces; None when the counts are not kept
            exact (``exact_item_count = false``): such sets are then blind writes.
    """

    def __init__(
        self,
        db: RocksDB,
        write_opts: WriteOptions,
        hint_opts: WriteOptions,
        index: ItemIndex,
        counts: ItemCounts,
        sequence: WriteSequence,
        counters: EngineCounters,
        hot_cache_size: int,
        sizes: KeySizes | None,
    ) -> None:
        self._db = db
        self._write_opts = write_opts
        self._hint_opts = hint_opts
        self._batch: Batch | None = None  # the pending writes (group commit)
        self.pending: dict[bytes, Item | None] = {}  # their versions by key (None: deleted)
        self._tracked = 0  # pending writes a reply waits for (group commit in fsync mode)
        self._untracked = 0  # pending side writes of reads
        self._direct = False  # a commit failed: write one at a time until one succeeds
        self.autocommit = True  # commit every write as it is made (see the module docstring)
        self.index = index
        self.item_counts = counts
        self.sequence = sequence
        self.counters = counters
        self.sizes = sizes
        # Not a bound method: the writer must not be in a reference cycle (the database's
        # handles, and its lock, go when the last reference does).
        self._store_hint = partial(_store_hint, db, hint_opts, sequence, counters)
        self.hot = HotItems(hot_cache_size, partial(_keep_states, sizes, self._store_hint))

    def set(self, key: bytes, item: Item) -> None:
        """Write a new version without the old one: the hot items are updated first, so the
        lookup that replaces their entry also gives the old size, and the key sizes give it
        in the same probe that records the new one."""
        hot = self.hot
        cached = hot.put(key, item, evict=False)
        value = codec.encode_item(item)
        size = len(key) + len(value)
        try:
            old_size = self._swap_size(key, size, cached)
            self._store(key, value, item, None)
        except BaseException:
            hot.drop(key)  # what RocksDB holds now is not known here
            if self.sizes is not None:
                self.sizes.forget(key)
            raise
        self._count(True)
        self.item_counts.link(size, old_size)
        self.counters.total_items += 1

    def write(self, key: bytes, item: Item, old: Item | None, *, link: bool = True) -> None:
        """Write ``item`` under ``key`` exactly as given, replacing ``old`` (the live
        version, as read; None if there was none).

        ``link`` (memcached's do_item_link): a new version, counted in ``total_items``;
        ``link=False``: the same version with a changed state (meta flags).
        """
        value = codec.encode_item(item)
        try:
            self._store(key, value, item, old)
        except BaseException:
            self.hot.drop(key)  # what RocksDB holds now is not known here
            raise
        self.hot.put(key, item, evict=False)
        old_size = 0 if old is None else codec.item_stored_size(key, old)
        self._linked(key, len(key) + len(value), old_size, link)

    def _linked(self, key: bytes, size: int, old_size: int, link: bool) -> None:
        self._count(True)
        self.item_counts.link(size, old_size)
        sizes = self.sizes
        if sizes is not None:
            sizes.put(key, size)
        if link:
            self.counters.total_items += 1

    def _count(self, tracked: bool) -> None:
        """One write more, in the pending batch or (direct) in RocksDB already."""
        if self._batch is None:
            if tracked:
                self.sequence.written += 1
            else:
                self.sequence.untracked += 1
        elif tracked:
            self._tracked += 1
        else:
            self._untracked += 1

    def _swap_size(self, key: bytes, size: int, cached: Item | None) -> int:
        """Record ``size`` as the key's stored size; returns the size it replaces (0:
        absent), for the exact counts: from the key sizes, else from the hot entry
        ``cached`` the write replaced, else (before the start-up scan has seen the key) from
        RocksDB, where the bloom filters answer "absent" for most new keys without reading a
        block. Call it before the write reaches the pending batch."""
        sizes = self.sizes
        if sizes is None:  # storage.exact_item_count = false: blind writes
            return 0 if cached is None else codec.item_stored_size(key, cached)
        known = sizes.swap(key, size)
        if known != UNKNOWN:
            return known
        if cached is not None:
            return codec.item_stored_size(key, cached)
        pending = self.pending
        if pending and key in pending:
            newer = pending[key]
            return 0 if newer is None else codec.item_stored_size(key, newer)
        try:
            raw = self._db.get(key) if self._db.key_may_exist(key) else None
        except Exception as exc:
            raise StorageError(f"read failed: {exc}") from exc
        return 0 if raw is None else codec.stored_size(key, raw)

    def _store(self, key: bytes, value: bytes, item: Item, old: Item | None) -> None:
        """Add ``value`` to the pending batch, with its index entries when ``item`` needs
        them; after a failed commit, write it at once."""
        batch = self._open_batch()
        if batch is None:
            self.index.write(self._db, self._write_opts, key, value, item.deadline, item.cas, old)
            self._direct = False  # RocksDB takes writes again
            return
        self.index.add_put(batch, key, value, item.deadline, item.cas, old)
        self.pending[key] = item
        if self.autocommit:
            self._commit(linked=False)

    def delete(self, key: bytes, old: Item, *, tracked: bool = True) -> None:
        """Unlink ``old``, the stored version under ``key``, and its index entries;
        ``tracked=False`` for a side write of a read."""
        self.hot.drop(key)
        batch = self._open_batch()
        if batch is None:
            self.index.write(self._db, self._write_opts, key, None, 0, 0, old)
            self._direct = False
        else:
            self.index.add_delete(batch, key, old)
            self.pending[key] = None
            if self.autocommit:
                self._commit(linked=False)
        self.item_counts.unlink(codec.item_stored_size(key, old))
        if self.sizes is not None:
            self.sizes.remove(key)
        self._count(tracked)

    def write_directly(self) -> None:
        """From the next batch on, write one version at a time until one succeeds (as after
        a failed commit)."""
        self._direct = True

    def _open_batch(self) -> Batch | None:
        """The pending batch (a new one if none is open), or None after a failed commit."""
        batch = self._batch
        if batch is None and not self._direct:
            batch = self._batch = rocks.new_batch()
        return batch

    def commit(self) -> None:
        """Write the pending batch (one WAL append): call before sending any reply of the
        writes in it. Nothing to do when nothing is pending.

        Raises:
            StorageError: the write failed and none of the batch is stored (see the module
                docstring for what follows).
        """
        self._commit(linked=True)

    def _commit(self, linked: bool) -> None:
        """``commit``; ``linked``: the counts already count the batch's writes (with
        autocommit a write is committed before it is linked)."""
        batch = self._batch
        if batch is None:
            return
        self._batch = None
        tracked, untracked = self._tracked, self._untracked
        self._tracked = self._untracked = 0
        pending = self.pending
        try:
            rocks.commit_batch(self._db, batch, self._write_opts)
        except StorageError:
            sizes = self.sizes
            for key in pending:
                self.hot.drop(key)
                if sizes is not None:
                    sizes.forget(key)
            if linked:
                self.item_counts.exact = False  # it counted what the batch would have linked
            self._direct = not self.autocommit
            extra = self.counters.extra
            extra["commit_failures"] = extra.get("commit_failures", 0) + 1
            raise
        finally:
            pending.clear()
        self.sequence.written += tracked
        self.sequence.untracked += untracked

    def delete_dead(self, key: bytes, item: Item) -> None:
        """Delete a dead item a read found (lazy expiry): a side write of a read, best effort
        and untracked (see the module docstring)."""
        try:
            self.delete(key, item, tracked=False)
        except StorageError:
            _count_side_write_failure(self.counters)

    def record_read(self, key: bytes, item: Item, now: int) -> Item:
        """Record a read at ``now`` of ``item``, the version stored under ``key``: in the
        hot entry itself when ``item`` is it (``HotItems.fetched``), else as the fetch
        record of a copy (``record_fetch``). Returns the item as fetched, or as read if
        the record could not be kept."""
        access, bits = items.fetch_state(item, now)
        if self.hot.fetched(key, item, access, bits):
            return item
        seen = items.with_fetch_state(item, access, bits)
        return seen if self.record_fetch(key, seen) else item

    def record_fetch(self, key: bytes, item: Item) -> bool:
        """Record a fetch: ``item`` differs from the stored version only in fetch state.

        Kept in the hot items, dirty, when they hold the key (``storage.hot``); else its
        state in the key sizes (in memory), or the whole value put in RocksDB without the
        WAL: a crash that loses it only forgets that the item was fetched. Best effort and
        untracked, like ``delete_dead``: True if recorded.
        """
        if self.hot.hint(key, item):
            return True
        if key in self.pending:
            return False  # its pending version is newer than this record
        if not _keep_states(self.sizes, self._store_hint, [(key, item)]):
            self.hot.drop(key)
            return False
        self.hot.put(key, item)
        return True

    def write_hints(self) -> None:
        """Store every fetch record the hot items still keep (at close: a clean stop keeps
        them). One unlogged batch; best effort, like the records."""
        hints = self.hot.take_hints()
        if hints:
            self._store_hint([(key, codec.encode_item(item)) for key, item in hints])


def _keep_states(
    sizes: KeySizes | None,
    store_hint: Callable[[list[tuple[bytes, bytes]]], bool],
    records: list[tuple[bytes, Item]],
) -> bool:
    """Keep fetch records (key, the stored version with its new fetch state): their state
    in the key sizes (``storage.key_sizes``: in memory, no write), or, for a key they do
    not hold, the whole value in RocksDB (``_store_hint``). True if all were kept."""
    if sizes is not None:
        records = [
            (key, item)
            for key, item in records
            if not sizes.record(key, item.last_access, item.bits)
        ]
        if not records:
            return True
    return store_hint([(key, codec.encode_item(item)) for key, item in records])


def _store_hint(
    db: RocksDB,
    opts: WriteOptions,
    sequence: WriteSequence,
    counters: EngineCounters,
    records: list[tuple[bytes, bytes]],
) -> bool:
    """Put fetch records (key, encoded value) without the WAL, in one batch: True if
    written. Best effort, like the records: a failure is counted (``read_write_failures``),
    never raised; and untracked, since no reply waits for their fsync."""
    batch = rocks.new_batch()
    for key, value in records:
        batch.put(key, value)
    try:
        rocks.commit_batch(db, batch, opts)
    except StorageError:
        _count_side_write_failure(counters)
        return False
    sequence.untracked += len(records)
    return True


def _count_side_write_failure(counters: EngineCounters) -> None:
    extra = counters.extra
    extra["read_write_failures"] = extra.get("read_write_failures", 0) + 1
