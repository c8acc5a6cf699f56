"""Composition root: build the engine, counters, executor, metrics and data plane; run; stop.

Order at start: watch SIGINT/SIGTERM/SIGUSR1, bind and start the admin sidecar (so /health
answers and /ready says 503 while the database opens), open RocksDB in a worker thread
(recovery can take a while), bind the data port (TCP, or a unix socket), write
``MEMCACHED_PORT_FILENAME`` if set, mark ready.

Order at stop (first SIGTERM/SIGINT, or SIGUSR1, which memcached 1.6 takes as a graceful
stop): mark not ready (/ready 503), stop accepting, let
connections finish what they already sent (replies included) for up to
``server.shutdown_grace`` seconds, cancel the rest, stop the sidecar, flush memtables and
close RocksDB, return (exit code 0). A second signal cancels the remaining connections at
once. The sidecar stops before the engine closes, so a scrape never reads a closing engine.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import trio
from prometheus_client import CollectorRegistry, ProcessCollector

from petracache.admin.routes import create_app
from petracache.admin.runner import AdminServer
from petracache.admin.token import TokenFileError, load_token
from petracache.commands.executor import Executor
from petracache.commands.no_cas import without_cas
from petracache.commands.stats import ServerInfo
from petracache.commands.watching import eviction_hook
from petracache.config import ServerSettings, Settings, StorageSettings, split_host_port
from petracache.observability.counters import Counters
from petracache.observability.metrics import PetracacheCollector, ServerFigures
from petracache.observability.request_metrics import RequestMetrics
from petracache.observability.watch import WatchLog
from petracache.protocol.connection import Execute
from petracache.rules.sizes import CAS_SIZE
from petracache.server.accept_guard import AcceptGuard
from petracache.server.auth import AuthFileError, load_auth_file
from petracache.server.durability import GroupCommitter
from petracache.server.handler import HandlerConfig
from petracache.server.health import StorageHealth
from petracache.server.housekeeping import heartbeat, scan_keys
from petracache.server.serve import DataPlane
from petracache.server.tasks import ReclaimTask, reclaim_task
from petracache.server.tls import TLSConfigError, server_context
from petracache.storage.backup import Backups, default_backup_dir
from petracache.storage.engine import Engine
from petracache.storage.layout import layout
from petracache.storage.recovery import CHILD_RECOVERY_BYTES
from petracache.storage.rocks import wal_bytes
from petracache.storage.warm_restart import HEARTBEAT_INTERVAL

log = logging.getLogger("petracache")

# Each one stops the server gracefully; a second one cuts the drain short. SIGUSR1 is
# memcached 1.6's graceful stop (its restartable-cache stop).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
# memcached writes its bound ports there ("TCP INET: <port>" lines), through <name>.lck.
PORT_FILE_ENV = "MEMCACHED_PORT_FILENAME"


class StartupError(Exception):
    """Start-up failed for a reason the operator can fix; the text names the option."""


@dataclass(slots=True)
class Readiness:
    """Plain flags the admin sidecar reads; written only by ``run``."""

    db_open: bool = False
    accepting: bool = False
    draining: bool = False
    accepts: AcceptGuard | None = None  # set while serving: accepts failing for lack of fds
    health: StorageHealth | None = None  # set once the database is open

    @property
    def ready(self) -> bool:
        starved = self.accepts is not None and self.accepts.starved
        writable = self.health is None or self.health.writable
        return self.db_open and self.accepting and not self.draining and not starved and writable

    @property
    def detail(self) -> str:
        """Why not ready, when the reason is worth a line (/ready's body): failing storage."""
        return "" if self.health is None else self.health.detail


def _start_admin(
    settings: Settings, readiness: Readiness, collector: PetracacheCollector, backups: Backups
) -> AdminServer | None:
    if not settings.metrics.enabled:
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, open fds, memory...
    host, port = split_host_port(settings.metrics.listen_addr)
    token = None
    if settings.metrics.token_file:
        try:
            token = load_token(settings.metrics.token_file)
        except TokenFileError as exc:
            raise StartupError(f"metrics.token_file: {exc}") from None
    try:
        admin = AdminServer(create_app(readiness, registry, backups, token), host, port)
    except OSError as exc:
        raise StartupError(
            f"metrics.listen_addr: cannot listen on {settings.metrics.listen_addr}: "
            f"{os.strerror(exc.errno) if exc.errno else exc}"
        ) from None
    log.info("admin listening on %s:%d", *admin.address)
    return admin


async def _watch_signals(
    signals: AsyncIterator[int], stop: trio.Event, plane: list[DataPlane]
) -> None:
    """First signal: graceful stop. Second: cancel the connections still draining."""
    async for signum in signals:
        if not stop.is_set():
            log.info("received %s, shutting down", signal.Signals(signum).name)
            stop.set()
        else:
            log.warning("received %s again: closing connections now", signal.Signals(signum).name)
            for p in plane:
                p.abort()


async def run(settings: Settings, readiness: Readiness | None = None) -> None:
    """Run the server until SIGINT, SIGTERM or SIGUSR1, then shut down gracefully.

    Raises:
        StartupError: the data or admin address cannot be bound.
        StorageError: the database cannot be opened (locked, unreadable).
    """
    readiness = readiness or Readiness()
    guard = readiness.accepts = AcceptGuard()  # trio's accept-failure log, and /ready
    guard.install()
    try:
        # The receiver stays installed until the database is closed, so a signal during the
        # close is absorbed instead of killing the process mid-flush.
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            await _run(settings, readiness, signals)
    finally:
        guard.remove()


async def _run(settings: Settings, readiness: Readiness, signals: AsyncIterator[int]) -> None:
    server_cfg = settings.server
    counters = Counters()
    guard = readiness.accepts
    if guard is not None:
        guard.counters = counters  # listen_disabled_num and its time
    requests = RequestMetrics()
    collector = PetracacheCollector(counters, requests)
    stop = trio.Event()
    planes: list[DataPlane] = []
    engine: Engine | None = None
    tls_context, users = _security(server_cfg)
    storage_cfg = settings.storage
    # memcached -C allocates items without their 8-byte CAS: each may carry 8 bytes more.
    size_limit = server_cfg.max_item_size + (0 if server_cfg.cas_enabled else CAS_SIZE)
    backups = Backups(
        storage_cfg.backup_dir or default_backup_dir(storage_cfg.db_path), storage_cfg.backup_keep
    )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, signals, stop, planes)
            admin = _start_admin(settings, readiness, collector, backups)
            if admin is not None:
                nursery.start_soon(partial(trio.to_thread.run_sync, admin.serve))
            try:
                await _recover_in_child(settings)
                engine = await trio.to_thread.run_sync(
                    lambda: Engine(settings.storage, item_size_max=size_limit)
                )
                readiness.db_open = True
                _log_verdict(engine)
                _log_layout(settings.storage)
                health = readiness.health = StorageHealth()
                health.on_failing = engine.write_directly
                nursery.start_soon(health.run, engine)
                collector.engine = engine
                collector.health = health
                backups.attach(engine)
                watch = WatchLog()  # ``watch``: lines from the commands, reclaim, connections
                reclaim = reclaim_task(engine, settings.storage)
                if reclaim is not None:
                    reclaim.reclaimer.on_evict = eviction_hook(watch, server_cfg.max_item_size)
                    nursery.start_soon(reclaim.run)  # cancelled with the nursery, before close
                nursery.start_soon(heartbeat, engine, HEARTBEAT_INTERVAL, health.failed)
                nursery.start_soon(scan_keys, engine)
                info = ServerInfo(
                    max_connections=server_cfg.max_connections,
                    item_size_max=server_cfg.max_item_size,
                    auth_enabled=users is not None,
                    flush_enabled=not server_cfg.disable_flush_all,
                    shutdown_enabled=server_cfg.enable_shutdown,
                    tls_enabled=tls_context is not None,
                    idle_timeout=server_cfg.idle_timeout,
                    request_shutdown=partial(_shutdown_command, stop),
                    set_disk_bound=None if reclaim is None else reclaim.reclaimer.set_bound,
                    accepting=partial(_accepting, readiness),
                    domain_socket=server_cfg.unix_socket,
                    umask=server_cfg.unix_mask,
                    reqs_per_event=server_cfg.reqs_per_event,
                    cas_enabled=server_cfg.cas_enabled,
                    binding_protocol=server_cfg.protocol,
                    sasl_enabled=server_cfg.sasl,
                    storage_health=partial(_health_stats, health),
                )
                executor = Executor(engine, counters, info, watch, health.failed)
                execute: Execute = executor.execute
                if not server_cfg.cas_enabled:
                    execute = without_cas(execute, server_cfg.max_item_size)  # memcached -C
                # The data plane commits each pass's writes at once, before its replies.
                engine.defer_commits()
                fsync = settings.storage.durability == "fsync"
                committer = GroupCommitter(engine.sequence, health.failed) if fsync else None
                collector.server = _figures(settings, info, reclaim)
                host, port = split_host_port(server_cfg.listen_addr)
                info.tcp_port = port
                plane = DataPlane(
                    host,
                    port,
                    # Nobody can read the per-request figures without the sidecar: skip them.
                    requests.instrument(execute) if settings.metrics.enabled else execute,
                    counters,
                    HandlerConfig(
                        item_size_max=size_limit,
                        read_size=server_cfg.read_buffer_size,
                        max_connections=server_cfg.max_connections,
                        commit=engine.commit,
                        idle_timeout=server_cfg.idle_timeout,
                        durability=committer,
                        write_size=server_cfg.write_buffer_size,
                        tls=tls_context,
                        auth=users,
                        watch=watch,
                        protocol=server_cfg.protocol,
                        reqs_per_event=server_cfg.reqs_per_event,
                    ),
                    shutdown_grace=server_cfg.shutdown_grace,
                    unix_path=server_cfg.unix_socket,
                    unix_mode=server_cfg.unix_mode,
                )
                planes.append(plane)
                info.connections = plane.connection_rows
                if not stop.is_set():
                    await _serve(plane, committer, readiness, stop, info)
            finally:
                readiness.draining = True
                readiness.accepting = False
                collector.engine = None
                if admin is not None:
                    admin.stop()  # the nursery waits for its thread to return
                nursery.cancel_scope.cancel()  # the signal watcher
    finally:
        if engine is not None:
            await trio.to_thread.run_sync(backups.detach)  # waits for a running backup
            await trio.to_thread.run_sync(engine.close)
            readiness.db_open = False
            log.info("database closed; bye")


