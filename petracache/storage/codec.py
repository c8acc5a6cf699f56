"""The on-disk value format. Pure: bytes in, ``Item`` out.

Format version 2, written by every write (all integers little-endian)::

    offset  size  field
    0       1     format version (2)
    1       4     client flags (uint32)
    5       4     deadline: absolute Unix seconds, 0 = never expires (uint32)
    9       4     stored_at: Unix seconds of the last modification (uint32), used by
                  delayed flush_all ("items updated at or before the deadline are invalid")
    13      8     CAS unique (uint64), never 0 for a stored item
    21      4     last_access: Unix seconds of the last recorded access (uint32), what the
                  meta protocol's ``l`` flag and ``me``'s ``la=`` report
    25      1     meta bits: 1 fetched, 2 stale, 4 win token sent, 8 key is binary,
                  16 active (read since written or since eviction last requeued it)
    26      ...   the data

Format version 1 (the first release) is the same header without offsets 21-25; it is still
read: a v1 value decodes with ``last_access = stored_at`` and no meta bits, and is rewritten
as v2 by the next write to its key. There is no bulk migration.

The key is the RocksDB key itself (the raw memcached key bytes). A reader refuses unknown
versions and short values with ``CorruptValue``; the engine reports such a key as a miss.
"""

from __future__ import annotations

import struct
from typing import Final

from librt.strings import BytesWriter, read_i32_le, read_i64_le, write_i32_le, write_i64_le

from petracache.storage.errors import CorruptValue
from petracache.storage.items import Item, new_item

FORMAT_V1: Final = 1
FORMAT_V2: Final = 2
HEADER_V1: Final = struct.Struct("<BIIIQ")
HEADER_V2: Final = struct.Struct("<BIIIQIB")
HEADER_SIZE: Final = HEADER_V2.size  # of the format written now
HEADER_V1_SIZE: Final = HEADER_V1.size
_V1_BYTE: Final = bytes([FORMAT_V1])
_U64: Final = 1 << 64
_I64_END: Final = 1 << 63


def encode(
    flags: int,
    deadline: int,
    stored_at: int,
    cas: int,
    data: bytes,
    last_access: int | None = None,
    bits: int = 0,
) -> bytes:
    """Serialize an item in the current format (``last_access`` defaults to ``stored_at``)."""
    if last_access is None:
        last_access = stored_at
    return _header(flags, deadline, stored_at, cas, last_access, bits) + data


def encode_item(item: Item) -> bytes:
    """Serialize a decoded (possibly modified) item as is."""
    header = _header(
        item.flags, item.deadline, item.stored_at, item.cas, item.last_access, item.bits
    )
    return header + item.data


def _header(
    flags: int, deadline: int, stored_at: int, cas: int, last_access: int, bits: int
) -> bytes:
    """Format 2's header, field by field (``librt.strings``: native stores in the compiled
    build, where ``struct``'s ``pack`` takes every field boxed). The unsigned fields are
    written as the signed ones of the same bits."""
    out = BytesWriter()
    out.append(FORMAT_V2)
    write_i32_le(out, _signed32(flags))
    write_i32_le(out, _signed32(deadline))
    write_i32_le(out, _signed32(stored_at))
    write_i64_le(out, cas if cas < _I64_END else cas - _U64)
    write_i32_le(out, _signed32(last_access))
    out.append(bits)
    return out.getvalue()


def _signed32(value: int) -> int:
    """The signed 32-bit int with the bits of unsigned ``value``."""
    if not 0 <= value <= 0xFFFFFFFF:
        raise struct.error(f"{value} does not fit an unsigned 32-bit field")
    return value if value < 0x80000000 else value - 0x100000000


def _u32(raw: bytes, at: int) -> int:
    """The unsigned 32-bit little-endian field at ``at`` (librt reads signed ones)."""
    return int(read_i32_le(raw, at)) & 0xFFFFFFFF


def decode(raw: bytes) -> Item:
    """Parse a stored value.

    Raises:
        CorruptValue: the value is truncated or has an unknown format version.
    """
    version = raw[0] if raw else 0
    if version == FORMAT_V2 and len(raw) >= HEADER_SIZE:
        # Field by field (``librt.strings``: native loads in the compiled build), where
        # ``unpack_from`` would box every field into a tuple first; offsets: see above.
        cas = int(read_i64_le(raw, 13))
        return new_item(
            _u32(raw, 1),
            _u32(raw, 5),
            _u32(raw, 9),
            cas if cas >= 0 else cas + _U64,
            raw[HEADER_SIZE:],
            _u32(raw, 21),
            raw[25],
        )
    if version == FORMAT_V1 and len(raw) >= HEADER_V1_SIZE:
        _v, flags, deadline, stored_at, cas = HEADER_V1.unpack_from(raw)
        return new_item(flags, deadline, stored_at, cas, raw[HEADER_V1_SIZE:], stored_at, 0)
    raise CorruptValue(f"undecodable value ({len(raw)} bytes, version {raw[:1]!r})")


def stored_size(key: bytes, raw: bytes) -> int:
    """What a stored value counts for in ``stats`` ``bytes``: key + value as format 2.

    A format-1 value counts as the format-2 value its next write makes of it, so the total
    does not drift when such a value is rewritten (see ``storage.item_counts``).
    """
    if raw[:1] == _V1_BYTE:
        return len(key) + len(raw) + HEADER_SIZE - HEADER_V1_SIZE
    return len(key) + len(raw)


def item_stored_size(key: bytes, item: Item) -> int:
    """``stored_size`` of a decoded item (what ``encode_item`` would write)."""
    return len(key) + HEADER_SIZE + len(item.data)
