"""The connection the server creates: it picks its protocol from the first byte received.

memcached decides per connection, on the first byte, between the binary protocol (0x80,
the request magic) and the text protocol (everything else, meta commands included), and
keeps that choice for the connection's life (``try_read_command_negotiate``). So does
``ClientConnection``: it then behaves as a ``MemcacheConnection`` or a
``BinaryConnection`` (the same interface), so the data plane needs no knowledge of which.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from petracache.protocol.binary import REQUEST_MAGIC, BinaryConnection
from petracache.protocol.connection import Batch, Execute, MemcacheConnection
from petracache.rules.sizes import DEFAULT_ITEM_SIZE_MAX

_NOTHING: Final = Batch(b"", False, False, 0)


class ClientConnection:
    """A protocol connection that becomes text or binary on its first byte.

    ``receive_data`` and ``process`` are instance attributes: once the protocol is chosen
    they are the chosen connection's own bound methods, so the data plane's per-read calls
    go straight to the parser, not through a delegating method.

    Args:
        item_size_max: memcached's ``-I``.
        users: the auth file's users; a binary connection then requires SASL PLAIN (a text
            connection's authentication is the server's ``AuthGate``).
    """

    __slots__ = ("_item_size_max", "_users", "process", "protocol", "receive_data")

    receive_data: Callable[[bytes | bytearray], None]
    process: Callable[[Execute, int], Batch]

    def __init__(
        self, item_size_max: int = DEFAULT_ITEM_SIZE_MAX, users: dict[bytes, bytes] | None = None
    ) -> None:
        self._item_size_max = item_size_max
        self._users = users
        self.protocol: MemcacheConnection | BinaryConnection | None = None
        self.receive_data = self._first_data
        self.process = _nothing

    @property
    def streaming(self) -> bool:
        """Whether a streamed reply is being written (``MemcacheConnection.streaming``)."""
        return self.protocol is not None and self.protocol.streaming

    @property
    def stream(self) -> Iterator[bytes] | None:
        """The streamed reply being written (``MemcacheConnection.stream``), or None."""
        protocol = self.protocol
        return protocol.stream if isinstance(protocol, MemcacheConnection) else None

    @property
    def buffered(self) -> int:
        """Unconsumed input bytes."""
        return 0 if self.protocol is None else self.protocol.buffered

    def _first_data(self, data: bytes | bytearray) -> None:
        """``receive_data`` until the first byte arrives: it decides the protocol."""
        if not data:
            return
        protocol: MemcacheConnection | BinaryConnection
        if data[0] == REQUEST_MAGIC:
            protocol = BinaryConnection(self._item_size_max, self._users)
        else:
            protocol = MemcacheConnection(self._item_size_max)
        self.protocol = protocol
        self.receive_data = protocol.receive_data
        self.process = protocol.process
        protocol.receive_data(data)


def _nothing(execute: Execute, limit: int) -> Batch:
    """``process`` before any byte arrived."""
    return _NOTHING
