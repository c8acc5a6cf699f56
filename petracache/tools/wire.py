"""A minimal async text-protocol connection for the operator tools (trio).

Only what ``migrate`` needs: send bytes, read a CRLF line, read an exact byte count, each
under a timeout, with failures turned into one ``WireError`` whose text names the peer.
Replies are read in order (pipelining needs no opaque tokens).
"""

from __future__ import annotations

import trio

READ_SIZE = 256 * 1024
MAX_LINE = 64 * 1024  # no memcached reply line is longer; past it the peer speaks no memcached


class WireError(Exception):
    """The peer is unreachable, closed the connection, timed out, or answered nonsense."""


def split_addr(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port).

    Raises:
        WireError: not of that form.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise WireError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


class Wire:
    """One connection to a memcached-protocol server.

    Args:
        addr: ``HOST:PORT`` (for messages).
        stream: the connected stream.
        timeout: seconds any single read may wait.
    """

    def __init__(self, addr: str, stream: trio.abc.Stream, timeout: float) -> None:
        self.addr = addr
        self._stream = stream
        self._timeout = timeout
        self._buf = bytearray()

    @classmethod
    async def connect(cls, addr: str, wait: float) -> Wire:
        """Connect to ``addr``; ``wait`` bounds the connect and, later, each read.

        Raises:
            WireError: bad address, refused, unreachable, or no answer within ``wait``.
        """
        host, port = split_addr(addr)
        try:
            with trio.fail_after(wait):
                stream = await trio.open_tcp_stream(host, port)
        except trio.TooSlowError:
            raise WireError(f"{addr}: no connection within {wait:g} s") from None
        except OSError as exc:
            raise WireError(f"{addr}: cannot connect: {exc.strerror or exc}") from None
        return cls(addr, stream, wait)

    async def send(self, data: bytes) -> None:
        """Write ``data`` whole; ``WireError`` if the connection is lost."""
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise WireError(f"{self.addr}: connection lost while sending: {exc}") from None

    async def _fill(self) -> None:
        try:
            with trio.fail_after(self._timeout):
                chunk = await self._stream.receive_some(READ_SIZE)
        except trio.TooSlowError:
            raise WireError(f"{self.addr}: no reply within {self._timeout:g} s") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise WireError(f"{self.addr}: connection lost: {exc}") from None
        if not chunk:
            raise WireError(f"{self.addr}: the server closed the connection")
        self._buf += chunk

    async def readline(self) -> bytes:
        """The next line, without its ``\\r\\n`` (or bare ``\\n``)."""
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                return line.removesuffix(b"\r")
            if len(self._buf) > MAX_LINE:
                raise WireError(f"{self.addr}: reply line too long: not a memcached server")
            start = len(self._buf)
            await self._fill()

    async def read_exact(self, n: int) -> bytes:
        """The next ``n`` bytes (a value block), waiting for them as ``readline`` does."""
        while len(self._buf) < n:
            await self._fill()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self._stream)
