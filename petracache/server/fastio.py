"""A plain-TCP stream with fewer syscalls and scheduler passes per request than trio's.

Why: for an unpipelined client, ``trio.SocketStream`` spends more CPU per request than
parsing and executing it (``python -m bench.hotpath`` and ``python -m bench --only 1``
show both figures). ``receive_some`` first tries ``recv``, which on a request/response
connection almost always fails with EAGAIN (a syscall plus a raised exception) before
waiting; ``send_all`` yields to the scheduler twice around a ``send`` that on loopback
always completes at once.

Strategy, same semantics as the ``trio.abc.Stream`` it wraps:

* ``receive_some`` waits for readability first (``trio.lowlevel.wait_readable``: one
  checkpoint, cancellable, so the idle timeout and the shutdown drain work unchanged), then
  reads with ``os.read`` on the non-blocking descriptor.
* ``send_all`` writes with ``os.write`` right away; only what the kernel did not take goes
  through the wrapped stream's ``send_all``, which waits for writability. A complete write
  has no checkpoint: the connection's loop checkpoints in its next ``receive_some``.
* Errors surface as trio's stream errors (``BrokenResourceError``), as the wrapped stream's
  would.

Only for ``trio.SocketStream`` (TLS streams keep their own path); ``fast_stream`` decides.
"""

from __future__ import annotations

import os

import trio


class FastSocketStream(trio.abc.Stream):
    """``trio.SocketStream`` with ``receive_some``/``send_all`` done as described above."""

    __slots__ = ("_fd", "_stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._fd = stream.socket.fileno()

    def fileno(self) -> int:
        """The socket's descriptor (the reactor registers it)."""
        return self._fd

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        fd = self._fd
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                return os.read(fd, max_bytes or 65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        if sent < len(data):
            await self._stream.send_all(memoryview(data)[sent:])

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


def fast_stream(stream: trio.abc.Stream) -> trio.abc.Stream:
    """The fast path for a plain TCP stream; any other stream (TLS) is returned as is."""
    if type(stream) is trio.SocketStream and stream.socket.fileno() >= 0:
        return FastSocketStream(stream)
    return stream
