"""The engine's own persistent state: CAS uniques, flush_all state, and the engine's counters.

Invariants:

* flush_all state (``oldest_live``, ``oldest_cas``, memcached's names) is persisted, so a
  flush keeps invalidating the items it covered after a restart.
* CAS uniques strictly increase, across restarts too. ``CasSource`` persists a
high-water mark ``CAS_RESERVATION`` ids ahead of use, synced to the WAL before any id from
the block is handed out, and resumes from it after a restart or a crash (memcached's CAS
restarts at 0; a persistent cache must not reuse an id a client may still hold).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from petracache.rules import ttl
from petracache.storage import rocks
from petracache.storage.codec import Item

CAS_KEY: Final = b"cas_high_water"  # in the meta family
FLUSH_KEY: Final = b"flush_state"  # in the meta family: rocks.FLUSH_STATE
CAS_RESERVATION: Final = 1 << 20  # ids handed out per synced high-water write
_U64: Final = struct.Struct("<Q")


class CasSource:
    """Hands out CAS uniques (``take``), reserving them in blocks in the ``meta`` family.

    Args:
        meta: the ``meta`` column family.
    """

    __slots__ = ("_meta", "_reserved", "current")

    def __init__(self, meta: Any) -> None:
        self._meta = meta
        raw = meta.get(CAS_KEY)
        self.current: int = _U64.unpack(raw)[0] if raw else 0
        self._reserved = self.current

    def take(self) -> int:
        """The next CAS unique, persisting a new reservation block when needed.

        Raises:
            StorageError: the reservation could not be written; no id was handed out.
        """
        cas = self.current + 1
        if cas > self._reserved:
            reserved = cas + CAS_RESERVATION
            rocks.put_synced(self._meta, CAS_KEY, _U64.pack(reserved))
            self._reserved = reserved
        self.current = cas
        return cas


class FlushState:
    """The latest flush_all, persisted in the ``meta`` family.

    Args:
        meta: the ``meta`` column family.
        epoch: memcached's process_started (its clock cannot express an absolute time
            before it).
    """

    __slots__ = ("_epoch", "_meta", "oldest_cas", "oldest_live")

    def __init__(self, meta: Any, epoch: int) -> None:
        self._meta = meta
        self._epoch = epoch
        raw = meta.get(FLUSH_KEY)
        state = rocks.FLUSH_STATE.unpack(raw) if raw else (0, 0)
        self.oldest_live: int = state[0]
        self.oldest_cas: int = state[1]

    def covers(self, item: Item, now: int) -> bool:
        """Whether the flush invalidates ``item`` at ``now``."""
        oldest_live = self.oldest_live
        if oldest_live == 0 or oldest_live > now:
            return False
        return item.stored_at <= oldest_live or (
            self.oldest_cas != 0 and item.cas < self.oldest_cas
        )

    def flush_all(self, delay: int, now: int, next_cas: Callable[[], int]) -> None:
        """Invalidate every item stored before now (delay <= 0) or before the deadline.

        memcached: ``oldest_live = realtime(delay) - 1`` and, when that is not in the future,
        ``oldest_cas = get_cas_id()``; an item is flushed once ``oldest_live <= now`` if it was
        stored at or before ``oldest_live`` or has a CAS older than ``oldest_cas``.
        """
        new_oldest = ttl.deadline(delay, now) if delay > 0 else now
        if delay > ttl.REALTIME_MAXDELTA and delay <= self._epoch:
            # memcached's realtime() maps an absolute time before its start to 1, which makes
            # oldest_live 0: "no flush". Such a flush_all cancels earlier ones, quirk included.
            new_oldest = 1
        self.oldest_live = new_oldest - 1
        if self.oldest_live <= now:
            self.oldest_cas = next_cas()
        rocks.put_synced(
            self._meta, FLUSH_KEY, rocks.FLUSH_STATE.pack(self.oldest_live, self.oldest_cas)
        )


@dataclass(slots=True)
class EngineCounters:
    """Plain integer counters, read by stats and /metrics on demand."""

    expired_lazy: int = 0
    # Background reclaim (storage.reclaim): items deleted because they expired, because a
    # flush_all covered them, or to stay under max_disk_bytes; their key+value bytes; and the
    # SST bytes that the reclaimer's compactions gave back to the filesystem.
    expired_reaped: int = 0
    flushed_reaped: int = 0
    evictions: int = 0
    reclaimed_bytes: int = 0
    compactions: int = 0
    compacted_bytes: int = 0
    flushed_lazy: int = 0
    corrupt_values: int = 0
    total_items: int = 0
    extra: dict[str, int] = field(default_factory=dict)
