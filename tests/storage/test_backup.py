"""Backups of an open engine and offline restores, on real RocksDB directories."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from petracache.rules.verbs import StoreMode
from petracache.storage.backup import (
    MARKER,
    RESTORE_CAS_SKIP,
    BackupBusy,
    BackupError,
    Backups,
    BackupUnavailable,
    RestoreRefused,
    default_backup_dir,
    restore,
)
from petracache.storage.engine import Engine
from petracache.storage.items import Item
from tests.storage.engines import Clock, open_engine


def _backups(tmp_path: Path, keep: int = 2) -> Backups:
    ticks = iter(range(1_700_000_000, 1_800_000_000))
    return Backups(str(tmp_path / "backups"), keep, clock=lambda: float(next(ticks)))


def test_default_dir_is_beside_the_database() -> None:
    assert default_backup_dir("/var/lib/petracache/db/") == "/var/lib/petracache/db.backups"


def test_backup_holds_every_write_cas_mark_and_flush_state(
    tmp_path: Path, engine: Engine, clock: Clock
) -> None:
    engine.store(StoreMode.SET, b"old", 0, 0, b"flushed away")
    engine.flush_all(0)
    clock.now += 1
    for i in range(200):
        engine.store(StoreMode.SET, b"k%d" % i, i, 0, b"v%d" % i)
    last_cas = engine.current_cas
    backups = _backups(tmp_path)
    backups.attach(engine)
    result = backups.create()
    assert Path(result.path).name.startswith("petracache-2023")
    marker = json.loads((Path(result.path) / MARKER).read_text())
    assert marker["cas_at_backup"] == last_cas
    assert marker["flush_state"] == list(engine.flush_state)

    target = tmp_path / "restored"
    mark = restore(result.path, str(target))
    assert mark >= last_cas + RESTORE_CAS_SKIP
    again = open_engine(target, clock)
    try:
        assert again.fetch(b"old") is None  # the flush still covers it
        for i in range(200):
            item = again.fetch(b"k%d" % i)
            assert item is not None
            assert item.data == b"v%d" % i
            assert item.flags == i
        assert again.flush_state == engine.flush_state
        new = again.store(StoreMode.SET, b"new", 0, 0, b"x")
        assert isinstance(new, Item)
        assert new.cas > mark
    finally:
        again.close()
    assert not (target / MARKER).exists()


def test_keep_prunes_the_oldest(tmp_path: Path, engine: Engine) -> None:
    backups = _backups(tmp_path, keep=2)
    backups.attach(engine)
    made = [backups.create().path for _ in range(4)]
    assert backups.existing() == made[2:]


def test_one_backup_at_a_time_and_none_without_a_database(tmp_path: Path, engine: Engine) -> None:
    backups = _backups(tmp_path)
    with pytest.raises(BackupUnavailable):
        backups.create()
    backups.attach(engine)
    holder = threading.Thread(target=backups.detach)
    with backups._lock:  # a backup "running"
        with pytest.raises(BackupBusy):
            backups.create()
        holder.start()  # detach waits for it
        holder.join(0.05)
        assert holder.is_alive()
    holder.join()
    with pytest.raises(BackupUnavailable):
        backups.create()


def test_restore_refusals_leave_the_target_alone(tmp_path: Path, engine: Engine) -> None:
    backups = _backups(tmp_path)
    backups.attach(engine)
    path = backups.create().path
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.me").write_text("data")
    with pytest.raises(RestoreRefused, match="not empty"):
        restore(path, str(busy))
    assert (busy / "keep.me").read_text() == "data"
    with pytest.raises(BackupError, match="not a petracache backup"):
        restore(str(busy), str(tmp_path / "t1"))
    with pytest.raises(BackupError, match="no such directory"):
        restore(str(tmp_path / "nothing"), str(tmp_path / "t2"))
    assert not (tmp_path / "t1").exists()
    assert not (tmp_path / "t2").exists()
    restore(path, str(busy), force=True)
    assert not (busy / "keep.me").exists()


def test_restore_refuses_a_rocksdb_that_is_not_petracache(tmp_path: Path) -> None:
    import rocksdict

    fake = tmp_path / "fake"
    db = rocksdict.Rdict(str(fake))
    db[b"k"] = b"v"
    db.close()
    (fake / MARKER).write_text("{}")
    with pytest.raises(BackupError, match="not a petracache database"):
        restore(str(fake), str(tmp_path / "target"))
    assert not (tmp_path / "target").exists()
    assert not (tmp_path / "target.restoring").exists()
