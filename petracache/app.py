"""Composition root: build the engine, counters, executor and data plane, run, shut down.

Order at start: open RocksDB (in a worker thread: recovery can take a while), bind the data
port, mark ready. Order at stop (SIGTERM/SIGINT): mark not ready, stop accepting, drain
connections, flush memtables and close RocksDB, return (exit code 0).
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from functools import partial

import trio

from petracache.config import Settings, split_host_port
from petracache.counters import Counters
from petracache.executor import Executor
from petracache.server.durability import GroupCommitter
from petracache.server.handler import HandlerConfig
from petracache.server.serve import DataPlane
from petracache.stats import ServerInfo
from petracache.storage.engine import Engine

log = logging.getLogger("petracache")


@dataclass(slots=True)
class Readiness:
    """Plain flags the admin sidecar reads; written only by ``run``."""

    db_open: bool = False
    accepting: bool = False
    draining: bool = False

    @property
    def ready(self) -> bool:
        return self.db_open and self.accepting and not self.draining


async def run(settings: Settings, readiness: Readiness | None = None) -> None:
    """Run the server until SIGINT or SIGTERM."""
    readiness = readiness or Readiness()
    server_cfg = settings.server
    engine = await trio.to_thread.run_sync(
        lambda: Engine(settings.storage, item_size_max=server_cfg.max_item_size)
    )
    readiness.db_open = True
    try:
        counters = Counters()
        info = ServerInfo(
            max_connections=server_cfg.max_connections, item_size_max=server_cfg.max_item_size
        )
        executor = Executor(engine, counters, info)
        host, port = split_host_port(server_cfg.listen_addr)
        fsync = settings.storage.durability == "fsync"
        committer = GroupCommitter(engine.commit) if fsync else None
        plane = DataPlane(
            host,
            port,
            executor.execute,
            counters,
            HandlerConfig(
                item_size_max=server_cfg.max_item_size,
                read_size=server_cfg.read_buffer_size,
                max_connections=server_cfg.max_connections,
                idle_timeout=server_cfg.idle_timeout,
                durability=committer,
            ),
            shutdown_grace=server_cfg.shutdown_grace,
        )
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                serve = (
                    plane.run if committer is None else partial(committer.run_alongside, plane.run)
                )
                addresses = await nursery.start(serve)
                readiness.accepting = True
                for addr_host, addr_port in addresses:
                    log.info("petracache listening on %s:%d", addr_host, addr_port)
                async for signum in signals:
                    log.info("received %s, shutting down", signal.Signals(signum).name)
                    break
                readiness.draining = True
                plane.stop()
    finally:
        readiness.accepting = False
        await trio.to_thread.run_sync(engine.close)
        readiness.db_open = False
        log.info("database closed; bye")
