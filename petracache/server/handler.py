"""One connection's task: limits, TLS, authentication, the drain; the reactor does the rest.

A plain TCP connection (no TLS, authenticated if auth is on, not in fsync mode) is *parked*
in the reactor (``server.reactor``), which serves its requests without waking this task.
The task takes the connection back when the reactor says it must wait or end: it finishes a
reply the kernel did not take, closes it, or drains it at shutdown.

Served by the task itself (TLS, before authentication, fsync mode, the drain), the loop is
h11's trio example: ``receive_some`` -> ``Exchange.answer`` (every complete request,
pipelining included) -> one ``send_all`` with every reply of that read. Replies are written
early when they pass ``server.write_buffer_size``, and no more input is parsed until they
are sent: a client that pipelines requests without reading replies is throttled by TCP
back-pressure instead of growing our memory. Both paths run the same ``Exchange``
(``server.exchange``: counting, authentication, parsing, what to do next) and keep only
their I/O, so memcached's flush points and the counters hold on both.

Error handling: protocol errors are answered and parsing continues; storage errors were
already turned into ``SERVER_ERROR`` by the executor; a broken socket ends the handler; any
other exception is logged and closes only this connection (an exception escaping a handler
would crash ``serve_listeners``).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from petracache.observability.counters import Counters
from petracache.observability.watch import WatchLog, WatchStart
from petracache.protocol.connection import REQS_PER_EVENT
from petracache.protocol.detect import ClientConnection
from petracache.protocol.requests import Request
from petracache.protocol.responses import Response
from petracache.server import tls
from petracache.server.auth import AuthGate
from petracache.server.durability import GroupCommitter, NotDurable
from petracache.server.exchange import CLOSE, READ, STREAM, Exchange
from petracache.server.fastio import FastSocketStream, fast_stream
from petracache.server.reactor import Reactor
from petracache.server.reactor_pass import Reason
from petracache.server.watch import ConnectionTags, serve_watcher
from petracache.storage.errors import StorageError

log = logging.getLogger(__name__)

WRITE_HIGH_WATER = 256 * 1024
TOO_MANY_CONNECTIONS = b"ERROR Too many open connections\r\n"  # memcached.c, conn_new
# While draining, how long a read waits for bytes already on their way (loopback and LAN
# round trips are well under this); a client still sending after it is cut off.
DRAIN_LINGER = 0.05
INF = float("inf")


@dataclass(slots=True)
class HandlerConfig:
    """What a connection handler needs to know."""

    item_size_max: int
    read_size: int
    max_connections: int
    commit: Callable[[], None]  # writes the pending writes before their replies (Engine.commit)
    idle_timeout: float = 0.0
    durability: GroupCommitter | None = None  # set in fsync mode: replies wait for the fsync
    write_size: int = WRITE_HIGH_WATER  # flush queued replies past this (server.write_buffer_size)
    tls: ssl.SSLContext | None = None  # server.tls_*: wrap every connection in TLS
    auth: dict[bytes, bytes] | None = None  # server.auth_file: users who may connect
    reactor: Reactor | None = None  # serves plain TCP connections (None: a task each)
    watch: WatchLog | None = None  # ``watch``: connection events, and watchers to serve
    protocol: str = "auto"  # server.protocol: auto, ascii or binary (memcached -B, -S)
    reqs_per_event: int = REQS_PER_EVENT  # server.reqs_per_event (memcached -R)


@dataclass(eq=False, slots=True)
class ConnView:
    """What ``stats conns`` shows of a connection: its socket and when it last sent input
    (trio time; the reactor keeps its own for the connections it serves); and its exchange,
    which ``watch`` retags (``server.watch.ConnectionTags``)."""

    sock: trio.socket.SocketType | None
    last_active: float
    exchange: Exchange | None = None

    @property
    def fd(self) -> int:
        return -1 if self.sock is None else self.sock.fileno()


@dataclass(slots=True)
class ConnectionTracker:
    """Live connections, so shutdown can stop them reading and wait for them to finish,
    and ``stats conns`` can list them."""

    views: set[ConnView] = field(default_factory=set)
    idle_scopes: set[trio.CancelScope] = field(default_factory=set)
    reactor: Reactor | None = None
    tags: ConnectionTags | None = None  # while someone watches: which connection runs
    draining: bool = False
    active: int = 0
    all_closed: trio.Event = field(default_factory=trio.Event)
    # The descriptor of the connection whose requests its own task is answering right now
    # (-1: none; the reactor keeps its own): ``stats conns`` shows it in conn_parse_cmd.
    serving: int = -1

    def begin_drain(self) -> None:
        """Stop every connection at its next read; in-flight batches still finish."""
        self.draining = True
        if self.reactor is not None:
            self.reactor.drain()
        for scope in self.idle_scopes:
            scope.cancel()
        if self.active == 0:
            self.all_closed.set()

    def connection_closed(self) -> None:
        """Count a connection out; the last one out during a drain ends the wait."""
        self.active -= 1
        if self.draining and self.active == 0:
            self.all_closed.set()


async def handle_connection(
    stream: trio.abc.Stream,
    execute: Callable[[Request], Response],
    counters: Counters,
    config: HandlerConfig,
    tracker: ConnectionTracker,
) -> None:
    """Serve one client until it disconnects, quits, or the server drains."""
    view = ConnView(getattr(stream, "socket", None), trio.current_time())
    stream = tls.wrap(stream, config.tls)
    counters.total_connections += 1
    if counters.curr_connections >= config.max_connections or tracker.draining:
        counters.rejected_connections += 1
        with trio.move_on_after(1):
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(TOO_MANY_CONNECTIONS)
        await trio.aclose_forcefully(stream)
        return
    counters.curr_connections += 1
    tracker.active += 1
    tracker.views.add(view)
    peer = _peer(view) if config.watch is not None else _NO_PEER
    if config.watch is not None:
        config.watch.conn_new(*peer, view.fd)
    reason = b"error"  # memcached's close reason when nothing better is known
    try:
        reason = await _serve(stream, execute, counters, config, tracker, view)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except NotDurable:
        # server.health logged the failure once; this is one connection of many.
        log.debug("WAL fsync failed; closing a connection without acknowledging its writes")
    except Exception:
        log.exception("connection handler failed; closing this connection")
    finally:
        counters.curr_connections -= 1
        tracker.views.discard(view)
        tracker.connection_closed()
        if config.watch is not None:
            config.watch.conn_close(*peer, reason, view.fd)
        await trio.aclose_forcefully(stream)


_NO_PEER = ("", 0, b"tcp")


def _peer(view: ConnView) -> tuple[str, int, bytes]:
    """(address, port, transport) as memcached's connection events print them."""
    sock = view.sock
    if sock is None:
        return _NO_PEER
    if sock.family == getattr(socket, "AF_UNIX", None):
        return ("unix", 0, b"local")
    try:
        address = sock.getpeername()
    except OSError:
        return _NO_PEER
    return (str(address[0]), int(address[1]), b"tcp")


