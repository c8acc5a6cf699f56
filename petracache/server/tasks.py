"""The background reclaim loop: drives ``storage.reclaim.Reclaimer`` from the trio thread.

Strategy: each ``Reclaimer.step()`` is synchronous and bounded (``BATCH`` items, a few
milliseconds), so it runs on the trio thread like a client command and cannot interleave
with one; that is what makes the reclaimer's check-and-delete race-free (see
``storage.reclaim``).
Between steps the loop yields. While there is a backlog it sleeps long enough to keep the
reclaimer to the share of the thread the backlog earns (``Reclaimer.share``: a quarter for a
fresh expiry backlog, growing with the age of its oldest dead item up to all of it); at full
share it still yields (``trio.lowlevel.checkpoint()``), so every ready connection runs
between two steps. With nothing to do it sleeps the configured interval
(``POLL_WITH_BOUND`` when a disk bound is set, so eviction reacts to growth quickly).

Compactions and memtable flushes are the only blocking work. They run in a worker thread,
one at a time (``CapacityLimiter(1)``), in a sibling task, so reaping continues while RocksDB
compacts. Stopping cancels the loop; a running job is waited for (``to_thread.run_sync`` is
not abandoned), so the engine is never closed under it.
"""

from __future__ import annotations

import logging
import time

import trio

from petracache.config import StorageSettings
from petracache.storage.engine import Engine
from petracache.storage.errors import StorageError
from petracache.storage.reclaim.jobs import Job
from petracache.storage.reclaim.reclaimer import Reclaimer

log = logging.getLogger(__name__)

POLL_WITH_BOUND = 0.05  # seconds between disk-usage checks when max_disk_bytes is set
ERROR_BACKOFF = 1.0  # seconds to wait after a storage error before trying again


class ReclaimTask:
    """Runs reclaim steps and compactions until ``stop()``.

    Args:
        reclaimer: the storage-side logic.
        interval: seconds to sleep when there is no backlog (``[storage] reaper_interval``:
            the settings keep their published names, ``reaper_interval`` and
            ``enable_ttl_compaction``; the code calls the work "reclaim").
    """

    def __init__(self, reclaimer: Reclaimer, interval: float) -> None:
        self._reclaimer = reclaimer
        self._idle = min(interval, POLL_WITH_BOUND) if reclaimer.eviction_enabled else interval
        self._stop = trio.Event()
        self._limiter = trio.CapacityLimiter(1)
        self._compacting = False

    @property
    def reclaimer(self) -> Reclaimer:
        return self._reclaimer

    def stop(self) -> None:
        """End the loop (safe to call more than once)."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._loop, nursery)
            task_status.started()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    async def _loop(self, nursery: trio.Nursery) -> None:
        while True:
            started = time.perf_counter()
            try:
                more = self._reclaimer.step()
            except StorageError as exc:
                log.warning("background reclaim: %s", exc)
                await trio.sleep(ERROR_BACKOFF)
                continue
            except Exception:  # a bug here must not take the data plane down with it
                log.exception("background reclaim step failed")
                await trio.sleep(ERROR_BACKOFF)
                continue
            if not self._compacting:
                job = self._reclaimer.take_job()
                if job is not None:
                    self._compacting = True
                    nursery.start_soon(self._run_job, job)
            if not more:
                await trio.sleep(self._idle)
            elif self._reclaimer.share >= 1.0:
                await trio.lowlevel.checkpoint()  # every ready connection runs first
            else:
                spent = time.perf_counter() - started
                await trio.sleep(spent * (1.0 / self._reclaimer.share - 1.0))

    async def _run_job(self, job: Job) -> None:
        freed = 0
        try:
            freed = await trio.to_thread.run_sync(
                self._reclaimer.run_job, job, limiter=self._limiter
            )
        except StorageError as exc:
            log.warning("background %s: %s", type(job).__name__.lower(), exc)
        finally:
            self._reclaimer.job_done(job, freed)
            self._compacting = False


def reclaim_task(engine: Engine, settings: StorageSettings) -> ReclaimTask | None:
    """The background task ``[storage]`` asks for, or None (reclaim and eviction both off)."""
    if not (settings.enable_ttl_compaction or settings.max_disk_bytes):
        return None
    reclaimer = Reclaimer(
        engine, max_disk_bytes=settings.max_disk_bytes, eviction=settings.eviction
    )
    return ReclaimTask(reclaimer, settings.reaper_interval)
