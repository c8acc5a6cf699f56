"""When the server was last alive, kept durably and cheaply, and the warm-restart rule.

A persistent cache that was away (crashed, stopped, partitioned) comes back with the values
it had; meanwhile its keys may have been written or deleted elsewhere (a router failed
over to another shard, or the application's invalidating deletes failed). Serving those
values is serving stale data. ``storage.max_warm_downtime`` bounds how long the server may
have been away and still serve what it stored before.

Record (the ``meta`` family, key ``liveness``)::

    state (u8: 0 running, 1 stopped cleanly) | at (i64 Unix s) | items (u64) | bytes (u64)
    | sequence (u64)

* While running, ``at`` is the last heartbeat: written at start and every
  ``HEARTBEAT_INTERVAL`` seconds (one small put with the WAL on, not synced: a process kill
  keeps it, since the WAL is in the page cache; a power cut may lose the last ones, which
  only makes the measured downtime longer, the safe direction).
* A clean stop writes ``state = 1``, ``at`` = the stop time, synced, with the item counts
  (``storage.item_counts``) and the sequence number RocksDB will have after this write, so the
  next start knows whether the counts are still exact.

Downtime = start time - ``at``. Killed, the server was down at most ``HEARTBEAT_INTERVAL``
less than that, so the rule errs on the cold side. No record (a new database, or one from a
release without it) means unknown downtime: the database is served warm and the log says so.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from petracache.storage import rocks
from petracache.storage.rocks import Family

LIVENESS_KEY = b"liveness"
_RECORD = struct.Struct("<BqQQQ")
RUNNING = 0
STOPPED = 1
# Seconds between heartbeats: a kill -9 overstates the downtime by at most this much. Small
# next to any sensible max_warm_downtime (default 60), cheap (one memtable insert and WAL
# append per interval).
HEARTBEAT_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class LastRun:
    """What the previous run left: how it ended, when, and its item counts."""

    stopped_cleanly: bool
    at: int
    items: int = 0
    size: int = 0
    sequence: int = 0


def read_last_run(meta: Family) -> LastRun | None:
    """The previous run's record, or None (new database, older release, unreadable)."""
    raw = meta.get(LIVENESS_KEY)
    if raw is None or len(raw) != _RECORD.size:
        return None
    state, at, items, size, sequence = _RECORD.unpack(raw)
    return LastRun(state == STOPPED, at, items, size, sequence)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The warm-restart rule's decision, and the sentence the log gives for it."""

    cold: bool
    downtime: int | None
    reason: str


def judge(last: LastRun | None, now: int, max_warm_downtime: float) -> Verdict:
    """Whether what is stored may be served (warm) or must be invalidated (cold).

    Args:
        last: the previous run's record (``read_last_run``).
        now: the start time (Unix s).
        max_warm_downtime: ``storage.max_warm_downtime``; 0 = always warm.
    """
    if last is None:
        return Verdict(False, None, "no liveness record (new database or older release)")
    downtime = max(now - last.at, 0)
    how = "stopped cleanly" if last.stopped_cleanly else "last heartbeat (not stopped cleanly)"
    if max_warm_downtime <= 0:
        return Verdict(False, downtime, f"down {downtime}s since {how}; max_warm_downtime 0")
    if downtime > max_warm_downtime:
        return Verdict(
            True,
            downtime,
            f"down {downtime}s since {how}, more than max_warm_downtime"
            f" {max_warm_downtime:g}s: everything stored before is invalidated",
        )
    return Verdict(False, downtime, f"down {downtime}s since {how}: serving stored items")


class Heartbeat:
    """Writes the liveness record.

    Args:
        meta: the ``meta`` family.
    """

    __slots__ = ("_meta", "_opts")

    def __init__(self, meta: Family) -> None:
        self._meta = meta
        self._opts = rocks.write_options(wal=True)  # whatever the durability mode

    def beat(self, now: int) -> None:
        """Record that the server is alive at ``now`` (not synced; see the module doc).

        Raises:
            StorageError: the write failed (a full disk); the next beat retries.
        """
        rocks.put_with(self._meta, LIVENESS_KEY, _RECORD.pack(RUNNING, now, 0, 0, 0), self._opts)

    def stopped(self, now: int, items: int, size: int, sequence: int) -> None:
        """Record a clean stop, synced; ``sequence`` is the database's after this write
        (0 when the counts is not exact, so the next start recounts)."""
        rocks.put_synced(
            self._meta, LIVENESS_KEY, _RECORD.pack(STOPPED, now, items, size, sequence)
        )
