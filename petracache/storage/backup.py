"""Online backup (a RocksDB checkpoint of the serving database) and offline restore.

Backup strategy: RocksDB's checkpoint hard-links the live SST files and copies the rest
(MANIFEST, OPTIONS, the live WAL), after flushing memtables, into a new directory: a
consistent database as of one moment, made while the server keeps serving. Before it, the
WAL is synced and every family's memtables are flushed in calls that release the GIL, so the
checkpoint itself (which rocksdict runs holding the GIL) has little left to flush and the
data plane stalls for milliseconds, not for a whole memtable flush (docs/runbook-backup.md
has the measured figure).

Invariants:

* Every write acknowledged before ``create()`` starts is in the backup: commands run on the
  trio thread and reach RocksDB before their reply is sent, and the checkpoint is taken
  after the request arrived. That includes the ``meta`` family (CAS high-water mark, flush
  state, index completeness), which is part of the same database.
* A backup directory exists under its final name only once it is complete: it is built as
  ``.<name>.partial`` and renamed, and carries ``MARKER`` (what it is, when, from where).
* One backup at a time (``BackupBusy`` for a second); ``detach()`` waits for a running one,
  so the engine is never closed under a checkpoint.
* Names sort by creation time (``petracache-YYYYmmddTHHMMSS.ffffffZ``, UTC); after each
  backup all but the newest ``keep`` are deleted.

Restore strategy: copy the backup into a temporary sibling of the target (each file fsynced,
so the restored database survives a power cut), open the copy to
check that it is a petracache database, move the CAS high-water mark ``RESTORE_CAS_SKIP``
ahead (the original server may have handed out ids past the backup's mark; a restored
server must not hand the same ones out again), then rename the copy into place. The backup
itself is never opened or modified.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from petracache.storage import rocks
from petracache.storage.cas import CAS_KEY
from petracache.storage.dirs import fsync_dir, makedirs_durable
from petracache.storage.engine import Engine
from petracache.storage.errors import StorageError
from petracache.storage.flush import FLUSH_KEY
from petracache.storage.index import INDEX_STATE_KEY
from petracache.storage.rocks import META_CF

MARKER = "PETRACACHE_BACKUP.json"
NAME_PREFIX = "petracache-"
NAME_FORMAT = NAME_PREFIX + "%Y%m%dT%H%M%S.%fZ"
PARTIAL_SUFFIX = ".partial"
# Ids a restored server skips past the backup's CAS mark: 2**32 writes after the backup on
# the original server would be needed before a stale CAS could match a restored item.
RESTORE_CAS_SKIP = 1 << 32
_U64 = struct.Struct("<Q")


class BackupError(StorageError):
    """A backup could not be made, or a directory is not a usable petracache backup."""


class BackupBusy(BackupError):
    """Another backup is being made."""


class BackupUnavailable(BackupError):
    """The database is not open (starting or stopping)."""


class RestoreRefused(BackupError):
    """The restore target is in use or not empty (and ``force`` was not given)."""


def default_backup_dir(db_path: str) -> str:
    """``storage.backup_dir`` when unset: ``<db_path>.backups`` beside the database."""
    return os.path.abspath(db_path).rstrip(os.sep) + ".backups"


@dataclass(frozen=True, slots=True)
class BackupResult:
    """A finished backup."""

    path: str
    seconds: float
    removed: list[str]


class Backups:
    """Makes checkpoints of the attached engine under ``backup_dir``.

    Args:
        backup_dir: where backups go (created when needed).
        keep: how many backups to keep (older ones are deleted after each backup).
        clock: Unix time, for names (injected for tests).
    """

    def __init__(self, backup_dir: str, keep: int, clock: Callable[[], float] = time.time) -> None:
        self.backup_dir = os.path.abspath(backup_dir)
        self.keep = keep
        self._clock = clock
        self._lock = threading.Lock()
        self._engine: Engine | None = None

    def attach(self, engine: Engine) -> None:
        """Back up ``engine`` from now on (called once the database is open)."""
        with self._lock:
            self._engine = engine

    def detach(self) -> None:
        """Stop backing up; waits for a running backup (call before closing the engine)."""
        with self._lock:
            self._engine = None

    def create(self) -> BackupResult:
        """Make one backup (blocking: call it from a worker thread).

        Raises:
            BackupBusy: a backup is already being made.
            BackupUnavailable: no database is attached.
            BackupError: RocksDB or the filesystem failed; nothing is left under a final name.
        """
        if not self._lock.acquire(blocking=False):
            raise BackupBusy("a backup is already running")
        try:
            if self._engine is None:
                raise BackupUnavailable("the database is not open")
            return self._create(self._engine)
        finally:
            self._lock.release()

    def _create(self, engine: Engine) -> BackupResult:
        started = time.perf_counter()
        now = datetime.datetime.fromtimestamp(self._clock(), datetime.UTC)
        name = now.strftime(NAME_FORMAT)
        final = os.path.join(self.backup_dir, name)
        partial = os.path.join(self.backup_dir, f".{name}{PARTIAL_SUFFIX}")
        db: Any = engine.db.items
        try:
            makedirs_durable(self.backup_dir)
            rocks.checkpoint(db, partial)
            _write_marker(partial, engine, now)
            fsync_dir(partial)
            os.rename(partial, final)
            fsync_dir(self.backup_dir)
        except Exception as exc:  # rocksdict raises bare Exception; OSError from the fs
            shutil.rmtree(partial, ignore_errors=True)
            raise BackupError(f"backup to {self.backup_dir} failed: {exc}") from exc
        removed = self._prune()
        return BackupResult(final, time.perf_counter() - started, removed)

    def existing(self) -> list[str]:
        """Complete backups, oldest first."""
        try:
            names = os.listdir(self.backup_dir)
        except FileNotFoundError:
            return []
        paths = (os.path.join(self.backup_dir, n) for n in names if n.startswith(NAME_PREFIX))
        return sorted(p for p in paths if os.path.exists(os.path.join(p, MARKER)))

    def _prune(self) -> list[str]:
        old = self.existing()[: -self.keep] if self.keep else []
        for path in old:
            shutil.rmtree(path, ignore_errors=True)
        return old


def _write_marker(path: str, engine: Engine, when: datetime.datetime) -> None:
    oldest_live, oldest_cas = engine.flush_state
    info = {
        "format": 1,
        "created": when.isoformat(),
        "db_path": os.path.abspath(engine.settings.db_path),
        "cas_at_backup": engine.current_cas,
        "flush_state": [oldest_live, oldest_cas],
    }
    with open(os.path.join(path, MARKER), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


# -- restore (offline) ---------------------------------------------------------------------


def check_backup_dir(backup: str) -> None:
    """Refuse a directory that is plainly not a petracache backup, before copying it.

    Raises:
        BackupError: no such directory, or it lacks the backup marker or RocksDB's files.
    """
    if not os.path.isdir(backup):
        raise BackupError(f"{backup}: no such directory")
    for required in (MARKER, "CURRENT"):
        if not os.path.exists(os.path.join(backup, required)):
            raise BackupError(f"{backup}: not a petracache backup (no {required})")


def target_in_use(db_path: str) -> bool:
    """Whether a running process (petracache) holds RocksDB's LOCK file in ``db_path``."""
    try:
        fd = os.open(os.path.join(db_path, "LOCK"), os.O_RDWR)
    except OSError:
        return False  # no LOCK file: no database was ever opened there
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return True
        raise
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def check_target(db_path: str, force: bool) -> None:
    """Refuse a target a running server holds, or one that is not empty without ``force``.

    Raises:
        RestoreRefused: with the reason.
    """
    if os.path.exists(db_path) and not os.path.isdir(db_path):
        raise RestoreRefused(f"{db_path}: exists and is not a directory")
    if target_in_use(db_path):
        raise RestoreRefused(f"{db_path}: in use by a running petracache (stop it first)")
    if os.path.isdir(db_path) and os.listdir(db_path) and not force:
        raise RestoreRefused(f"{db_path}: not empty (use --force to replace its contents)")


