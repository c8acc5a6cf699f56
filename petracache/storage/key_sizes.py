"""Every stored key's size, in memory: what keeps the item counts exact without a read.

memcached knows from its hash table whether a ``set`` replaces an item and how large that
item was; here the exact ``curr_items``/``bytes`` (``storage.item_counts``) need the same
for every write, and a write whose key the hot items do not hold would otherwise read the
old version from RocksDB first. ``KeySizes`` answers instead: a compact open-addressing
table of 64-bit key fingerprints (the key's ``hash()``; bytes cache theirs) and 32-bit
stored sizes, in two ``array``s, linear probing, deletion by backward shift (no tombstone
slots).

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

Memory: 17 bytes a slot (fingerprint, size, access time, bits); the table doubles when
three quarters full, so 23-34 bytes a key
(``nbytes``, reported as ``stats`` ``key_index_bytes``); a doubling rehashes every key at
once on the trio thread.
"""

from __future__ import annotations

from array import array
from typing import Final

from petracache.storage.items import Item, with_fetch_state

UNKNOWN: Final = -1  # ``get``: not in the table and the table is not complete
# Set in a slot's bits when a fetch state is recorded, so that a state with no meta bit
# set is told from none; the meta bits (``storage.items``) stay below it.
_RECORDED: Final = 128
MIN_SLOTS: Final = 1024


def _fingerprint(key: bytes) -> int:
    """The key's 64-bit fingerprint; never 0, which marks an empty slot."""
    fp = hash(key)
    return fp if fp != 0 else 1


class KeySizes:
    """Stored size by key fingerprint (see the module docstring).

    Args:
        expected: keys expected (RocksDB's estimate at start): the table starts with room
            for them, so it need not double while the start-up scan fills it.
    """

    __slots__ = ("_access", "_bits", "_fps", "_mask", "_sizes", "complete", "count")

    def __init__(self, expected: int = 0) -> None:
        slots = MIN_SLOTS
        while slots * 3 < expected * 4 + 4:
            slots <<= 1
        self._fps = array("q", bytes(8 * slots))
        self._sizes = array("I", bytes(4 * slots))
        self._access = array("I", bytes(4 * slots))  # fetch states: last access ...
        self._bits = array("B", bytes(slots))  # ... and meta bits; 0 = none recorded
        self._mask = slots - 1
        self.count = 0  # entries held, known-absent ones included
        self.complete = False

    @property
    def nbytes(self) -> int:
        """Bytes the table takes."""
        return (self._mask + 1) * 17

    def get(self, key: bytes) -> int:
        """The stored size under ``key``; 0 if absent; ``UNKNOWN`` if the table cannot say."""
        i = self._slot(key)
        if i >= 0:
            return int(self._sizes[i])
        return 0 if self.complete else UNKNOWN

    def _slot(self, key: bytes) -> int:
        """The slot holding ``key``, or -1."""
        fp = _fingerprint(key)
        i = self._probe(fp)
        return i if self._fps[i] == fp else -1

    def _probe(self, fp: int) -> int:
        """The slot holding ``fp``, or the empty slot where its probe run ends."""
        fps = self._fps
        mask = self._mask
        i = fp & mask
        while True:
            found = fps[i]
            if found == fp or found == 0:
                return i
            i = (i + 1) & mask

    def put(self, key: bytes, size: int) -> None:
        """``key`` now stores ``size`` bytes (0: known to be absent)."""
        self.swap(key, size)

    def swap(self, key: bytes, size: int) -> int:
        """``put``, returning what ``get`` said before it: a set's old and new size in one
        probe."""
        fp = _fingerprint(key)
        i = self._probe(fp)
        sizes = self._sizes
        if self._fps[i] == fp:
            old = int(sizes[i])
            sizes[i] = size
            if self._bits[i]:
                self._bits[i] = 0  # a new version: its fetch state is in its value
            return old
        sizes[i] = size
        self._fps[i] = fp
        self.count += 1
        if self.count * 4 > (self._mask + 1) * 3:
            self._grow()
        return 0 if self.complete else UNKNOWN

    def record(self, key: bytes, last_access: int, bits: int) -> bool:
        """Keep the fetch state of ``key``'s stored version (see the module docstring);
        False if the table does not hold the key (the caller writes the state itself)."""
        i = self._slot(key)
        if i < 0 or not self._sizes[i]:
            return False
        self._access[i] = last_access
        self._bits[i] = bits | _RECORDED
        return True

    def state(self, key: bytes) -> tuple[int, int] | None:
        """(last access, bits) recorded for ``key``'s stored version, or None."""
        i = self._slot(key)
        if i < 0:
            return None
        bits = int(self._bits[i])
        if not bits:
            return None
        return int(self._access[i]), bits & ~_RECORDED

    def clear_state(self, key: bytes) -> None:
        """The stored version now carries its fetch state itself (it was rewritten)."""
        i = self._slot(key)
        if i >= 0:
            self._bits[i] = 0

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

    def _shift_back(self, hole: int) -> None:
        """Empty slot ``hole`` and move later entries of its probe run back into the gap
        (Knuth's algorithm R), so lookups never need tombstones."""
        fps, sizes, mask = self._fps, self._sizes, self._mask
        access, bits = self._access, self._bits
        i = hole
        while True:
            i = (i + 1) & mask
            fp = fps[i]
            if fp == 0:
                break
            home = fp & mask
            # Move the entry at i into the hole unless its home lies cyclically in (hole, i].
            if (i > hole and (home <= hole or home > i)) or (i < hole and hole >= home > i):
                fps[hole] = fp
                sizes[hole] = sizes[i]
                access[hole] = access[i]
                bits[hole] = bits[i]
                hole = i
        fps[hole] = 0
        sizes[hole] = 0
        access[hole] = 0
        bits[hole] = 0

    def _grow(self) -> None:
        """Double the slots and insert every entry again."""
        old_fps, old_sizes = self._fps, self._sizes
        old_access, old_bits = self._access, self._bits
        slots = (self._mask + 1) * 2
        fps = array("q", bytes(8 * slots))
        sizes = array("I", bytes(4 * slots))
        access = array("I", bytes(4 * slots))
        bits = array("B", bytes(slots))
        mask = slots - 1
        for j in range(len(old_fps)):
            fp = old_fps[j]
            if fp == 0:
                continue
            i = fp & mask
            while fps[i] != 0:
                i = (i + 1) & mask
            fps[i] = fp
            sizes[i] = old_sizes[j]
            access[i] = old_access[j]
            bits[i] = old_bits[j]
        self._fps, self._sizes, self._mask = fps, sizes, mask
        self._access, self._bits = access, bits


def with_state(sizes: KeySizes | None, key: bytes, item: Item) -> Item:
    """``item``, the version RocksDB holds under ``key``, with the fetch state ``sizes``
    keeps for it (unchanged when there is none)."""
    state = None if sizes is None else sizes.state(key)
    if state is None:
        return item
    return with_fetch_state(item, state[0], state[1])