def _figures(settings: Settings, info: ServerInfo, reclaim: ReclaimTask | None) -> ServerFigures:
    """What /metrics reports about the server's limits and background work."""
    bound = settings.storage.max_disk_bytes
    reclaimer = reclaim.reclaimer if reclaim is not None else None
    return ServerFigures(
        max_connections=settings.server.max_connections,
        disk_bound=lambda: (info.disk_bound or bound) if bound else 0,
        reclaim_lag=(lambda: reclaimer.lag) if reclaimer is not None else _zero,
    )


def _zero() -> int:
    return 0


def _accepting(readiness: Readiness) -> bool:
    """``accepting_conns``: listening, and accepts not failing for lack of descriptors."""
    guard = readiness.accepts
    return readiness.accepting and not (guard is not None and guard.starved)


def write_port_file(path: str, addresses: list[tuple[str, int]]) -> None:
    """memcached's ``MEMCACHED_PORT_FILENAME``: one ``TCP INET: <port>`` (``TCP INET6:``
    for IPv6) line per bound address, written to ``<path>.lck`` (appended, as memcached
    opens it) and renamed to ``path``, so a reader never sees a partial file. A failure is
    logged, and the server goes on, as memcached does."""
    temp = f"{path}.lck"
    try:
        with open(temp, "a", encoding="ascii") as out:
            for host, port in addresses:
                family = "INET6" if ":" in host else "INET"
                out.write(f"TCP {family}: {port}\n")
        os.rename(temp, path)
    except OSError as exc:
        log.warning("%s: cannot write %s: %s", PORT_FILE_ENV, temp, exc.strerror or exc)


