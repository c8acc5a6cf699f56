"""The on-disk value format. Pure: bytes in, ``Item`` out.

Format version 1 (all integers little-endian)::

    offset  size  field
    0       1     format version (1)
    1       4     client flags (uint32)
    5       4     deadline: absolute Unix seconds, 0 = never expires (uint32)
    9       4     stored_at: Unix seconds of the last modification (uint32), used by
                  delayed flush_all ("items updated at or before the deadline are invalid")
    13      8     CAS unique (uint64), never 0 for a stored item
    21      ...   the data

The key is the RocksDB key itself (the raw memcached key bytes). A reader refuses unknown
versions and short values with ``CorruptValue``; the engine reports such a key as a miss.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from petracache.storage.errors import CorruptValue

FORMAT_V1 = 1
HEADER_V1 = struct.Struct("<BIIIQ")
HEADER_SIZE = HEADER_V1.size


class Item(NamedTuple):
    """A decoded item."""

    flags: int
    deadline: int
    stored_at: int
    cas: int
    data: bytes


def encode(flags: int, deadline: int, stored_at: int, cas: int, data: bytes) -> bytes:
    """Serialize an item in the current format."""
    return HEADER_V1.pack(FORMAT_V1, flags, deadline, stored_at, cas) + data


def decode(raw: bytes) -> Item:
    """Parse a stored value.

    Raises:
        CorruptValue: the value is truncated or has an unknown format version.
    """
    if len(raw) < HEADER_SIZE or raw[0] != FORMAT_V1:
        raise CorruptValue(f"undecodable value ({len(raw)} bytes, version {raw[:1]!r})")
    _version, flags, deadline, stored_at, cas = HEADER_V1.unpack_from(raw)
    return Item(flags, deadline, stored_at, cas, raw[HEADER_SIZE:])