async def _serve(
    stream: trio.abc.Stream,
    execute: Callable[[Request], Response],
    counters: Counters,
    config: HandlerConfig,
    tracker: ConnectionTracker,
    view: ConnView,
) -> bytes:
    """Serve the connection until it must close; returns memcached's close reason."""
    session = _Session(fast_stream(stream), execute, counters, config, view, tracker)
    while True:
        if session.parkable(tracker):
            if not await session.park():
                break
        elif not await _serve_reads(session, tracker):
            break
    if session.reason:
        return session.reason
    return b"shutdown" if tracker.draining else b"normal"


class _Session:
    """One connection's state, shared by its two ways of being served."""

    __slots__ = ("config", "exchange", "fd", "reactor", "reason", "stream", "tracker", "view")

    def __init__(
        self,
        stream: trio.abc.Stream,
        execute: Callable[[Request], Response],
        counters: Counters,
        config: HandlerConfig,
        view: ConnView,
        tracker: ConnectionTracker,
    ) -> None:
        self.view = view
        self.tracker = tracker
        self.stream = stream  # plain TCP: fewer syscalls and scheduler passes (fastio)
        self.config = config
        self.tracker = tracker
        self.reason = b""  # memcached's close reason, once one is known (watch connevents)
        # Text or binary, decided by the first byte unless server.protocol fixes it (binary
        # runs SASL itself when auth is on; the text gate is only for text connections).
        protocol = config.protocol
        conn = ClientConnection(config.item_size_max, config.auth, protocol, config.reqs_per_event)
        gate = None
        if config.auth is not None and protocol != "binary":
            gate = AuthGate(config.auth, counters, binary=protocol == "auto")
        if tracker.tags is not None:  # someone watches: this connection's requests say so
            execute = tracker.tags.execute_for(view.fd)
        self.exchange = view.exchange = Exchange(conn, execute, counters, config.write_size, gate)
        # The reactor serves plain TCP connections whose replies need not wait for an fsync.
        self.reactor, self.fd = None, -1
        if isinstance(stream, FastSocketStream):
            self.reactor, self.fd = config.reactor, stream.fileno()

    def parkable(self, tracker: ConnectionTracker) -> bool:
        """Whether the reactor may serve this connection now."""
        return self.reactor is not None and self.exchange.authenticated and not tracker.draining

    async def park(self) -> bool:
        """Let the reactor serve the connection until it hands it back; False: close it."""
        assert self.reactor is not None
        handback = await self.reactor.park(self.fd, self.exchange)
        reason = handback.reason
        if reason is Reason.WRITE:
            await self.stream.send_all(handback.data)  # waits for the client to read
            return not handback.close and await self.respond(None)
        if reason is Reason.IDLE:
            self.reason = b"idle_timeout"
            self.exchange.counters.idle_kicks += 1
        return reason is Reason.DRAIN  # CLOSE and IDLE end the connection

    async def respond(self, data: bytes | bytearray | None) -> bool:
        """Answer one read (None: what the parser still holds); False when it must close.

        Writes the replies batch by batch (``server.exchange``), each before more input is
        parsed (back-pressure), and each once the writes it answers are committed
        (``Engine.commit``; in fsync mode, once they are durable too). A failed commit sends
        none of the batch: the connection closes.
        """
        if data is not None:
            self.view.last_active = trio.current_time()
        exchange = self.exchange
        config = self.config
        durability = config.durability
        mark = durability.mark() if durability is not None else 0
        if data is not None:
            out = self._answer(data)
        elif exchange.then == STREAM:  # handed back by the reactor to stream: see below
            out = b""
        else:
            out = self._answer(None)
        while True:
            try:
                config.commit()
            except StorageError as exc:
                log.warning("writes failed, closing the connection they answered: %s", exc)
                return False
            if out:
                if durability is not None:
                    mark = await durability.settle(mark)
                await self.stream.send_all(out)
            then = exchange.then
            if then == READ:
                return True
            if then == CLOSE:
                return False
            if then == STREAM:
                start = self._watch_start()
                if start is not None:  # ``watch``: the connection becomes a watcher
                    assert self.config.watch is not None
                    scopes = self.tracker.idle_scopes
                    if not await serve_watcher(self.stream, start, self.config.watch, scopes):
                        return False
                await trio.lowlevel.checkpoint()  # a metadump: other clients run between chunks
            out = self._answer(None)

    def _answer(self, data: bytes | bytearray | None) -> bytes:
        """``Exchange.answer`` (or ``replies`` for None), marked as this connection's turn
        for ``stats conns``; no checkpoint inside, so the mark cannot leak to another."""
        tracker = self.tracker
        view = self.view
        tracker.serving = view.sock.fileno() if view.sock is not None else -1
        try:
            return self.exchange.replies() if data is None else self.exchange.answer(data)
        finally:
            tracker.serving = -1

    def _watch_start(self) -> WatchStart | None:
        """The ``watch`` this connection's streamed reply is, if it is one."""
        stream = self.exchange.conn.stream
        return stream if type(stream) is WatchStart else None


