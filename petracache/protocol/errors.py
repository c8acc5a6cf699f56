"""Protocol errors: each carries the exact reply line memcached sends for it.

Rule: a ``ProtocolError`` is recoverable. The connection sends ``reply`` (unless the command
asked for ``noreply``, which in memcached suppresses error replies too) and keeps parsing.
``CloseConnection`` is the one unrecoverable case (memcached closes without a reply).

memcached holds a connection's replies until a flush point (see ``connection.FLUSH_AFTER``);
one error, a too-long key in a get, also throws away the replies it still holds
(``discard_unsent``), and the caller must do the same to answer byte for byte alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from petracache.protocol.requests import Get, Request


class ProtocolError(Exception):
    """A malformed request; ``reply`` is the full reply line including ``\\r\\n``."""

    reply: bytes = b"ERROR\r\n"
    discard_unsent: bool = False
    partial: Request | None = None  # work memcached did before it met the error (run, no reply)

    def __init__(self, reply: bytes | None = None, *, noreply: bool = False) -> None:
        if reply is not None:
            self.reply = reply
        self.noreply = noreply
        super().__init__(self.reply.decode("latin-1").rstrip())


class UnknownCommand(ProtocolError):
    """Unknown command name or wrong token count: ``ERROR``."""

    reply = b"ERROR\r\n"


class BadCommandLine(ProtocolError):
    """A field of the command line is malformed or a key is too long."""

    reply = b"CLIENT_ERROR bad command line format\r\n"


class BadGetKey(BadCommandLine):
    """A key over 250 bytes in get/gets/gat/gats.

    memcached's ``process_get_command`` then releases every reply the connection has not
    written yet (``conn_release_items``), the previous commands' replies included.
    """

    discard_unsent = True

    def __init__(self, partial: Get | None = None) -> None:
        super().__init__()
        # memcached handles a get's keys in order: the ones before the long key were already
        # fetched (and, for gat, touched) when it fails.
        self.partial = partial


class BadDataChunk(ProtocolError):
    """The data block of a storage command did not end in ``\\r\\n``."""

    reply = b"CLIENT_ERROR bad data chunk\r\n"


class InvalidExptime(ProtocolError):
    """touch/gat/flush_all with a non-numeric exptime."""

    reply = b"CLIENT_ERROR invalid exptime argument\r\n"


class InvalidDelta(ProtocolError):
    """incr/decr with a delta that is not an unsigned 64-bit number."""

    reply = b"CLIENT_ERROR invalid numeric delta argument\r\n"


class BadDeleteUsage(ProtocolError):
    """delete with a third token other than ``0`` or ``noreply``."""

    reply = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"


class CloseConnection(Exception):
    """The peer must be disconnected without a reply (line too long, HTTP request)."""
