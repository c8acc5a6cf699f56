"""Binary-protocol replies -> bytes: memcached 1.6.18's ``add_bin_header``/``write_bin_error``.

A reply packet is a 24-byte header (magic 0x81, the request's opcode, key length, extras
length, data type 0, status, body length, the request's opaque, CAS) followed by extras, key
and value. An error reply carries no CAS and, unless it echoes a key (a getk miss), the
status's fixed message as its body. Pure functions, no state.
"""

from __future__ import annotations

import struct
from typing import Final

from petracache.protocol.binary_requests import BinStatus
from petracache.protocol.responses import BinaryReply, BinaryStats

RESPONSE_MAGIC: Final = 0x81
HEADER: Final = struct.Struct(">BBHBBHIIQ")  # protocol_binary_response_header, network order

# write_bin_error's messages, by status.
MESSAGES: Final[dict[int, bytes]] = {
    BinStatus.KEY_ENOENT: b"Not found",
    BinStatus.KEY_EEXISTS: b"Data exists for key.",
    BinStatus.E2BIG: b"Too large.",
    BinStatus.EINVAL: b"Invalid arguments",
    BinStatus.NOT_STORED: b"Not stored.",
    BinStatus.DELTA_BADVAL: b"Non-numeric server-side value for incr or decr",
    BinStatus.AUTH_ERROR: b"Auth failure.",
    BinStatus.UNKNOWN_COMMAND: b"Unknown command",
    BinStatus.ENOMEM: b"Out of memory",
}


def packet(
    opcode: int,
    opaque: int,
    status: int = 0,
    cas: int = 0,
    extras: bytes = b"",
    key: bytes = b"",
    value: bytes = b"",
) -> bytes:
    """One reply packet."""
    body = len(extras) + len(key) + len(value)
    head = HEADER.pack(RESPONSE_MAGIC, opcode, len(key), len(extras), 0, status, body, opaque, cas)
    return b"".join((head, extras, key, value))


def error(opcode: int, opaque: int, status: int) -> bytes:
    """memcached's ``write_bin_error``: the status and its message, no CAS."""
    return packet(opcode, opaque, status, value=MESSAGES[status])


def encode_reply(reply: BinaryReply) -> bytes:
    """A ``BinaryReply`` (nothing for a quiet success)."""
    if reply.quiet:
        return b""
    status = reply.status
    if status and status != BinStatus.AUTH_CONTINUE and not reply.key:
        return error(reply.opcode, reply.opaque, status)
    return packet(
        reply.opcode, reply.opaque, status, reply.cas, reply.extras, reply.key, reply.value
    )


def encode_stats(reply: BinaryStats) -> bytes:
    """memcached's ``append_bin_stats``: a packet per statistic, then an empty terminator
    (unless the group has none)."""
    opcode, opaque = reply.opcode, reply.opaque
    parts = [packet(opcode, opaque, key=name, value=value) for name, value in reply.stats]
    if reply.terminated:
        parts.append(packet(opcode, opaque))
    return b"".join(parts)
