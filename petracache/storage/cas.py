"""CAS uniques that strictly increase, across restarts and crashes too.

``CasSource`` persists a high-water mark ``CAS_RESERVATION`` ids ahead of use, synced to the
WAL before any id from the block is handed out, and resumes from it after a restart or a
crash (memcached's CAS restarts at 0; a persistent cache must not reuse an id a client may
still hold).
"""

from __future__ import annotations

import struct
from typing import Final

from petracache.storage import rocks
from petracache.storage.rocks import Family

CAS_KEY: Final = b"cas_high_water"  # in the meta family
CAS_RESERVATION: Final = 1 << 20  # ids handed out per synced high-water write
_U64: Final = struct.Struct("<Q")


class CasSource:
    """Hands out CAS uniques (``take``), reserving them in blocks in the ``meta`` family.

    Args:
        meta: the ``meta`` column family.
    """

    __slots__ = ("_meta", "_reserved", "current", "resumed")

    def __init__(self, meta: Family) -> None:
        self._meta = meta
        raw = meta.get(CAS_KEY)
        self.current: int = _U64.unpack(raw)[0] if raw else 0
        self.resumed = self.current  # where this run starts: past the last run's reservation
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