def _health_stats(health: StorageHealth) -> list[tuple[str, int]]:
    """``stats`` fields of the storage health (``server.health``)."""
    return [
        ("storage_writable", int(health.writable)),
        ("storage_needs_restart", int(health.needs_restart)),
        ("storage_failures", health.failures),
    ]


def _log_verdict(engine: Engine) -> None:
    """Say whether the stored items are served (storage.max_warm_downtime) and why."""
    verdict = engine.verdict
    if verdict.cold:
        log.warning("cold start: %s", verdict.reason)
    else:
        log.info("warm start: %s", verdict.reason)


def _log_layout(storage: StorageSettings) -> None:
    """Say which RocksDB sizes the disk bound decided, and warn of a choice that fights it."""
    sizes = layout(storage)
    if sizes.derived:
        log.info("sized from storage.max_disk_bytes: %s", ", ".join(sizes.derived))
    for warning in sizes.warnings:
        log.warning("%s", warning)


def _shutdown_command(stop: trio.Event, graceful: bool) -> None:
    """The ``shutdown`` command (enabled by -A): the same graceful stop as SIGTERM."""
    if not stop.is_set():
        log.info("shutdown%s command received, shutting down", " graceful" if graceful else "")
        stop.set()


async def _recover_in_child(settings: Settings) -> None:
    """Replay a large WAL in a child process first (see ``recovery.py``): the GIL stays free."""
    pending = wal_bytes(settings.storage.db_path)
    if pending < CHILD_RECOVERY_BYTES:
        return
    log.info("replaying %d bytes of write-ahead log in a child process", pending)
    done = await trio.run_process(
        [sys.executable, "-m", "petracache.storage.recovery"],
        stdin=settings.storage.model_dump_json().encode(),
        capture_stderr=True,
        check=False,
    )
    if done.returncode != 0:
        last = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        log.warning("child recovery failed (%s); opening directly", last[0])


