"""Group commit for ``durability = "fsync"``: one WAL fsync releases many connections' replies.

Strategy (see ``storage.write_sequence`` for the bookkeeping): a connection that executed writes
calls ``wait_durable(engine.sequence.written)`` before sending its replies. One background
task, ``run``, sleeps until someone waits, reads the current ``written`` as its target,
fsyncs the WAL in a worker thread (``flush_wal(True)`` releases the GIL, so the trio thread
keeps accepting and executing other connections' writes meanwhile), records the target as
synced and wakes every waiter. Writes that arrive during an fsync are covered by the next
one, so under load each fsync carries every write of the previous fsync's duration.

Invariants:

* A reply to a write is sent only after an fsync that started after the write was applied.
* If an fsync fails, no waiter is told its writes are durable: ``wait_durable`` raises
  ``NotDurable`` and the handler closes the connection without sending those replies (the
  client sees an error, never an acknowledgement of something that may be lost).
* Never again, either: a write numbered up to a failed round's target is never
  acknowledged, whatever later rounds do (``_failed_upto``). After a failure the next
  rounds do not fsync again (a retried fsync can succeed without the pages the failed one
  lost, "fsyncgate"): they flush the memtables to synced SST files first
  (``WriteSequence.resync``), until one succeeds; then the server recovers by itself when
  the disk does. ``on_failure`` hears of each failure (``server.health``: /ready, the log).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from petracache.storage.errors import StorageError
from petracache.storage.write_sequence import WriteSequence

log = logging.getLogger(__name__)


class NotDurable(Exception):
    """The WAL fsync covering these writes failed; their replies must not be sent."""


class _Round:
    """One fsync round: waiters block on ``done``; ``failed`` says how it ended."""

    __slots__ = ("done", "failed")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.failed = False


class GroupCommitter:
    """Batches WAL fsyncs for every connection of the data plane.

    Args:
        commit: the engine's ``WriteSequence``.
        on_failure: called with the error when an fsync round fails (trio thread).
    """

    def __init__(
        self, commit: WriteSequence, on_failure: Callable[[str], None] | None = None
    ) -> None:
        self._commit = commit
        self._on_failure = on_failure
        self._failed_upto = -1  # the highest target of a failed round: never acknowledged
        self._suspect = False  # a round failed: resync (flush first) until one succeeds
        self._wanted = trio.Event()  # set when some task waits for a sync
        self._round = _Round()  # the next round to end; replaced when it does
        self._limiter = trio.CapacityLimiter(1)

    def mark(self) -> int:
        """The current write number; pass it to ``settle`` after executing a batch."""
        return self._commit.written

    async def settle(self, mark: int) -> int:
        """Wait until every write made since ``mark`` is durable; returns the new mark.

        Writes by other connections in between are covered too (waiting a little longer
        is harmless; replying early is not).
        """
        written = self._commit.written
        if written != mark:
            await self.wait_durable(written)
        return written

    async def wait_durable(self, target: int) -> None:
        """Return once every write numbered up to ``target`` is on stable storage.

        Raises:
            NotDurable: the fsync that should have covered ``target`` failed.
        """
        commit = self._commit
        while True:
            if target <= self._failed_upto:
                raise NotDurable("WAL fsync failed")
            if commit.synced >= target:
                return
            self._wanted.set()
            this_round = self._round
            await this_round.done.wait()
            if this_round.failed and commit.synced < target:
                raise NotDurable("WAL fsync failed")

    async def run(self) -> None:
        """The fsync loop; runs until cancelled (at shutdown, after the connections)."""
        commit = self._commit
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            target = commit.written
            failed = False
            sync = commit.resync if self._suspect else commit.sync
            try:
                await trio.to_thread.run_sync(sync, target, limiter=self._limiter)
            except StorageError as exc:
                failed = True
                self._failed_upto = max(self._failed_upto, target)
                self._suspect = True
                if self._on_failure is not None:
                    self._on_failure(str(exc))  # logs once per failure streak
                else:
                    log.warning("group commit: %s", exc)
            else:
                self._suspect = False
                commit.mark_synced(target)
            ended, self._round = self._round, _Round()
            ended.failed = failed
            ended.done.set()
            if failed:
                await trio.sleep(0.1)  # do not spin on a broken disk

    async def run_alongside(
        self,
        serve: Callable[..., Awaitable[Any]],
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run ``serve`` (the data plane, a ``nursery.start``-able task) with the fsync loop.

        The loop outlives every connection of ``serve`` (draining ones may still wait for an
        fsync) and is cancelled once ``serve`` returns. ``serve``'s start value is passed on.
        """
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.run)

            async def serve_then_stop(*, task_status: trio.TaskStatus[Any]) -> None:
                await serve(task_status=task_status)
                nursery.cancel_scope.cancel()

            task_status.started(await nursery.start(serve_then_stop))
