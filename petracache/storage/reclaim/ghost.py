"""S3-FIFO's ghost queue: the keys the small queue evicted recently, as fingerprints only.

The paper keeps as many ghost entries as the main queue holds items and forgets them in
FIFO order. Here the ghost is two Bloom filters that take turns: keys go into the current
one; once it has taken ``capacity * 2/3`` keys, it becomes the previous one and the one
before it is dropped. A key is remembered while it is in either, so the ghost remembers
the last ``2/3`` to ``4/3`` of ``capacity`` evictions, ``capacity`` on average, in FIFO
order by generation, at ``BITS_PER_KEY`` bits for each key a filter is sized for: 2.0
bytes of bit array per key of ``capacity`` (``nbytes``; tests/storage/test_ghost.py
measures the whole object with tracemalloc). An exact table of 64-bit fingerprints with
their order would take about 30 times that in Python (a set of ints and a deque).

What it costs: a false positive (at most ``2 * FALSE_POSITIVES``, each filter at most
``FALSE_POSITIVES`` when full) sends an item to the main queue without its key having
been evicted; a key cannot be taken out (a promoted key stays remembered until its
generation is dropped, which only matters if the small queue evicts it again soon). The
ghost lives in memory only: a restart, clean or not, starts it empty, and keys evicted
before it enter the small queue again like new ones.

Fingerprints are 64-bit BLAKE2b digests of the key (the same in every process, so a run
can be repeated), split into the two halves of Kirsch and Mitzenmacher's double hashing:
about 0.4 us a key, paid by the reclaimer only (a check at the small queue's head, an add
at each eviction from it), never by a request.
"""

from __future__ import annotations

import hashlib
from typing import Final

BITS_PER_KEY: Final = 12
HASHES: Final = 6  # probes per key: (1 - e**-0.5)**6, 0.37% false positives when full
FALSE_POSITIVES: Final = 0.0037
GENERATION: Final = 2 / 3  # of the capacity, keys per filter
MIN_KEYS: Final = 64  # a filter is sized for at least this many keys
_MASK32: Final = 0xFFFFFFFF


class _Filter:
    """One Bloom filter sized for ``keys`` keys."""

    __slots__ = ("bits", "keys", "size", "taken")

    def __init__(self, keys: int) -> None:
        self.keys = keys
        self.size = keys * BITS_PER_KEY  # bits
        self.bits = bytearray((self.size + 7) // 8)
        self.taken = 0

    def add(self, h1: int, h2: int) -> None:
        bits, size = self.bits, self.size
        for i in range(HASHES):
            bit = (h1 + i * h2) % size
            bits[bit >> 3] |= 1 << (bit & 7)
        self.taken += 1

    def has(self, h1: int, h2: int) -> bool:
        bits, size = self.bits, self.size
        for i in range(HASHES):
            bit = (h1 + i * h2) % size
            if not bits[bit >> 3] & (1 << (bit & 7)):
                return False
        return True


def _hashes(key: bytes) -> tuple[int, int]:
    h = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
    return h & _MASK32, (h >> 32) | 1


class GhostKeys:
    """Recently evicted keys (see the module docstring).

    Args:
        capacity: keys remembered on average; ``resize`` changes it for the filters made
            from then on.
    """

    __slots__ = ("_current", "_keys", "_previous")

    def __init__(self, capacity: int = 0) -> None:
        self._keys = _generation(capacity)
        self._current = _Filter(self._keys)
        self._previous: _Filter | None = None

    def resize(self, capacity: int) -> None:
        """Remember about ``capacity`` keys from the next generation on, or at once while
        nothing is remembered (the main queue's item count changes with the bound and the
        item sizes)."""
        self._keys = _generation(capacity)
        if not self._current.taken and self._previous is None:
            self._current = _Filter(self._keys)

    def add(self, key: bytes) -> None:
        """Remember that ``key`` was evicted."""
        current = self._current
        if current.taken >= current.keys:
            self._previous = current
            current = self._current = _Filter(self._keys)
        current.add(*_hashes(key))

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` was evicted recently (or is a false positive)."""
        if not isinstance(key, bytes):
            return False
        h1, h2 = _hashes(key)
        previous = self._previous
        return self._current.has(h1, h2) or (previous is not None and previous.has(h1, h2))

    @property
    def nbytes(self) -> int:
        """Bytes of the filters' bit arrays."""
        previous = self._previous
        return len(self._current.bits) + (0 if previous is None else len(previous.bits))


def _generation(capacity: int) -> int:
    return max(int(capacity * GENERATION), MIN_KEYS)
