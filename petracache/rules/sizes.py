"""memcached's size rules, shared by the parser (refusing a set) and storage (refusing an append).

Numbers come from memcached 1.6: ``KEY_MAX_LENGTH`` in memcached.h, the 1 MiB default ``-I``,
and ``item_size_ok``: an item is ``sizeof(item)`` (48 bytes on 64-bit) + key + 1 + the client
flags suffix (4 bytes, only when flags != 0) + the data + ``\\r\\n`` + an 8-byte CAS, and it
must not exceed the item size limit. With a 1-byte key and flags 0 the largest value is
1,048,516 bytes, which the differential test checks against real memcached.
"""

from __future__ import annotations

from typing import Final

from petracache.rules.numbers import INT_MAX

KEY_MAX_LENGTH: Final = 250
# The largest <bytes> a storage command may declare: memcached reads it as an int and adds 2
# for the "\r\n" (vlen += 2), which must not overflow.
MAX_DATA_LENGTH: Final = INT_MAX - 2
DEFAULT_ITEM_SIZE_MAX: Final = 1024 * 1024
ITEM_HEADER_SIZE: Final = 48
CAS_SIZE: Final = 8


def item_size(key_length: int, flags: int, data_length: int) -> int:
    """memcached's ``ITEM_ntotal`` for an item of this shape (``me`` reports it as ``size``)."""
    suffix = 4 if flags else 0
    return ITEM_HEADER_SIZE + key_length + 1 + suffix + data_length + 2 + CAS_SIZE


def item_size_ok(key_length: int, flags: int, data_length: int, item_size_max: int) -> bool:
    """Whether memcached would accept an item of this shape under ``item_size_max`` (``-I``)."""
    return item_size(key_length, flags, data_length) <= item_size_max
