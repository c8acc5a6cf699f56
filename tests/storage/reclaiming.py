"""Driving the background reclaimer synchronously in a test: an engine set up for it, and
loops that run its steps and the flushes and compactions they ask for until it is done.

The trio loop in ``server.tasks`` only schedules these steps; here the test calls them, so
every interleaving of client writes and reclaim steps is chosen by the test, not by timing.
Shared by ``test_reclaim``, ``test_eviction`` and ``test_hot``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from petracache.storage.engine import Engine
from petracache.storage.reclaim.reclaimer import Reclaimer
from tests.storage.engines import Clock, open_engine

VALUE = b"v" * 1000


def make_engine(path: Path, clock: Clock, **options: Any) -> Engine:
    """``open_engine`` with TTL compaction on and 256 KiB SST files (many small files, so
    compactions of a key range have something to drop)."""
    defaults: dict[str, Any] = {"enable_ttl_compaction": True}
    return open_engine(path, clock, target_file_size_base=256 * 1024, **(defaults | options))


def drain(reclaimer: Reclaimer, max_steps: int = 10_000) -> None:
    """Run steps and the compactions they ask for until nothing is left to do."""
    for _ in range(max_steps):
        more = reclaimer.step()
        job = reclaimer.take_job()
        while job is not None:
            reclaimer.job_done(job, reclaimer.run_job(job))
            job = reclaimer.take_job()
        if not more:
            return
    raise AssertionError("reclaimer never ran out of work")


def settle(reclaimer: Reclaimer, max_rounds: int = 50) -> None:
    """Drain round after round (one round evicts at most ``MAX_ROUND`` of the bound, then
    compacts and measures again) until a round evicts nothing more."""
    counters = reclaimer.counters
    for _ in range(max_rounds):
        before = counters.evictions
        drain(reclaimer)
        if counters.evictions == before:
            return
    raise AssertionError("eviction never settled")


def keys_of(family: Any) -> list[bytes]:
    """Every key of a rocksdict family (raw-mode Rdicts iterate only through ``keys()``)."""
    keys = family.keys()
    return [bytes(k) for k in keys]
