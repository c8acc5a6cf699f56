"""The accept loop and graceful drain.

Shutdown order (style guide section 4): stop accepting (cancel the accept scope, which closes
the listeners), tell live connections to drain (each one executes and answers what it has
already received, including what is still waiting in its socket buffer, then closes), wait
up to the grace period, then cancel whatever is left.

The data port is TCP (``server.listen_addr``) or, as memcached's ``-s``, a unix-domain
socket (``server.unix_socket``) and then only that. A unix connection is a plain socket
stream like a TCP one, so it is served the same way (parked in the reactor). As memcached
does, a socket file left by an earlier run is replaced at start (unless a server still
answers on it: then the start fails); unlike memcached, the file is removed again at exit
(if it is still ours).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Callable
from functools import partial

import trio

from petracache.observability.counters import Counters
from petracache.protocol.requests import Request
from petracache.protocol.responses import Response
from petracache.server.conns import conns_rows
from petracache.server.handler import ConnectionTracker, HandlerConfig, handle_connection
from petracache.server.reactor import Reactor
from petracache.server.watch import ConnectionTags

log = logging.getLogger(__name__)

BACKLOG = 4096  # listen backlog, TCP and unix (memcached's -b defaults to 1024)


class DataPlane:
    """Listens on the data port; one handler task per connection, and the reactor task
    that serves plain TCP connections while their tasks sleep (``server.reactor``)."""

    def __init__(
        self,
        host: str,
        port: int,
        execute: Callable[[Request], Response],
        counters: Counters,
        config: HandlerConfig,
        shutdown_grace: float,
        *,
        unix_path: str = "",
        unix_mode: int = 0o700,
    ) -> None:
        self._host = host
        self._port = port
        self.unix_path = unix_path  # memcached -s: serve there instead of TCP
        self._unix_mode = unix_mode
        self._config = config
        self._grace = shutdown_grace
        self._stop = trio.Event()
        self.tracker = ConnectionTracker()
        if config.watch is not None:  # ``watch``: which connection each request came from
            self.tracker.tags = ConnectionTags(config.watch, execute, self.tracker.views)
        self._handler = partial(
            handle_connection,
            execute=execute,
            counters=counters,
            config=config,
            tracker=self.tracker,
        )
        self.addresses: list[tuple[str, int]] = []
        self.listen_sockets: list[trio.socket.SocketType] = []
        self._connections: trio.Nursery | None = None
        self._bound_at: float | None = None

    @property
    def address_text(self) -> str:
        """The configured address, for messages."""
        return f"unix:{self.unix_path}" if self.unix_path else f"{self._host}:{self._port}"

    def connection_rows(self) -> list[tuple[str, str]]:
        """``stats conns``: the listeners and the live connections."""
        return conns_rows(self.listen_sockets, self.tracker, self._bound_at)

    def stop(self) -> None:
        """Begin a graceful shutdown (safe to call more than once)."""
        self._stop.set()

    def abort(self) -> None:
        """End the drain now: cancel every connection still open (a second signal)."""
        self._stop.set()
        if self._connections is not None:
            self._connections.cancel_scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[list[tuple[str, int]]]) -> None:
        """Serve until ``stop()``; reports the bound TCP addresses through ``task_status``
        (none for a unix socket: ``unix_path`` says where)."""
        if self.unix_path:
            listeners = [await open_unix_listener(self.unix_path, self._unix_mode)]
            inode = os.lstat(self.unix_path).st_ino
            try:
                await self._serve(listeners, task_status)
            finally:
                remove_socket_file(self.unix_path, inode)
            return
        tcp = await trio.open_tcp_listeners(self._port, host=self._host, backlog=BACKLOG)
        self.addresses = [listener.socket.getsockname()[:2] for listener in tcp]
        await self._serve(list(tcp), task_status)

    async def _serve(
        self,
        listeners: list[trio.SocketListener],
        task_status: trio.TaskStatus[list[tuple[str, int]]],
    ) -> None:
        self.listen_sockets = [listener.socket for listener in listeners]
        self._bound_at = trio.current_time()
        reactor = None
        if self._config.durability is None:  # fsync mode: every reply waits in its task
            config = self._config
            reactor = Reactor(config.read_size, config.idle_timeout, config.commit)
        self._config.reactor = self.tracker.reactor = reactor
        async with trio.open_nursery() as connections:
            self._connections = connections
            if reactor is not None:
                connections.start_soon(reactor.run)
            async with trio.open_nursery() as acceptor:
                acceptor.start_soon(
                    partial(
                        trio.serve_listeners, self._handler, listeners, handler_nursery=connections
                    )
                )
                task_status.started(self.addresses)
                await self._stop.wait()
                acceptor.cancel_scope.cancel()
            log.info("stopped accepting; draining %d connections", self.tracker.active)
            self.tracker.begin_drain()
            with trio.move_on_after(self._grace):
                await self.tracker.all_closed.wait()
            connections.cancel_scope.cancel()


async def open_unix_listener(path: str, mode: int) -> trio.SocketListener:
    """memcached's ``server_socket_unix``: replace a stale socket file at ``path``, bind,
    give the file ``mode`` (memcached ``-a``), listen.

    The file gets its mode between bind and listen: until ``listen`` a connect is refused,
    so no client ever reaches the socket under the wrong permissions (memcached sets its
    umask around the bind instead, which would reach other threads' files here).

    Raises:
        OSError: the path is taken by a file that is not a socket, by a socket a server
            still answers on (EADDRINUSE), or cannot be bound.
    """
    await _remove_stale_socket(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        os.chmod(path, mode)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def _remove_stale_socket(path: str) -> None:
    """Unlink a socket file nobody answers on, as memcached does (it unlinks any socket)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        return  # bind fails with EADDRINUSE: not ours to delete
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with probe:
        try:
            await probe.connect(path)
        except OSError:
            pass  # nobody listens: stale
        else:
            raise OSError(errno.EADDRINUSE, "a server is listening on this socket")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def remove_socket_file(path: str, inode: int) -> None:
    """Remove the unix socket file at exit if it is still the one this server bound."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
