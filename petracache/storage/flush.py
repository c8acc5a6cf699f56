"""The latest flush_all, persisted: it keeps invalidating the items it covered after a
restart. Its fields are memcached's ``oldest_live`` and ``oldest_cas`` with memcached's
meaning (``FlushState.covers``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from petracache.rules import ttl
from petracache.storage import rocks
from petracache.storage.items import Item
from petracache.storage.rocks import Family

FLUSH_KEY: Final = b"flush_state"  # in the meta family: rocks.FLUSH_STATE


class FlushState:
    """The latest flush_all, persisted in the ``meta`` family.

    Args:
        meta: the ``meta`` column family.
        epoch: memcached's process_started (its clock cannot express an absolute time
            before it).
    """

    __slots__ = ("_epoch", "_meta", "oldest_cas", "oldest_live")

    def __init__(self, meta: Family, epoch: int) -> None:
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
