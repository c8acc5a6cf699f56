"""``stats detail on|off|dump``: memcached's per-prefix counters.

A key's prefix is the part before the first ``:`` (memcached's ``-D`` default); keys without
one are not counted. While detail is on, every get counts a get (and a hit when found), every
storage command a set (counted when its line is parsed, as memcached does) and every delete a
delete. ``dump`` lists the prefixes in memcached's order, so the reply is byte-identical: the
bucket ``murmur3_32(prefix) % 256`` ascending, newest prefix first within a bucket.

In memory only (like memcached); ``stats reset`` clears it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from petracache.protocol.responses import ErrorReply, PrefixDump, Response, Status

DELIMITER: Final = 0x3A  # ":"
PREFIX_HASH_SIZE: Final = 256  # memcached stats_prefix.c
USAGE: Final = ErrorReply(b"CLIENT_ERROR usage: stats detail on|off|dump\r\n")


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86_32, memcached's default ``hash_algorithm``."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed
    nblocks = len(data) // 4
    for i in range(nblocks):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    tail = data[4 * nblocks :]
    k = 0
    for i in reversed(range(len(tail))):
        k = (k << 8) | tail[i]
    if tail:
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h


def prefix_of(key: bytes) -> bytes | None:
    """The bytes before the first ``:``, or None when the key has none."""
    end = key.find(b":")
    return None if end < 0 else key[:end]


@dataclass(slots=True)
class PrefixStats:
    """The per-prefix table; ``enabled`` is what ``stats detail on|off`` toggles."""

    enabled: bool = False
    # prefix -> [gets, hits, sets, deletes]; insertion order = creation order
    table: dict[bytes, list[int]] = field(default_factory=dict)

    def _entry(self, key: bytes) -> list[int] | None:
        prefix = prefix_of(key)
        if prefix is None:
            return None
        entry = self.table.get(prefix)
        if entry is None:
            entry = self.table[prefix] = [0, 0, 0, 0]
        return entry

    def record_get(self, key: bytes, hit: bool) -> None:
        entry = self._entry(key)
        if entry is not None:
            entry[0] += 1
            entry[1] += hit

    def record_set(self, key: bytes) -> None:
        entry = self._entry(key)
        if entry is not None:
            entry[2] += 1

    def record_delete(self, key: bytes) -> None:
        entry = self._entry(key)
        if entry is not None:
            entry[3] += 1

    def clear(self) -> None:
        self.table.clear()

    def dump(self) -> PrefixDump:
        """The rows of ``stats detail dump``, in memcached's order."""
        order = sorted(
            enumerate(self.table),
            key=lambda item: (murmur3_32(item[1]) % PREFIX_HASH_SIZE, -item[0]),
        )
        rows = []
        for _, prefix in order:
            gets, hits, sets, deletes = self.table[prefix]
            rows.append((prefix, gets, hits, sets, deletes))
        return PrefixDump(rows)

    def command(self, args: list[bytes]) -> Response:
        """The reply to ``stats detail <args>`` (memcached's ``process_stats_detail``)."""
        word = args[0] if args else b""
        if word == b"on":
            self.enabled = True
            return Status.OK
        if word == b"off":
            self.enabled = False
            return Status.OK
        if word == b"dump":
            return self.dump()
        return USAGE
