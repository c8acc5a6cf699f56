"""Group commit on a real RocksDB: many waiters share fsyncs; a failed fsync acknowledges nothing,
then or later (a stand-in sequence whose second fsync "succeeds", as Linux's can).

These drive ``server.durability.GroupCommitter`` with ``trio.run`` against an ``Engine`` in
``tmp_path`` (no mocks); the end-to-end proof that acknowledged writes survive is
``tests/e2e/test_crash.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
import trio

from petracache.config import StorageSettings
from petracache.rules.verbs import StoreMode
from petracache.server.durability import GroupCommitter, NotDurable
from petracache.storage.engine import Engine
from petracache.storage.errors import StorageError
from petracache.storage.write_sequence import WriteSequence

WRITERS = 50
WRITES_EACH = 20


def _engine(tmp_path: Path) -> Engine:
    return Engine(StorageSettings(db_path=str(tmp_path / "db"), durability="fsync"))


def test_many_writers_share_fsyncs(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    committer = GroupCommitter(engine.sequence)
    acknowledged: list[int] = []

    async def writer(n: int) -> None:
        for i in range(WRITES_EACH):
            mark = committer.mark()
            engine.store(StoreMode.SET, b"k%d:%d" % (n, i), 0, 0, b"v")
            mine = engine.sequence.written
            await committer.settle(mark)
            assert engine.sequence.synced >= mine  # the reply may go out: this write is synced
            acknowledged.append(n)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(committer.run)
            async with trio.open_nursery() as writers:
                for n in range(WRITERS):
                    writers.start_soon(writer, n)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert len(acknowledged) == WRITERS * WRITES_EACH
    assert engine.sequence.synced == engine.sequence.written == WRITERS * WRITES_EACH
    # Each fsync covered many writes: far fewer fsyncs than acknowledged writes.
    assert engine.sequence.syncs <= WRITES_EACH * 2 + 2
    engine.close()


def test_reads_wait_for_nothing(tmp_path: Path) -> None:
    # No hot items and no key sizes, so the first fetch's record is a RocksDB write (with
    # either, it stays in memory: tests/storage/test_hot.py).
    engine = Engine(
        StorageSettings(
            db_path=str(tmp_path / "db"),
            durability="fsync",
            hot_cache_size=0,
            exact_item_count=False,
        )
    )
    committer = GroupCommitter(engine.sequence)

    async def main() -> None:
        engine.store(StoreMode.SET, b"k", 0, 0, b"v")
        mark = committer.mark()
        engine.fetch(b"absent")
        writes = engine.sequence.writes
        assert engine.fetch(b"k") is not None  # a first fetch is recorded on disk...
        assert engine.sequence.writes == writes + 1
        assert await committer.settle(mark) == mark  # ...but the reply waits for no fsync

    trio.run(main)
    assert engine.sequence.syncs == 0
    engine.close()


def test_failed_fsync_acknowledges_nothing(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    committer = GroupCommitter(engine.sequence)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(committer.run)
            mark = committer.mark()
            engine.store(StoreMode.SET, b"k", 0, 0, b"v")
            engine.db.items.close()  # every later flush_wal fails
            with pytest.raises(NotDurable):
                await committer.settle(mark)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert engine.sequence.synced < engine.sequence.written


class FlakySequence:
    """A ``WriteSequence`` on a disk whose first fsync fails and whose next one succeeds,
    as Linux's does after dropping the pages it could not write ("fsyncgate")."""

    def __init__(self) -> None:
        self.written = self.synced = self.syncs = self.sync_failures = 0
        self.calls: list[str] = []

    def sync(self, target: int) -> int:
        self.calls.append("sync")
        if len(self.calls) == 1:
            self.sync_failures += 1
            raise StorageError("WAL sync failed: IO error: Input/output error")
        return target

    def resync(self, target: int) -> int:
        self.calls.append("resync")
        return target

    def mark_synced(self, target: int) -> None:
        self.syncs += 1
        self.synced = max(self.synced, target)


def test_a_write_a_failed_fsync_covered_is_never_acknowledged() -> None:
    sequence = FlakySequence()
    errors: list[str] = []
    committer = GroupCommitter(cast(WriteSequence, sequence), errors.append)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(committer.run)
            sequence.written = 1  # write 1: its fsync fails
            with pytest.raises(NotDurable):
                await committer.wait_durable(1)
            sequence.written = 2  # write 2, after the failure: durable once a flush is
            await committer.wait_durable(2)
            # A later success does not make write 1 durable: it may be a hole in the WAL.
            with pytest.raises(NotDurable):
                await committer.wait_durable(1)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert errors == ["WAL sync failed: IO error: Input/output error"]
    # After the failure, no second fsync: a flush to SST files first (WriteSequence.resync).
    assert sequence.calls == ["sync", "resync"]
