"""S3-FIFO's ghost queue: the keys the small queue evicted recently, as fingerprints only.

The paper keeps as many ghost entries as the main queue holds items and forgets them in
FIFO order. Here the ghost is two Bloom filters that take turns: keys go into the current
one; once it has taken ``capacity * 2/3`` keys, it becomes the previous one and the one
before it is dropped. A key is remembered while it is in either, so the ghost remembers
the last ``2/3`` to ``4/3`` of ``capacity`` evictions, ``capacity`` on average, in FIFO
order by generation, at ``BITS_PER_KEY`` bits for each key a filter is sized for: 2.67
bytes per key of ``capacity`` (``nbytes``; tests/storage/test_ghost.py measures the whole
object with tracemalloc). An exact table of 64-bit fingerprints in FIFO order
(a set of ints and a deque) measures 86 bytes a key in Python, 32 times as much.

Each filter is *blocked* (Putze, Sanders and Singler, "Cache-, hash- and space-efficient
Bloom filters", 2007): a key's ``HASHES`` bits all fall in one 64-bit word, so an add or a
look-up is one read of an ``array`` element and one mask, instead of a Python loop over
``HASHES`` positions. The price is a higher false-positive rate than a standard filter of
the same size (0.41% when full, measured, against about 0.1% by the textbook formula),
hence 16 bits a key.

What it costs: a false positive (at most ``2 * FALSE_POSITIVES``) sends an item to the main
queue without its key having been evicted; a key cannot be taken out (a promoted key stays
remembered until its generation is dropped, which only matters if the small queue evicts
it again soon). The ghost lives in memory only: a restart, clean or not, starts it empty,
and keys evicted before it enter the small queue again like new ones.

Fingerprints are 128-bit BLAKE2b digests of the key (the same in every process, so a run
can be repeated): 64 bits pick the word, six 6-bit fields the bits in it. A key is hashed
once for a look-up and the add that follows it (the reclaimer checks a small-queue head,
then evicts it): about 1.8 us for both, paid by the reclaimer only, never by a request.
"""

from __future__ import annotations

import hashlib
from array import array
from typing import Final

BITS_PER_KEY: Final = 16
HASHES: Final = 6  # bits set per key, in one 64-bit word
FALSE_POSITIVES: Final = 0.005  # a full filter's rate, measured 0.41% (test_ghost.py)
GENERATION: Final = 2 / 3  # of the capacity, keys per filter
MIN_KEYS: Final = 64  # a filter is sized for at least this many keys
_MASK64: Final = (1 << 64) - 1


class _Filter:
    """One blocked Bloom filter sized for ``keys`` keys."""

    __slots__ = ("keys", "taken", "words")

    def __init__(self, keys: int) -> None:
        self.keys = keys
        # Repetition allocates exactly (array(typecode, bytes) keeps a 1/16 spare).
        self.words = array("Q", (0,)) * max(keys * BITS_PER_KEY // 64, 1)
        self.taken = 0

    def add(self, word: int, mask: int) -> None:
        words = self.words
        words[word % len(words)] |= mask
        self.taken += 1

    def has(self, word: int, mask: int) -> bool:
        words = self.words
        return words[word % len(words)] & mask == mask


def _fingerprint(key: bytes) -> tuple[int, int]:
    """(word hash, bit mask) of ``key``."""
    h = int.from_bytes(hashlib.blake2b(key, digest_size=16).digest(), "little")
    mask = (
        1 << ((h >> 64) & 63)
        | 1 << ((h >> 70) & 63)
        | 1 << ((h >> 76) & 63)
        | 1 << ((h >> 82) & 63)
        | 1 << ((h >> 88) & 63)
        | 1 << ((h >> 94) & 63)
    )
    return h & _MASK64, mask


class GhostKeys:
    """Recently evicted keys (see the module docstring).

    Args:
        capacity: keys remembered on average; ``resize`` changes it for the filters made
            from then on.
    """

    __slots__ = ("_current", "_keys", "_last", "_previous")

    def __init__(self, capacity: int = 0) -> None:
        self._keys = _generation(capacity)
        self._current = _Filter(self._keys)
        self._previous: _Filter | None = None
        self._last: tuple[bytes, tuple[int, int]] = (b"", (0, 0))  # the last key hashed

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
        current.add(*self._fingerprint(key))

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` was evicted recently (or is a false positive)."""
        if not isinstance(key, bytes):
            return False
        word, mask = self._fingerprint(key)
        previous = self._previous
        return self._current.has(word, mask) or (previous is not None and previous.has(word, mask))

    def _fingerprint(self, key: bytes) -> tuple[int, int]:
        last_key, last = self._last
        if key == last_key:
            return last
        fingerprint = _fingerprint(key)
        self._last = (key, fingerprint)
        return fingerprint

    @property
    def nbytes(self) -> int:
        """Bytes of the filters' bit arrays."""
        previous = self._previous
        size = self._current.words.itemsize * len(self._current.words)
        return size + (0 if previous is None else previous.words.itemsize * len(previous.words))


def _generation(capacity: int) -> int:
    return max(int(capacity * GENERATION), MIN_KEYS)
