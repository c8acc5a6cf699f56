"""Write sequence bookkeeping for group commit (``durability = "fsync"``).

Strategy: in fsync mode every write goes to RocksDB *un-synced* on the trio thread, exactly as
in wal mode (a pass's writes in one committed batch, ``storage.writer``). Each committed
write bumps ``written``. Before a connection sends the replies of a batch that wrote something, it
waits until ``synced`` has caught up with the ``written`` value it saw; one background task
(``server.durability``) makes that happen by calling ``sync()`` in a worker thread, which
fsyncs the WAL once for every write that accumulated: many connections share one fsync.

Invariants:

* ``written`` changes only on the trio thread (commits are synchronous there). It grows
  with every write once it is in the WAL, except the writes a read makes on the side (lazy
  deletes, fetch records), counted in ``untracked``: no reply depends on them, so no reply
  waits for their fsync.
* ``sync()`` reads ``written`` *before* it fsyncs: every write numbered up to that target was
  already appended to the WAL, so the fsync covers it. Writes that race with the fsync get a
  higher number and wait for the next round.
* ``synced`` is assigned only by the caller of ``sync()`` on the trio thread (``mark_synced``),
  never from the worker thread.

No trio here (storage stays synchronous); ``sync()`` blocks and must run in a worker thread.
"""

from __future__ import annotations

from petracache.storage import rocks
from petracache.storage.errors import StorageError
from petracache.storage.rocks import RocksDB


class WriteSequence:
    """Counts writes and fsyncs the RocksDB WAL up to a given write.

    Args:
        db: the open ``rocksdict.Rdict``; only ``flush_wal(True)`` is called on it.
    """

    __slots__ = ("_db", "sync_failures", "synced", "syncs", "untracked", "written")

    def __init__(self, db: RocksDB) -> None:
        self._db = db
        self.written = 0
        self.synced = 0
        self.syncs = 0  # number of WAL fsyncs performed (one per group)
        self.sync_failures = 0  # WAL fsyncs (or resyncs) that failed
        self.untracked = 0  # side writes of reads, taken back from ``written``

    @property
    def writes(self) -> int:
        """Every write so far, tracked or not (for counting, not for durability)."""
        return self.written + self.untracked

    def sync(self, target: int) -> int:
        """fsync the WAL; returns ``target`` (the caller passes ``written`` as read on its thread).

        Blocking: releases the GIL inside RocksDB (rocksdict's ``flush_wal`` uses
        ``allow_threads``), so it belongs in ``trio.to_thread.run_sync``.

        Raises:
            StorageError: the fsync failed (I/O error, disk gone); nothing new is durable.
        """
        try:
            self._db.flush_wal(True)
        except Exception as exc:  # rocksdict raises bare Exception
            self.sync_failures += 1
            raise StorageError(f"WAL sync failed: {exc}") from exc
        return target

    def resync(self, target: int) -> int:
        """After a failed fsync: flush every memtable to synced SST files (which also starts
        a new WAL file), then fsync the WAL; returns ``target``.

        Why not fsync again: after a failed fsync the kernel may have dropped the pages it
        could not write, and the next fsync succeeds without them (PostgreSQL's "fsyncgate"),
        leaving a hole in the WAL that stops recovery there. The memtables still hold every
        write, so a flush makes them durable without the WAL. Blocking, like ``sync``.

        Raises:
            StorageError: the flush or the fsync failed; nothing new is durable.
        """
        try:
            rocks.flush_all(self._db)
        except StorageError:
            self.sync_failures += 1
            raise
        return self.sync(target)

    def mark_synced(self, target: int) -> None:
        """Record that every write up to ``target`` is durable (trio thread only)."""
        self.syncs += 1
        if target > self.synced:
            self.synced = target