def _security(
    server_cfg: ServerSettings,
) -> tuple[ssl.SSLContext | None, dict[bytes, bytes] | None]:
    """The TLS context and the users of the auth file (each None when off), checked up front."""
    try:
        context = server_context(
            server_cfg.tls_cert_file, server_cfg.tls_key_file, server_cfg.tls_ca_file
        )
        users = load_auth_file(server_cfg.auth_file) if server_cfg.auth_file else None
    except TLSConfigError as exc:
        raise StartupError(str(exc)) from None
    except AuthFileError as exc:
        raise StartupError(f"server.auth_file: {exc}") from None
    return context, users


def _freeze_startup_objects() -> None:
    """Move everything start-up created (modules, classes, functions, the admin app: about
    50,000 objects) out of the garbage collector's reach.

    Why: each full collection walks every tracked object, and almost all of them are these,
    which live until exit. Frozen, a full collection walks only what the connections
    created, so the pause every client sees at once stays a few milliseconds with 1,000
    connections (docs/benchmarks.md, workload 3). Frozen objects are never collected; start-up
    leaves no garbage worth keeping a collector pass for.
    """
    gc.collect()
    gc.freeze()


async def _serve(
    plane: DataPlane,
    committer: GroupCommitter | None,
    readiness: Readiness,
    stop: trio.Event,
    info: ServerInfo,
) -> None:
    """Serve the data port until ``stop``; return once connections have drained."""
    serve = plane.run if committer is None else partial(committer.run_alongside, plane.run)
    async with trio.open_nursery() as nursery:
        try:
            addresses = await nursery.start(serve)
        except OSError as exc:
            option = "server.unix_socket" if plane.unix_path else "server.listen_addr"
            raise StartupError(
                f"{option}: cannot listen on {plane.address_text}: {exc.strerror or exc}"
            ) from None
        readiness.accepting = True
        info.listen[:] = addresses
        if plane.unix_path:
            log.info("petracache listening on unix:%s", plane.unix_path)
        for addr_host, addr_port in addresses:
            log.info("petracache listening on %s:%d", addr_host, addr_port)
        port_file = os.environ.get(PORT_FILE_ENV)
        if port_file and not plane.unix_path:  # memcached writes none for a unix socket
            write_port_file(port_file, addresses)
        _freeze_startup_objects()
        await stop.wait()
        readiness.draining = True
        plane.stop()
