"""Secondary indexes over the items, kept in the same atomic write as the item itself.

RocksDB keys items by memcached key, which says nothing about when an item dies or how old it
is. Two column families answer those questions without scanning live data:

* ``expiry``: ``deadline (u32 BE) | cas (u64 BE) | key`` -> empty. One entry per item
  version that has a deadline, in deadline order: the reclaimer reads a prefix of it.
* ``age``: ``position (u64 BE) | key`` -> empty or ``cas (u64 BE) [| freq (u8)]``. One
  entry per item version, in queue order: a write puts its version at ``position`` = its
  CAS with an empty value (CAS uniques strictly increase, so that is the tail); an eviction
  requeue (CLOCK's second chance, ``storage.reclaim``) moves the entry to a fresh position
  taken from the same CAS source and records the version's CAS in the value. The evictor
  reads a prefix. Two ranges: positions below ``MAIN_BASE`` (2**63, which CAS uniques
  never reach in practice) are the write order, S3-FIFO's *small* queue; positions from
  it are the *main* queue, whose entries only the reclaimer writes (``main_position``: a
  counter of its own above ``MAIN_BASE``) with the version's CAS and its frequency
  (``storage.reclaim.queues``) in the value. Which queue an item is in is where its entry
  is: logged with the entry, so a restart keeps it.

Invariants:

* An item and its index entries are written in one ``WriteBatch`` (all or nothing), so an
  index entry never points at a version that was not written.
* Entries may be *stale*: ``set`` overwrites an item without decoding it, so it cannot
  delete the previous version's entries. Readers of an index therefore never trust an entry:
  they re-read the item and act only if the stored version is the one the entry names (same
  CAS) or is dead by its own header. Stale entries cost one read each when they reach the
  head of their index, then they are deleted.
* When the caller knows the previous version (every command that looked the key up first:
  touch, gat, add, replace, cas, append, prepend, incr, decr, delete, lazy expiry), its
  entries are deleted in the same batch, so the index stays exact for those.
* A requeued entry is not at ``age_key(cas, key)``, so a later command's drop of the old
  version's entries misses it: it goes stale like a blind ``set``'s, and is deleted when
  it reaches the head. A requeue is logged like any write (unlike the fetch record that
  set the active bit): were it lost in a crash, the entry would come back at its old
  position, the head, and the first eviction round after the restart would evict the
  item the requeue had spared. It costs one log append per spared item per pass.
* Deletes are added to a batch before puts: a touch keeps the CAS, so its ``age`` entry is
  deleted and put again under the same key and must survive.
* Each index is *complete* (covers every stored item) only if it was maintained by every
  write since the database was empty, or a crawl has backfilled it since; the ``meta`` family
  records this, and ``needs_backfill`` tells the reclaimer to crawl.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final

from petracache.storage import codec, rocks
from petracache.storage.items import Item
from petracache.storage.rocks import AGE_CF, EXPIRY_CF, Batch, Family, RocksDB, WriteOptions

if TYPE_CHECKING:
    from petracache.storage.hot import HotItems
    from petracache.storage.item_counts import ItemCounts
    from petracache.storage.key_sizes import KeySizes

INDEX_STATE_KEY: Final = b"index_complete"  # meta key: b"E" and/or b"A" for complete indexes
_EXPIRY: Final = struct.Struct(">IQ")
_AGE: Final = struct.Struct(">Q")
EXPIRY_PREFIX: Final = _EXPIRY.size
AGE_PREFIX: Final = _AGE.size
# The main queue's positions: from MAIN_BASE up. A CAS unique is a count of writes (and a
# client's meta E value, which may be anything), so the write order stays below it.
MAIN_BASE: Final = 1 << 63
MAIN_START: Final = _AGE.pack(MAIN_BASE)  # the first age key of the main queue


def expiry_key(deadline: int, cas: int, key: bytes) -> bytes:
    return _EXPIRY.pack(deadline, cas) + key


def parse_expiry_key(raw: bytes) -> tuple[int, int, bytes]:
    """(deadline, cas, item key) of an ``expiry`` entry."""
    deadline, cas = _EXPIRY.unpack_from(raw)
    return deadline, cas, raw[EXPIRY_PREFIX:]


def age_key(position: int, key: bytes) -> bytes:
    return _AGE.pack(position) + key


def parse_age_key(raw: bytes) -> tuple[int, bytes]:
    """(queue position, item key) of an ``age`` entry."""
    return _AGE.unpack_from(raw)[0], raw[AGE_PREFIX:]


def age_version(position: int, value: bytes) -> int:
    """The CAS of the version an ``age`` entry names: its position unless it was requeued."""
    return int(_AGE.unpack_from(value)[0]) if value else position


def main_freq(value: bytes) -> int:
    """The frequency a main-queue entry's value records (0 when it records none)."""
    return value[AGE_PREFIX] if len(value) > AGE_PREFIX else 0


