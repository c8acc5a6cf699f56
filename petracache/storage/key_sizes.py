"""Every stored key's size, in memory: what keeps the item counts exact without a read.

memcached knows from its hash table whether a ``set`` replaces an item and how large that
item was; here the exact ``curr_items``/``bytes`` (``storage.item_counts``) need the same
for every write, and a write whose key the hot items do not hold would otherwise read the
old version from RocksDB first. ``KeySizes`` answers instead: a compact open-addressing
table of 64-bit key fingerprints (the key's ``hash()``; bytes cache theirs) and 32-bit
stored sizes, linear probing, deletion by backward shift (no tombstone slots). A slot's
fingerprint and size are two words side by side in one ``librt.vecs.vec[i64]``, mypyc's
native vector: the compiled build reads a word with one load (an ``array`` item is a call
that boxes an int), and a probe's answer is one cache line away, not one per array.

Completeness: the table starts empty at every start and is filled as keys are written, and
by a scan of every stored key in bounded steps (``storage.item_counts.Recount``, run at
start by ``server.housekeeping``). Until the scan ends (``complete`` False), a key it does
not hold is *unknown* (``get`` returns ``UNKNOWN``: the caller reads RocksDB) and a deleted
key is held with size 0 (known absent), so the scan, whose view of RocksDB is older, does
not bring it back; once complete, a key it does not hold is absent.

Fetch states (memcached's extstore keeps an item's header in memory while its value is on
flash): when a hot item whose fetch was recorded only in memory (``storage.hot``: a dirty
entry) leaves the hot items, its fetch state (access time and meta bits) is kept here
(``record``) instead of rewriting the whole value in RocksDB; readers of RocksDB apply it
(``state``). A write of the key clears it (the new version carries its own state), as does
a delete. Kept in memory only: a restart forgets it, as it forgets what memcached holds.

Known inexactness: two keys with the same 64-bit fingerprint (a chance of about n^2 / 2^65
for n keys: 3e-6 for ten million) share one entry, so the counts can be one item off.

Memory: 20 bytes a slot (fingerprint, size and bits, access time); the table doubles when
three quarters full, so 27-40 bytes a key
(``nbytes``, reported as ``stats`` ``key_index_bytes``); a doubling rehashes every key at
once on the trio thread.
"""

from __future__ import annotations

from array import array
from itertools import repeat
from typing import Final

from librt.vecs import vec
from mypy_extensions import i64

from petracache.storage.items import Item, with_fetch_state

UNKNOWN: Final = -1  # ``get``: not in the table and the table is not complete
# Set in a slot's bits when a fetch state is recorded, so that a state with no meta bit
# set is told from none; the meta bits (``storage.items``) stay below it.
_RECORDED: Final = 128
MIN_SLOTS: Final = 1024
_SIZE_MASK: Final[i64] = (1 << 32) - 1
_BITS_SHIFT: Final[i64] = 32


def _zeros(n: i64) -> vec[i64]:
    """``n`` zero words."""
    return vec[i64](repeat(0, n))


def _fingerprint(key: bytes) -> i64:
    """The key's 64-bit fingerprint; never 0, which marks an empty slot."""
    fp: i64 = hash(key)
    return fp if fp != 0 else 1


