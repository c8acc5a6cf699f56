"""The connection the server creates: it picks its protocol from the first byte received.

memcached decides per connection, on the first byte, between the binary protocol (0x80,
the request magic) and the text protocol (everything else, meta commands included), and
keeps that choice for the connection's life (``try_read_command_negotiate``). So does
``ClientConnection``: it then behaves as a ``MemcacheConnection`` or a
``BinaryConnection`` (the same interface), so the data plane needs no knowledge of which.
"""

from __future__ import annotations

from petracache.protocol.binary import REQUEST_MAGIC, BinaryConnection
from petracache.protocol.connection import Batch, Execute, MemcacheConnection
from petracache.rules.sizes import DEFAULT_ITEM_SIZE_MAX

_NOTHING = Batch(b"", False, False, 0)


class ClientConnection:
    """A protocol connection that becomes text or binary on its first byte.

    Args:
        item_size_max: memcached's ``-I``.
        users: the auth file's users; a binary connection then requires SASL PLAIN (a text
            connection's authentication is the server's ``AuthGate``).
    """

    __slots__ = ("_item_size_max", "_users", "protocol")

    def __init__(
        self, item_size_max: int = DEFAULT_ITEM_SIZE_MAX, users: dict[bytes, bytes] | None = None
    ) -> None:
        self._item_size_max = item_size_max
        self._users = users
        self.protocol: MemcacheConnection | BinaryConnection | None = None

    @property
    def streaming(self) -> bool:
        """Whether a streamed reply is being written (``MemcacheConnection.streaming``)."""
        return self.protocol is not None and self.protocol.streaming

    @property
    def buffered(self) -> int:
        """Unconsumed input bytes."""
        return 0 if self.protocol is None else self.protocol.buffered

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; the first non-empty read decides the protocol."""
        protocol = self.protocol
        if protocol is None:
            if not data:
                return
            if data[0] == REQUEST_MAGIC:
                protocol = BinaryConnection(self._item_size_max, self._users)
            else:
                protocol = MemcacheConnection(self._item_size_max)
            self.protocol = protocol
        protocol.receive_data(data)

    def process(self, execute: Execute, limit: int) -> Batch:
        """``MemcacheConnection.process`` or ``BinaryConnection.process``."""
        protocol = self.protocol
        return _NOTHING if protocol is None else protocol.process(execute, limit)
