"""Whether writes can be made durable now: /ready, ``stats`` and /metrics read it.

A failed write (a command's ``StorageError``), a failed group-commit fsync, a failed
heartbeat or a new RocksDB background error (a failed flush or compaction, polled every
``POLL_INTERVAL``) marks the storage *failing*: one log line (ERROR), /ready answers 503 with
the reason, ``stats`` ``storage_writable`` is 0. Reads go on being served. While failing, a
probe runs every ``PROBE_INTERVAL`` in a worker thread: a synced write to the ``meta``
family, a flush of every memtable (which also starts a new WAL file), and a second synced
write. When all three succeed, whatever the memtables held is in synced SST files and the
WAL is a fresh file, so acknowledging writes is safe again: the server is writable again,
logged once (INFO).

What RocksDB can resume from, measured on ``tests/faultfs`` (docs/operations.md, "Faults"):
ENOSPC while writing an SST file or the MANIFEST (a flush, a compaction) stops its writes
until its own recovery sees free space again (within a few seconds); any failure on the WAL
(a write or an fsync, EIO or ENOSPC), and EIO on an SST or the MANIFEST, stop them for good:
clearing that needs ``DB::Resume``, which rocksdict does not expose, or a restart. The
probe's error says which it is, and so do the log, /ready and ``stats``
(``storage_needs_restart``); the probe goes on either way, so a wrong guess only costs the
wording.

Invariant: only the trio thread writes these fields; the sidecar reads them.
"""

from __future__ import annotations

import logging
import re
import struct
import time
from collections.abc import Callable

import trio

from petracache.storage.engine import Engine
from petracache.storage.errors import StorageError

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0  # seconds between two reads of RocksDB's background-error count
PROBE_INTERVAL = 1.0  # seconds between two probes while failing
PROBE_KEY = b"storage_probe"  # in the meta family: the probe's synced writes
BACKGROUND_ERRORS = "rocksdb.background-errors"  # a count; never goes down
# What RocksDB resumes from by itself (its error handler, once space is free again): a full
# disk while writing an SST file or the MANIFEST. Everything else waits for a restart.
_RESUMABLE = "No space left on device"
# A failed WAL writer: its own message, or a WAL file (NNNNNN.log) named in the error.
_WAL_BROKEN = re.compile(r"Writer has previous error|/\d+\.log\b")


def needs_restart(error: str) -> bool:
    """Whether RocksDB will not clear ``error`` by itself (see the module docstring)."""
    return _RESUMABLE not in error or _WAL_BROKEN.search(error) is not None


class StorageHealth:
    """Whether writes can be made durable (see the module docstring)."""

    def __init__(self) -> None:
        self.writable = True
        self.needs_restart = False
        self.reason = ""  # the error that made it fail, while failing
        self.failures = 0  # times it went from writable to failing
        # Told when the storage starts failing: the engine stops batching writes, so each
        # later write is refused on its own (SERVER_ERROR) instead of failing a whole pass.
        self.on_failing: Callable[[], None] | None = None
        self._wake = trio.Event()

    @property
    def detail(self) -> str:
        """One line for /ready and the log: what failed and what happens next."""
        if self.writable:
            return ""
        if self.needs_restart:
            return f"storage failing, needs a restart: {self.reason}"
        return f"storage failing, waiting for RocksDB to resume (free disk space): {self.reason}"

    def failed(self, error: str) -> None:
        """A write or an fsync failed (trio thread): log once, turn not ready, probe."""
        if self.writable:
            self.writable = False
            self.failures += 1
            self.reason = error
            self.needs_restart = needs_restart(error)
            log.error("%s; reads are still served", self.detail)
            if self.on_failing is not None:
                self.on_failing()
            self._wake.set()

    def _recovered(self) -> None:
        self.writable = True
        self.needs_restart = False
        log.info("storage writable again (was: %s)", self.reason)
        self.reason = ""

    async def run(self, engine: Engine) -> None:
        """Watch RocksDB's background errors; probe while failing. Runs until cancelled."""
        limiter = trio.CapacityLimiter(1)
        seen = engine.db.property_int(BACKGROUND_ERRORS)
        while True:
            if self.writable:
                with trio.move_on_after(POLL_INTERVAL):
                    await self._wake.wait()
                self._wake = trio.Event()
                errors = engine.db.property_int(BACKGROUND_ERRORS)
                if errors > seen and self.writable:
                    error = await trio.to_thread.run_sync(_probe, engine, limiter=limiter)
                    if error:
                        self.failed(error)
                seen = errors
                continue
            await trio.sleep(PROBE_INTERVAL)
            error = await trio.to_thread.run_sync(_probe, engine, limiter=limiter)
            if not error:
                self._recovered()
            elif needs_restart(error) and not self.needs_restart:
                self.needs_restart = True
                self.reason = error
                log.error("%s", self.detail)


def _probe(engine: Engine) -> str:
    """A synced write, a flush of every memtable (a new WAL file), a synced write again.

    Returns:
        "" when all three succeeded, else the error (RocksDB's text).
    """
    db = engine.db
    try:
        for step in range(2):
            db.save_state(PROBE_KEY, struct.pack("<d", time.time()))
            if step == 0:
                db.flush_memtables()
    except StorageError as exc:
        return str(exc)
    return ""