class KeySizes:
    """Stored size by key fingerprint (see the module docstring).

    Args:
        expected: keys expected (RocksDB's estimate at start): the table starts with room
            for them, so it need not double while the start-up scan fills it.
    """

    __slots__ = ("_access", "_mask", "_words", "complete", "count")

    def __init__(self, expected: int = 0) -> None:
        slots: i64 = MIN_SLOTS
        while slots * 3 < expected * 4 + 4:
            slots <<= 1
        # Two words a slot: the fingerprint, then the size with the fetch-state bits above.
        self._words = _zeros(2 * slots)
        # Fetch states' last access (unsigned 32-bit seconds): read and written only where
        # a state is kept, so off the set path.
        self._access = array("I", bytes(4 * slots))
        self._mask: i64 = slots - 1
        self.count = 0  # entries held, known-absent ones included
        self.complete = False

    @property
    def nbytes(self) -> int:
        """Bytes the table takes."""
        return int(self._mask + 1) * 20

    def get(self, key: bytes) -> int:
        """The stored size under ``key``; 0 if absent; ``UNKNOWN`` if the table cannot say."""
        i = self._slot(key)
        if i >= 0:
            return int(self._words[2 * i + 1] & _SIZE_MASK)
        return 0 if self.complete else UNKNOWN

    def _slot(self, key: bytes) -> i64:
        """The slot holding ``key``, or -1."""
        fp = _fingerprint(key)
        i = self._probe(fp)
        return i if self._words[2 * i] == fp else -1

    def _probe(self, fp: i64) -> i64:
        """The slot holding ``fp``, or the empty slot where its probe run ends."""
        words = self._words
        mask = self._mask
        i = fp & mask
        while True:
            found = words[2 * i]
            if found == fp or found == 0:
                return i
            i = (i + 1) & mask

    def put(self, key: bytes, size: int) -> None:
        """``key`` now stores ``size`` bytes (0: known to be absent)."""
        self.swap(key, size)

    def swap(self, key: bytes, size: int) -> int:
        """``put``, returning what ``get`` said before it: a set's old and new size in one
        probe. A new version carries its fetch state in its value: any kept one is cleared."""
        fp = _fingerprint(key)
        i = self._probe(fp)
        words = self._words
        at = 2 * i
        if words[at] == fp:
            old = words[at + 1] & _SIZE_MASK
            words[at + 1] = size
            return int(old)
        words[at] = fp
        words[at + 1] = size
        self.count += 1
        if self.count * 4 > (self._mask + 1) * 3:
            self._grow()
        return 0 if self.complete else UNKNOWN

    def record(self, key: bytes, last_access: int, bits: int) -> bool:
        """Keep the fetch state of ``key``'s stored version (see the module docstring);
        False if the table does not hold the key (the caller writes the state itself)."""
        i = self._slot(key)
        if i < 0:
            return False
        size = self._words[2 * i + 1] & _SIZE_MASK
        if not size:
            return False
        self._access[i] = last_access
        self._words[2 * i + 1] = size | i64(bits | _RECORDED) << _BITS_SHIFT
        return True

    def state(self, key: bytes) -> tuple[int, int] | None:
        """(last access, bits) recorded for ``key``'s stored version, or None."""
        i = self._slot(key)
        if i < 0:
            return None
        bits = self._words[2 * i + 1] >> _BITS_SHIFT
        if not bits:
            return None
        return int(self._access[i]), int(bits & ~_RECORDED)

    def clear_state(self, key: bytes) -> None:
        """The stored version now carries its fetch state itself (it was rewritten)."""
        i = self._slot(key)
        if i >= 0:
            self._words[2 * i + 1] = self._words[2 * i + 1] & _SIZE_MASK

    def put_if_unknown(self, key: bytes, size: int) -> None:
        """``put``, unless ``key`` is already held (written or deleted since the scan's view
        of RocksDB was taken, so what the table says is newer)."""
        if self.get(key) == UNKNOWN:
            self.put(key, size)

    def remove(self, key: bytes) -> None:
        """``key`` was deleted: absent from now on."""
        if not self.complete:
            self.put(key, 0)  # known absent: the scan must not bring it back
            return
        self._drop(key)

    def forget(self, key: bytes) -> None:
        """What the table holds for ``key`` may be wrong (a write that failed): from now on
        it cannot say, for any key it does not hold (it stops being complete)."""
        self.complete = False
        self._drop(key)

    def _drop(self, key: bytes) -> None:
        i = self._slot(key)
        if i >= 0:
            self._shift_back(i)
            self.count -= 1

    def _shift_back(self, hole: i64) -> None:
        """Empty slot ``hole`` and move later entries of its probe run back into the gap
        (Knuth's algorithm R), so lookups never need tombstones."""
        words, access, mask = self._words, self._access, self._mask
        i = hole
        while True:
            i = (i + 1) & mask
            fp = words[2 * i]
            if fp == 0:
                break
            home = fp & mask
            # Move the entry at i into the hole unless its home lies cyclically in (hole, i].
            if (i > hole and (home <= hole or home > i)) or (i < hole and hole >= home > i):
                words[2 * hole] = fp
                words[2 * hole + 1] = words[2 * i + 1]
                access[hole] = access[i]
                hole = i
        words[2 * hole] = 0
        words[2 * hole + 1] = 0
        access[hole] = 0

    def _grow(self) -> None:
        """Double the slots and insert every entry again."""
        old_words, old_access = self._words, self._access
        slots = (self._mask + 1) * 2
        words = _zeros(2 * slots)
        access = array("I", bytes(4 * slots))
        mask = slots - 1
        for j in range(len(old_access)):  # old slots
            fp = old_words[2 * j]
            if fp == 0:
                continue
            i = fp & mask
            while words[2 * i] != 0:
                i = (i + 1) & mask
            words[2 * i] = fp
            words[2 * i + 1] = old_words[2 * j + 1]
            access[i] = old_access[j]
        self._words, self._access, self._mask = words, access, mask


def with_state(sizes: KeySizes | None, key: bytes, item: Item) -> Item:
    """``item``, the version RocksDB holds under ``key``, with the fetch state ``sizes``
    keeps for it (unchanged when there is none)."""
    state = None if sizes is None else sizes.state(key)
    if state is None:
        return item
    return with_fetch_state(item, state[0], state[1])