async def _serve_reads(session: _Session, tracker: ConnectionTracker) -> bool:
    """Serve the connection from its own task until it closes (False) or can be parked.

    While draining, only read what the client already sent (DRAIN_LINGER), so every request
    in flight when the shutdown began is answered before the close. One cancel scope serves
    read after read until it is spent: entering a fresh scope per read is a cost paid per
    request (docs/benchmarks.md). It is armed (deadline, idle_scopes) only while a read
    waits, so the drain and the timeouts interrupt reads, never a batch being answered.
    """
    draining = tracker.draining
    wait = DRAIN_LINGER if draining else session.config.idle_timeout or INF
    data = b""
    with trio.CancelScope() as scope:
        while tracker.draining == draining:
            if wait != INF:
                scope.deadline = trio.current_time() + wait
            if not draining:
                tracker.idle_scopes.add(scope)
            try:
                data = await session.stream.receive_some(session.config.read_size)  # type: ignore[assignment]
            except (ConnectionError, trio.BrokenResourceError):
                data = b""
            finally:
                tracker.idle_scopes.discard(scope)
            if not data:
                session.reason = b"normal"
                return False  # end of input
            if scope.cancel_called:
                break  # cancelled as the read completed: answer it outside the spent scope
            if wait != INF:
                scope.deadline = INF  # a slow batch is not an idle client
            if not await session.respond(data):
                return False
            data = b""
            if not draining and session.parkable(tracker):
                return True  # authenticated: the reactor serves it from now on
    if data:
        return await session.respond(data)
    if scope.cancelled_caught:
        # The drain interrupted this read: take one last look. Otherwise the idle timeout,
        # or nothing more arrived while draining.
        if not draining and not tracker.draining:
            session.reason = b"idle_timeout"
            session.exchange.counters.idle_kicks += 1
        return not draining and tracker.draining
    return True  # the drain began while a batch was being answered: go on as a drainer
