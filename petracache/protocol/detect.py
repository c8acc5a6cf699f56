"""The connection the server creates: it picks its protocol from the first byte received.

memcached decides per connection, on the first byte, between the binary protocol (0x80,
the request magic) and the text protocol (everything else, meta commands included), and
keeps that choice for the connection's life (``try_read_command_negotiate``). So does
``ClientConnection``: it then behaves as a ``MemcacheConnection`` or a
``BinaryConnection`` (the same interface), so the data plane needs no knowledge of which.

memcached's ``-B`` fixes the protocol instead (``protocol``): with ``ascii`` every
connection is a text one, whatever its first byte (a binary request then reads as a
malformed text line, as in memcached -B ascii); with ``binary`` every connection is a binary
one (text closes it once a 24-byte header's worth has arrived without the magic byte).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from petracache.protocol.binary import REQUEST_MAGIC, BinaryConnection
from petracache.protocol.connection import REQS_PER_EVENT, Batch, Execute, MemcacheConnection
from petracache.rules.sizes import DEFAULT_ITEM_SIZE_MAX

_NOTHING: Final = Batch(b"", False, False, 0, 0)


class ClientConnection:
    """A protocol connection that becomes text or binary on its first byte.

    ``receive_data`` and ``process`` are instance attributes: once the protocol is chosen
    they are the chosen connection's own bound methods, so the data plane's per-read calls
    go straight to the parser, not through a delegating method.

    Args:
        item_size_max: memcached's ``-I``.
        users: the auth file's users; a binary connection then requires SASL PLAIN (a text
            connection's authentication is the server's ``AuthGate``).
        binding: memcached's ``-B``: ``auto`` (the first byte decides), ``ascii``, ``binary``.
        reqs_per_event: memcached's ``-R`` (the flush points).
    """

    __slots__ = (
        "_binding",
        "_item_size_max",
        "_reqs_per_event",
        "_users",
        "process",
        "protocol",
        "receive_data",
    )

    receive_data: Callable[[bytes | bytearray], None]
    process: Callable[[Execute, int], Batch]

    def __init__(
        self,
        item_size_max: int = DEFAULT_ITEM_SIZE_MAX,
        users: dict[bytes, bytes] | None = None,
        binding: str = "auto",
        reqs_per_event: int = REQS_PER_EVENT,
    ) -> None:
        self._item_size_max = item_size_max
        self._users = users
        self._binding = binding
        self._reqs_per_event = reqs_per_event
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
        binding = self._binding
        if binding == "binary" or (binding == "auto" and data[0] == REQUEST_MAGIC):
            protocol = BinaryConnection(self._item_size_max, self._users, self._reqs_per_event)
        else:
            protocol = MemcacheConnection(self._item_size_max, self._reqs_per_event)
        self.protocol = protocol
        self.receive_data = protocol.receive_data
        self.process = protocol.process
        protocol.receive_data(data)


def _nothing(execute: Execute, limit: int) -> Batch:
    """``process`` before any byte arrived."""
    return _NOTHING
