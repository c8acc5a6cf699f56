"""A resumable walk over the live items, in bounded steps (for ``lru_crawler metadump``).

Strategy: the walk keeps only a cursor (the next key to look at), never an open iterator or
a snapshot. Each ``step()`` opens a fresh RocksDB iterator, seeks to the cursor, and reads
at most ``batch`` items or ``budget`` seconds' worth, whichever comes first, then drops the
iterator. So a walk of any size holds one step's items in memory, pins no SST files or
memtables between steps (a long dump does not stop compaction from freeing space), and
takes the trio thread for at most about ``budget`` seconds at a time: the caller writes the
step's output and yields before the next step, as the reclaimer does between its steps.

Invariants:

* Like memcached's crawler, the walk is not a snapshot: an item written behind the cursor
  during the walk is not listed, one written ahead of it is; every key present for the whole
  walk is listed exactly once (keys are visited in strictly increasing order).
* Dead items (expired, or covered by flush_all: ``Engine.is_dead``) and undecodable values
  are skipped, never deleted: the walk is read-only, so it cannot race a command.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from petracache.storage import codec
from petracache.storage.engine import Engine
from petracache.storage.errors import CorruptValue, StorageError
from petracache.storage.items import Item
from petracache.storage.reclaim.reclaimer import BATCH, STEP_BUDGET

# A step is bounded as the reclaimer's are (the same share of the trio thread); its items
# make about 50 KB of metadump lines.
STEP_ITEMS: Final = BATCH


class ItemCrawl:
    """Walks every live item in key order, one bounded step at a time.

    Args:
        engine: the open engine.
        batch: at most this many live items per step.
        budget: a step stops after about this many seconds.
        timer: monotonic seconds (injected for tests).
    """

    def __init__(
        self,
        engine: Engine,
        batch: int = STEP_ITEMS,
        budget: float = STEP_BUDGET,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._engine = engine
        self._batch = batch
        self._budget = budget
        self._timer = timer
        self._cursor: bytes | None = b""

    @property
    def done(self) -> bool:
        """Whether every key has been visited."""
        return self._cursor is None

    def step(self) -> list[tuple[bytes, Item]]:
        """The next live items (possibly none while ``done`` is still False).

        Raises:
            StorageError: RocksDB failed to iterate; the cursor is unchanged, so a later
                step retries.
        """
        if self._cursor is None:
            return []
        engine = self._engine
        now = engine.now()
        found: list[tuple[bytes, Item]] = []
        last: bytes | None = None
        try:
            walk = engine.db.walk(
                "default", self._cursor, self._batch, self._timer() + self._budget, self._timer
            )
            hot = engine.hot
            for key in walk:
                last = key
                # A hot entry, or the key sizes, may carry a fetch state RocksDB does not
                # have yet (storage.hot).
                newer = hot.newer(key)
                try:
                    item = (
                        engine.with_state(key, codec.decode(walk.value()))
                        if newer is None
                        else newer
                    )
                except CorruptValue:
                    continue
                if not engine.is_dead(item, now):
                    found.append((key, item))
            more = walk.more
        except Exception as exc:  # rocksdict raises bare Exception
            raise StorageError(f"walking the items failed: {exc}") from exc
        # The smallest key after the last one visited; None once the walk has run out.
        self._cursor = last + b"\x00" if more and last is not None else None
        return found
