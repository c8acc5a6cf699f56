"""The server's side of ``watch``: a watcher connection's writer, and which connection ran.

memcached hands a watcher's socket to its logger thread, which writes the lines queued for
it and polls it for the client's hang-up (``logger_thread_poll_watchers``); anything the
client sends is read and dropped. ``serve_watcher`` does the same from the connection's own
task: one task writes what the watcher's buffer holds (``observability.watch``: bounded, so
a client that reads slowly loses lines, counted in ``skipped=``, never memory), another
reads and drops input until the client closes. It ends at the hang-up, or when the server
drains (the scope is in ``tracker.idle_scopes``, which the drain cancels); the connection
is closed then, never served again, as in memcached.

``ConnectionTags``: memcached's lines name the connection a request came from (``cfd=``).
The command layer does not know its connection, so while someone watches each connection's
``Exchange.execute`` is a wrapper that sets ``WatchLog.cfd`` before running the request;
when the last watcher leaves, the plain executor is put back. Nobody watching, a request
costs nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import partial
from typing import Protocol

import trio

from petracache.observability.watch import TOO_MANY, WatchLog, WatchStart
from petracache.protocol.requests import Request
from petracache.protocol.responses import Response
from petracache.server.exchange import Exchange

Execute = Callable[[Request], Response]
READ_SIZE = 4096  # a watcher's input is read and dropped


class _Wakeup:
    """Wakes the writer when lines arrive (``Watcher.wake``; set on the trio thread)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


async def serve_watcher(
    stream: trio.abc.Stream, start: WatchStart, log: WatchLog, scopes: set[trio.CancelScope]
) -> bool:
    """Turn the connection into a watcher until the client hangs up or the server drains.

    Returns False (close the connection), or True when the watcher limit was reached since
    the command was answered: ``start`` then yields ``WATCHER_TOO_MANY`` and the connection
    goes on as before.
    """
    wakeup = _Wakeup()
    watcher = log.add(start.kinds, wakeup.set)
    if watcher is None:
        start.refuse(TOO_MANY)
        return True
    scope = trio.CancelScope()
    scopes.add(scope)
    try:
        with scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_until_hang_up, stream, nursery.cancel_scope)
                while True:
                    data = watcher.take()
                    if not data:
                        await wakeup.wait()
                        continue
                    try:
                        await stream.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        nursery.cancel_scope.cancel()
                        return False
    finally:
        scopes.discard(scope)
        log.remove(watcher)
    return False


async def _until_hang_up(stream: trio.abc.Stream, done: trio.CancelScope) -> None:
    """Read and drop the client's input; at its end (or a broken socket) end the watch."""
    try:
        while await stream.receive_some(READ_SIZE):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
        pass
    done.cancel()


class TaggedView(Protocol):
    """What ``ConnectionTags`` needs of a live connection (``handler.ConnView``)."""

    @property
    def fd(self) -> int: ...

    @property
    def exchange(self) -> Exchange | None: ...


def _tagged(log: WatchLog, fd: int, execute: Execute, request: Request) -> Response:
    log.cfd = fd
    return execute(request)


class ConnectionTags:
    """Keeps every connection's ``Exchange.execute`` tagged while someone watches.

    Args:
        log: the watch log (its ``on_change`` calls ``switch``).
        execute: the plain executor every connection runs otherwise.
        views: the live connections (``ConnectionTracker.views``; read, never changed).
    """

    def __init__(self, log: WatchLog, execute: Execute, views: Collection[TaggedView]) -> None:
        self._log = log
        self._execute = execute
        self._views = views
        log.on_change.append(self.switch)

    def execute_for(self, fd: int) -> Execute:
        """What a connection on ``fd`` runs its requests with now."""
        if self._log.active:
            return partial(_tagged, self._log, fd, self._execute)
        return self._execute

    def switch(self, active: bool) -> None:
        """Someone started watching, or the last watcher left: retag every connection."""
        for view in self._views:
            exchange = view.exchange
            if exchange is not None:
                exchange.execute = self.execute_for(view.fd)