def _open_and_bump(path: str) -> int:
    """Open the copy as a petracache database and move its CAS mark; returns the new mark.

    Raises:
        BackupError: RocksDB cannot open it, or it has no petracache metadata.
    """
    try:
        families = rocks.families_of(path)
    except Exception as exc:
        raise BackupError(f"not a RocksDB database: {exc}") from exc
    if META_CF not in families:
        raise BackupError("not a petracache database (no meta column family)")
    try:
        db = rocks.open_existing(path)
    except Exception as exc:
        raise BackupError(f"the backup does not open: {exc}") from exc
    try:
        meta = db.get_column_family(META_CF)
        if all(meta.get(key) is None for key in (CAS_KEY, FLUSH_KEY, INDEX_STATE_KEY)):
            raise BackupError("not a petracache database (no petracache metadata)")
        raw = meta.get(CAS_KEY)
        mark = (_U64.unpack(raw)[0] if raw else 0) + RESTORE_CAS_SKIP
        rocks.put_synced(meta, CAS_KEY, _U64.pack(mark))
        db.flush(True)
        return mark
    finally:
        db.close()


def _copy_synced(source: str, target: str) -> None:
    """Copy a file and fsync the copy: a restored database must survive a power cut."""
    shutil.copy2(source, target)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def restore(backup: str, db_path: str, force: bool = False) -> int:
    """Restore ``backup`` into ``db_path`` (no server may run on it). Returns the CAS mark.

    Raises:
        RestoreRefused: the target is in use or not empty (without ``force``).
        BackupError: the backup is not a usable petracache backup; the target is untouched.
    """
    backup = os.path.abspath(backup)
    db_path = os.path.abspath(db_path.rstrip(os.sep) or os.sep)
    check_backup_dir(backup)
    check_target(db_path, force)
    staging = f"{db_path}.restoring"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        makedirs_durable(os.path.dirname(db_path))
        shutil.copytree(
            backup,
            staging,
            ignore=shutil.ignore_patterns(MARKER, "LOCK"),
            copy_function=_copy_synced,
        )
        fsync_dir(staging)
        mark = _open_and_bump(staging)
    except BackupError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BackupError(f"copying {backup}: {exc}") from exc
    check_target(db_path, force)  # again: a server may have started on it meanwhile
    if os.path.isdir(db_path):
        shutil.rmtree(db_path)
    os.rename(staging, db_path)
    fsync_dir(os.path.dirname(db_path))
    return mark