def requeued_value(cas: int, freq: int = 0) -> bytes:
    """The value of a requeued entry: the version's CAS, and its frequency when not 0."""
    return _AGE.pack(cas) + bytes((freq,)) if freq else _AGE.pack(cas)


def expiry_deadline_of(raw: bytes) -> int:
    return int(_EXPIRY.unpack_from(raw)[0])


class ItemIndex:
    """Writes items together with their index entries.

    Args:
        db: the open ``rocksdict.Rdict`` (items in its default family).
        meta: the ``meta`` family (index completeness flags).
        write_opts: the engine's write options (durability mode).
        track_expiry: maintain ``expiry`` (``[storage] enable_ttl_compaction``).
        track_age: maintain ``age`` (``[storage] max_disk_bytes > 0``).
    """

    def __init__(
        self,
        db: RocksDB,
        meta: Family,
        write_opts: WriteOptions,
        track_expiry: bool,
        track_age: bool,
    ) -> None:
        self._db = db
        self._write_opts = write_opts
        self._expiry_h = db.get_column_family_handle(EXPIRY_CF)
        self._age_h = db.get_column_family_handle(AGE_CF)
        self.track_expiry = track_expiry
        self.track_age = track_age
        self._meta = meta
        complete = bytes(meta.get(INDEX_STATE_KEY) or b"")
        if not complete and rocks.is_empty(db):
            complete = b"EA"
        # An index not maintained from now on is incomplete from now on.
        self.expiry_complete = track_expiry and b"E" in complete
        self.age_complete = track_age and b"A" in complete
        self._save_state()

    def needs_backfill(self) -> bool:
        """Whether a maintained index misses items written before it was maintained."""
        return (self.track_expiry and not self.expiry_complete) or (
            self.track_age and not self.age_complete
        )

    def mark_complete(self) -> None:
        """A full crawl has indexed every item (called by the reclaimer's backfill)."""
        self.expiry_complete = self.track_expiry
        self.age_complete = self.track_age
        self._save_state()

    def _save_state(self) -> None:
        state = (b"E" if self.expiry_complete else b"") + (b"A" if self.age_complete else b"")
        rocks.put_synced(self._meta, INDEX_STATE_KEY, state)

    # -- batches -------------------------------------------------------------------------------

    def drop_entries(self, batch: Batch, key: bytes, old: Item) -> None:
        """Add deletes of ``old``'s index entries to ``batch``."""
        if self.track_expiry and old.deadline:
            batch.delete(expiry_key(old.deadline, old.cas, key), self._expiry_h)
        if self.track_age:
            batch.delete(age_key(old.cas, key), self._age_h)

    def add_entries(self, batch: Batch, key: bytes, deadline: int, cas: int) -> None:
        """Add puts of a version's index entries to ``batch``."""
        if self.track_expiry and deadline:
            batch.put(expiry_key(deadline, cas, key), b"", self._expiry_h)
        if self.track_age:
            batch.put(age_key(cas, key), b"", self._age_h)

    def delete_stale(self, batch: Batch, entry: bytes, family: str) -> None:
        batch.delete(entry, self._expiry_h if family == EXPIRY_CF else self._age_h)

    def requeue_entry(
        self, batch: Batch, entry: bytes, key: bytes, cas: int, position: int, freq: int = 0
    ) -> None:
        """Add the move of ``entry`` (naming version ``cas`` of ``key``) to ``position``,
        recording ``freq`` (main queue)."""
        batch.delete(entry, self._age_h)
        batch.put(age_key(position, key), requeued_value(cas, freq), self._age_h)

    def commit(self, batch: Batch) -> None:
        rocks.commit_batch(self._db, batch, self._write_opts)

    def batch(
        self,
        counts: ItemCounts | None = None,
        hot: HotItems | None = None,
        sizes: KeySizes | None = None,
    ) -> IndexBatch:
        """A batch of deletes and index entries, for the reclaimer; its committed item
        deletions are taken off ``counts`` and the items it changes leave ``hot``."""
        return IndexBatch(self, counts, hot, sizes)

    # -- item writes (the writer's) -----------------------------------------------------------

    def add_put(
        self, batch: Batch, key: bytes, value: bytes, deadline: int, cas: int, old: Item | None
    ) -> None:
        """Add an item version and its entries to ``batch``, dropping ``old``'s entries."""
        if old is not None:
            self.drop_entries(batch, key, old)
        batch.put(key, value)
        self.add_entries(batch, key, deadline, cas)

    def add_delete(self, batch: Batch, key: bytes, old: Item | None) -> None:
        """Add the delete of an item and (when known) its version's entries to ``batch``."""
        if old is not None:
            self.drop_entries(batch, key, old)
        batch.delete(key)

    def write(
        self,
        db: RocksDB,
        opts: WriteOptions,
        key: bytes,
        value: bytes | None,
        deadline: int,
        cas: int,
        old: Item | None,
    ) -> None:
        """Write one version (``value``; None deletes) and its entries now, atomically.

        Raises:
            StorageError: the write failed; nothing of it is stored.
        """
        batch = rocks.new_batch()
        if value is None:
            self.add_delete(batch, key, old)
        else:
            self.add_put(batch, key, value, deadline, cas, old)
        rocks.commit_batch(db, batch, opts)


