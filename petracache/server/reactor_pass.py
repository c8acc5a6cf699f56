"""The reactor's synchronous half: serve once each connection one epoll pass found ready.

``server.reactor`` owns the epoll set, the trio side (parking, waking a connection's task,
yielding to the other tasks) and the idle timeout. This module does the I/O of the ready
connections: one ``os.read`` each, the connection's ``Exchange`` (``server.exchange``:
count, parse, execute, encode, and what next), then one commit of the pass's writes
(``Engine.commit``: one WAL append for every connection served in the pass, as Redis writes
its append-only buffer once per event-loop pass before its replies go out), then
``os.write`` of each connection's replies, and the decision to hand a connection back to
its task. It has no trio in it, so it is compiled with the request path (pyproject.toml,
``[tool.petracache.mypyc]``): it runs for every read of a parked connection.

Invariants (the reactor module docstring has the rest): no reply of a pass is written
before the pass's writes are committed, and a failed commit sends none of the pass's
replies (those connections are closed: a client cannot tell which of its writes were
stored); one read per ready connection per pass; a reply the kernel did not take whole,
end of input, a broken socket, ``quit``, a protocol close and a metadump are handed back
(``hand_back``), never waited for here; an exception escaping one connection is logged and
closes that connection only.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import select
from collections.abc import Callable
from typing import Any, Final

from petracache.server.exchange import CLOSE, MORE, READ, Exchange
from petracache.storage.errors import StorageError

log = logging.getLogger("petracache.server.reactor")

_DEAD: Final = select.EPOLLHUP | select.EPOLLERR
_GONE: Final = (errno.EPIPE, errno.ECONNRESET)
# Bound once: the compiled build would look ``read`` up on the module at every call.
_read: Final = os.read
_write: Final = os.write


class Reason(enum.Enum):
    """Why the reactor handed a connection back to its task."""

    CLOSE = "close"  # end of input, a broken socket, quit, or a protocol close: close it
    WRITE = "write"  # ``data`` must still be written; then go on (or close, if ``close``)
    IDLE = "idle"  # no request within the idle timeout
    DRAIN = "drain"  # the server is shutting down: the task drains the connection itself


class Handback:
    """The reactor's word to a connection's task when it hands the connection back."""

    __slots__ = ("close", "data", "reason")

    def __init__(self, reason: Reason, data: bytes = b"", close: bool = False) -> None:
        self.reason = reason
        self.data = data  # with WRITE: reply bytes the kernel did not take yet
        self.close = close  # with WRITE: close once ``data`` is written


class Slot:
    """A parked connection: its socket, its exchange, its task (a ``trio.lowlevel.Task``)
    and the hand-back once there is one."""

    __slots__ = ("exchange", "fd", "handback", "last_active", "task")

    def __init__(self, fd: int, exchange: Exchange, task: Any) -> None:
        self.fd = fd
        self.exchange = exchange
        self.task = task
        self.handback: Handback | None = None
        self.last_active = 0.0


class ReactorPass:
    """Serves the ready connections of one epoll pass (see the module docstring).

    Args:
        slots: the reactor's parked connections by descriptor (shared, not copied).
        hand_back: the reactor's way to give a connection back to its task.
        read_size: bytes per ``os.read`` (``server.read_buffer_size``).
        commit: writes the pending writes (``Engine.commit``); raises ``StorageError``.
    """

    def __init__(
        self,
        slots: dict[int, Slot],
        hand_back: Callable[[Slot, Handback], None],
        read_size: int,
        commit: Callable[[], None],
    ) -> None:
        self._slots = slots
        self._hand_back = hand_back
        self._read_size = read_size
        self._commit = commit
        self.serving = -1  # the descriptor last read (stats conns: conn_parse_cmd)

    def serve(self, events: list[tuple[int, int]], now: float) -> None:
        """Serve every ready connection in ``events`` once (``now``: trio time, for the idle
        timeout): answer them all, commit their writes, then write their replies."""
        slots = self._slots
        answered: list[tuple[Slot, bytes]] = []
        for fd, mask in events:
            slot = slots.get(fd)
            if slot is None:
                continue
            try:
                out = self._answer(slot, mask, now)
            except Exception:
                log.exception("connection failed; closing this connection")
                self._hand_back(slot, Handback(Reason.CLOSE))
                continue
            if out is not None:
                answered.append((slot, out))
        try:
            self._commit()  # also the side writes of reads, and of a connection that failed
        except StorageError as exc:
            log.warning(
                "writes failed, closing the %d connections they answered: %s", len(answered), exc
            )
            for slot, _out in answered:
                self._hand_back(slot, Handback(Reason.CLOSE))
            return
        for slot, out in answered:
            try:
                self._write(slot, out)
            except Exception:
                log.exception("connection failed; closing this connection")
                self._hand_back(slot, Handback(Reason.CLOSE))

    def _answer(self, slot: Slot, mask: int, now: float) -> bytes | None:
        """One read of one connection and its answers (None: the connection was handed
        back, nothing to write)."""
        fd = slot.fd
        self.serving = fd
        try:
            data = _read(fd, self._read_size)
        except BlockingIOError:
            if mask & _DEAD:
                self._hand_back(slot, Handback(Reason.CLOSE))
            return None
        except OSError:
            data = b""
        if not data:
            self._hand_back(slot, Handback(Reason.CLOSE))
            return None
        slot.last_active = now
        return slot.exchange.answer(data)

    def _write(self, slot: Slot, out: bytes) -> None:
        """Write a connection's answers, and the further batches of a long pipeline (each
        committed before it is written); hand it back when it must wait or end."""
        fd = slot.fd
        exchange = slot.exchange
        while True:
            then = exchange.then
            if out:
                try:
                    sent = _write(fd, out)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    if exc.errno not in _GONE:
                        raise
                    self._hand_back(slot, Handback(Reason.CLOSE))
                    return
                if sent < len(out):  # the task waits for the client to read the rest
                    self._hand_back(slot, Handback(Reason.WRITE, out[sent:], then == CLOSE))
                    return
            if then == READ:
                return
            if then != MORE:  # CLOSE, or STREAM: the task writes a metadump, yielding
                reason = Reason.CLOSE if then == CLOSE else Reason.WRITE
                self._hand_back(slot, Handback(reason))
                return
            out = exchange.replies()
            self._commit()  # raises StorageError: ``serve`` closes this connection
