"""The accept loop and graceful drain.

Shutdown order (style guide section 4): stop accepting (cancel the accept scope, which closes
the listeners), tell live connections to drain (each one executes and answers what it has
already received, including what is still waiting in its socket buffer, then closes), wait
up to the grace period, then cancel whatever is left.
"""

from __future__ import annotations

import logging
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
    ) -> None:
        self._host = host
        self._port = port
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

    @property
    def address_text(self) -> str:
        """The configured address, for messages."""
        return f"{self._host}:{self._port}"

    def connection_rows(self) -> list[tuple[str, str]]:
        """``stats conns``: the listeners and the live connections."""
        return conns_rows(self.listen_sockets, self.tracker)

    def stop(self) -> None:
        """Begin a graceful shutdown (safe to call more than once)."""
        self._stop.set()

    def abort(self) -> None:
        """End the drain now: cancel every connection still open (a second signal)."""
        self._stop.set()
        if self._connections is not None:
            self._connections.cancel_scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[list[tuple[str, int]]]) -> None:
        """Serve until ``stop()``; reports the bound addresses through ``task_status``."""
        listeners = await trio.open_tcp_listeners(self._port, host=self._host, backlog=4096)
        self.addresses = [listener.socket.getsockname()[:2] for listener in listeners]
        self.listen_sockets = [listener.socket for listener in listeners]
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
