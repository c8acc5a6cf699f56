"""The ``age`` index read from its heads: a queue range consumed entry by entry (S3-FIFO's
small and main queues), and the oldest surviving write (``stats items``' ``age``).

The index's layout (write positions below ``index.MAIN_START``, the main queue from there)
is ``storage.index``'s; an entry may be stale, so a reader checks the version it names
against the stored item (``Engine.stored``) before it trusts it.
"""

from __future__ import annotations

import time
from typing import Final

from petracache.storage.engine import Engine
from petracache.storage.index import MAIN_START, age_version, parse_age_key
from petracache.storage.rocks import AGE_CF, Family

OLDEST_PROBE: Final = 64  # entries looked at per queue for ``oldest_write`` (stale ones skipped)


def oldest_write(engine: Engine) -> int:
    """When the oldest surviving version was written (Unix s), from the heads of the
    ``age`` index's two queues; 0 when that index is not kept or holds nothing live."""
    if not engine.index.track_age:
        return 0
    heads = [_oldest_from(engine, b""), _oldest_from(engine, MAIN_START)]
    return min((t for t in heads if t), default=0)


def _oldest_from(engine: Engine, start: bytes) -> int:
    walk = engine.db.walk(AGE_CF, start, OLDEST_PROBE, float("inf"), time.monotonic)
    for entry in walk:
        position, key = parse_age_key(entry)
        item, _size = engine.stored(key)
        if item is not None and item.cas == age_version(position, walk.value()):
            return item.stored_at  # else a stale entry (storage.index)
    return 0


class AgeQueue:
    """One range of the ``age`` family, read from its head: ``entry`` is the head (None when
    the range is exhausted), ``take`` consumes it."""

    __slots__ = ("_end", "_it", "entry")

    def __init__(self, family: Family, start: bytes, end: bytes | None) -> None:
        self._it = family.iter()
        self._it.seek(start)
        self._end = end
        self.entry = self._head()

    def _head(self) -> bytes | None:
        it = self._it
        if not it.valid():
            return None
        key = bytes(it.key())
        return None if self._end is not None and key >= self._end else key

    def take(self) -> tuple[bytes, bytes]:
        """The head entry and its value; the next one becomes the head."""
        entry = self.entry
        assert entry is not None
        value = bytes(self._it.value())
        self._it.next()
        self.entry = self._head()
        return entry, value
