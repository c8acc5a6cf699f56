"""S3-FIFO's moves to the main queue (``queues`` has the rules, the reclaimer the walk).

The main queue is the ``age`` index's positions from ``index.MAIN_BASE``: an item that a
round spares (read while in the small queue, or remembered by the ghost; or, in the main
queue, a frequency left) gets a fresh position past the main queue's last entry, with its
frequency in the entry's value (``IndexBatch.move``/``requeue``). The ghost of the small
queue's recent evictions lives here (``ghost``, memory only).
"""

from __future__ import annotations

from collections.abc import Callable

from petracache.storage import codec, index as idx, rocks
from petracache.storage.engine import Engine
from petracache.storage.index import IndexBatch
from petracache.storage.items import ACTIVE, Item
from petracache.storage.reclaim import queues
from petracache.storage.reclaim.ghost import GhostKeys
from petracache.storage.rocks import AGE_CF

# The main queue's positions handed out stay below this (a client's meta E CAS may land
# above it: such an entry is walked as a main-queue entry all the same).
MAIN_LIMIT = idx.MAIN_BASE + (1 << 62)


def live_items(engine: Engine) -> int:
    """The live items: the exact count, else RocksDB's estimate of the keys."""
    counts = engine.item_counts
    if counts.exact:
        return counts.items
    return engine.db.property_int("rocksdb.estimate-num-keys")


class MainQueue:
    """Moves items to the main queue's tail, and remembers the small queue's evictions.

    Args:
        engine: the open engine.
        count: adds to one of the engine's extra counters (``moves_to_main``...).
    """

    def __init__(self, engine: Engine, count: Callable[[str], None]) -> None:
        self._engine = engine
        self._count = count
        self.ghost = GhostKeys()
        self._main_next = 0  # the next main-queue position (0: not read yet)
        self._resumed = -1  # the CAS this run resumed after, and the last position
        self._resumed_last = 0  # written before it (queues.writes_since)

    def spared(
        self, batch: IndexBatch, entry: bytes, value: bytes, key: bytes, item: Item, small: bool
    ) -> bool:
        """S3-FIFO's verdict on a live item at a queue's head (``queues``); True when it
        moves to the main queue's tail (added to ``batch``) instead of being evicted."""
        read = bool(item.bits & ACTIVE)
        if small:
            remembered = not read and key in self.ghost
            if not queues.promoted(read, remembered):
                return False
            self._to_main(batch, entry, key, item, 0)
            self._count("moves_to_main")
            if remembered:
                self._count("ghost_admissions")
            return True
        freq = queues.kept_freq(idx.main_freq(value), read)
        if freq is None:
            return False
        self._to_main(batch, entry, key, item, freq)
        self._count("evicted_active")  # memcached's name for a spared item
        return True

    def _to_main(self, batch: IndexBatch, entry: bytes, key: bytes, item: Item, freq: int) -> None:
        """Move ``entry`` to the main queue's tail with ``freq``; an item read since its
        last move gets its active bit cleared (a rewrite of the same version), so that
        the next pass sees the reads made from now on."""
        position = self._next_position()
        if item.bits & ACTIVE:
            value = codec.encode_item(item.replace(bits=item.bits & ~ACTIVE))
            batch.requeue(entry, key, value, item.cas, position, freq)
        else:
            batch.move(entry, key, item.cas, position, freq)

    def _next_position(self) -> int:
        """A position past every main-queue entry: its last one's, read once, then counted."""
        if not self._main_next:
            last = rocks.last_below(self._engine.db.family(AGE_CF), idx.age_key(MAIN_LIMIT, b""))
            position = idx.parse_age_key(last)[0] if last is not None else 0
            self._main_next = max(position + 1, idx.MAIN_BASE)
        position = self._main_next
        self._main_next += 1
        return position

    def last_before(self, resumed: int) -> int:
        """The last small-queue position at or before ``resumed`` (read once)."""
        if self._resumed != resumed:
            limit = idx.age_key(min(resumed + 1, idx.MAIN_BASE), b"")
            last = rocks.last_below(self._engine.db.family(AGE_CF), limit)
            self._resumed = resumed
            self._resumed_last = idx.parse_age_key(last)[0] if last is not None else 0
        return self._resumed_last
