"""Liveness heartbeats and the start-up item recount, on the trio thread.

* Every ``HEARTBEAT_INTERVAL`` seconds the engine records that the server is alive
  (``storage.warm_restart``): after a kill, the next start measures its downtime from the last
  heartbeat. A failed heartbeat (a full disk) is logged once per failure streak and
  retried at the next interval: it only makes a later downtime look longer.
* After every start, every stored key is walked once in bounded steps
  (``storage.item_counts.KeyScan``), yielding to every ready connection between steps, like
  the reclaimer: it fills the key sizes that let a set keep the counts exact without a read,
  and, after a start that could not trust the previous counts (a crash, a restored backup),
  rebuilds the exact item count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from petracache.storage.engine import Engine
from petracache.storage.errors import StorageError
from petracache.storage.warm_restart import HEARTBEAT_INTERVAL

log = logging.getLogger(__name__)


async def heartbeat(
    engine: Engine,
    interval: float = HEARTBEAT_INTERVAL,
    on_failure: Callable[[str], None] | None = None,
) -> None:
    """Record liveness every ``interval`` seconds until cancelled; ``on_failure`` hears of
    each failed heartbeat (``server.health``: a write failed, even with no client writing)."""
    failing = False
    while True:
        await trio.sleep(interval)
        try:
            engine.heartbeat()
        except StorageError as exc:
            if on_failure is not None:
                on_failure(str(exc))
            if not failing:
                log.warning("liveness heartbeat failed (retrying every %gs): %s", interval, exc)
            failing = True
        else:
            if failing:
                log.info("liveness heartbeat recorded again")
            failing = False


async def scan_keys(engine: Engine) -> None:
    """Walk every stored key once after the start: the key sizes that keep the counts exact
    without reads, and the count itself if the start could not restore it."""
    job = engine.scan_keys()
    if job is None:
        return
    started = time.monotonic()
    recount = not engine.item_counts.exact
    if recount:
        log.info("counting the stored items (the previous run did not stop cleanly)")
    try:
        while job.step():
            await trio.lowlevel.checkpoint()
    except Exception as exc:  # rocksdict raises bare Exception; the count stays an estimate
        log.warning("the key scan failed; sets of unseen keys read their old size: %s", exc)
        return
    log.info(
        "%s %d items (%d bytes) in %.1fs",
        "counted" if recount else "scanned",
        engine.item_counts.items,
        engine.item_counts.bytes,
        time.monotonic() - started,
    )