class IndexBatch:
    """Item deletions and index changes gathered by a reclaim step, applied by ``commit``.

    An item is deleted together with its version's entries, so a reclaim step keeps the
    index exact for everything it deletes (see the module invariants).
    """

    __slots__ = (
        "_batch",
        "_counts",
        "_deleted",
        "_deleted_bytes",
        "_hot",
        "_index",
        "_sizes",
        "_touched",
    )

    def __init__(
        self,
        index: ItemIndex,
        counts: ItemCounts | None = None,
        hot: HotItems | None = None,
        sizes: KeySizes | None = None,
    ) -> None:
        self._index = index
        self._batch = rocks.new_batch()
        self._counts = counts
        self._hot = hot
        self._sizes = sizes
        self._touched: list[bytes] = []  # items deleted or rewritten: their hot entries go
        self._deleted: list[bytes] = []
        self._deleted_bytes = 0

    def delete_item(self, key: bytes, item: Item) -> None:
        """Delete ``key``, whose stored version is ``item`` (just read: the key is there),
        and that version's entries."""
        self._index.drop_entries(self._batch, key, item)
        self._batch.delete(key)
        self._touched.append(key)
        self._deleted.append(key)
        self._deleted_bytes += codec.item_stored_size(key, item)

    def delete_entry(self, entry: bytes, family: str) -> None:
        """Delete a (stale or consumed) entry of the ``expiry`` or ``age`` family."""
        self._index.delete_stale(self._batch, entry, family)

    def index_item(self, key: bytes, item: Item) -> None:
        """Add a stored version's entries (backfill)."""
        self._index.add_entries(self._batch, key, item.deadline, item.cas)

    def requeue(
        self, entry: bytes, key: bytes, value: bytes, cas: int, position: int, freq: int = 0
    ) -> None:
        """Move ``entry`` to ``position`` (recording ``freq``) and store ``value``, the same
        version (``cas``) with only its eviction state changed (the active bit cleared)."""
        self._index.requeue_entry(self._batch, entry, key, cas, position, freq)
        self._batch.put(key, value)
        self._touched.append(key)

    def move(self, entry: bytes, key: bytes, cas: int, position: int, freq: int = 0) -> None:
        """Move ``entry`` to ``position`` (recording ``freq``), the item left as it is."""
        self._index.requeue_entry(self._batch, entry, key, cas, position, freq)

    def commit(self) -> None:
        """Apply the batch; the hot items of what it deleted or rewrote go (``storage.hot``:
        even if the write fails, since what RocksDB then holds is not known here), and what
        it deleted is unlinked from the counts and the key sizes, whose fetch state of what
        it rewrote goes (the rewritten value carries it)."""
        try:
            self._index.commit(self._batch)
        finally:
            if self._hot is not None:
                for key in self._touched:
                    self._hot.drop(key)
            if self._sizes is not None:
                for key in self._touched:
                    self._sizes.clear_state(key)
        deleted = self._deleted
        if self._counts is not None and deleted:
            self._counts.unlink(self._deleted_bytes, len(deleted))
        if self._sizes is not None:
            for key in deleted:
                self._sizes.remove(key)
