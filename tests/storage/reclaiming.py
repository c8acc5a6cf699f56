"""Driving the background reclaimer synchronously in a test: an engine set up for it, and
loops that run its steps and the flushes and compactions they ask for until it is done.

The trio loop in ``server.tasks`` only schedules these steps; here the test calls them, so
every interleaving of client writes and reclaim steps is chosen by the test, not by timing.
Shared by ``test_reclaim``, ``test_eviction``, ``test_eviction_s3fifo`` and ``test_hot``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from petracache.rules.verbs import StoreMode
from petracache.storage.engine import Engine
from petracache.storage.reclaim.reclaimer import Reclaimer
from tests.storage.engines import Clock, open_engine

VALUE = b"v" * 1000
BOUND = 2 * 1024 * 1024  # the eviction tests' max_disk_bytes


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


@contextmanager
def bounded(tmp_path: Path, clock: Clock, eviction: str) -> Iterator[tuple[Engine, Reclaimer]]:
    """An engine under ``BOUND`` and its reclaimer with ``eviction``; closed afterwards."""
    engine = make_engine(tmp_path / "db", clock, max_disk_bytes=BOUND, eviction=eviction)
    try:
        yield engine, Reclaimer(engine, max_disk_bytes=BOUND, eviction=eviction)
    finally:
        engine.close()


def fill_until(
    engine: Engine,
    reclaimer: Reclaimer,
    prefix: bytes,
    done: Callable[[], bool],
    read: bytes = b"",
    *,
    read_each: bool = False,
) -> None:
    """Write 1 KB items, letting eviction run every 20 writes (and reading ``read``, if
    given), until ``done()``. ``read_each``: read every item once right after its write
    (so S3-FIFO promotes it, and the main queue fills)."""
    for i in range(5000):
        key = b"%b:%d" % (prefix, i)
        engine.store(StoreMode.SET, key, 0, 0, VALUE)
        if read_each:
            engine.fetch(key)
        if i % 20 == 19:
            drain(reclaimer)
            if read:
                engine.fetch(read)
            if done():
                return
    raise AssertionError("eviction never got there")


def gone(engine: Engine, key: bytes) -> Callable[[], bool]:
    return lambda: engine.stored(key)[0] is None
