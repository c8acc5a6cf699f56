"""The fault-injecting file system loses exactly what was not made durable, and fails on command.

Every test mounts it (skipped, with the reason, where FUSE cannot mount) and drives it
through the kernel with ordinary system calls, as RocksDB does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faultfs.mount import FaultFS


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[FaultFS]:
    with FaultFS(tmp_path) as mounted:
        yield mounted


def write(path: Path, data: bytes, *, sync: bool, mode: str = "wb") -> None:
    with open(path, mode) as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())


def sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_a_crash_keeps_synced_data_and_loses_the_rest(fs: FaultFS) -> None:
    root = fs.path
    write(root / "a", b"x" * 10_000, sync=True)
    write(root / "a", b"unsynced tail", sync=False, mode="ab")
    write(root / "b", b"synced", sync=True)
    with open(root / "b", "r+b") as f:  # an overwrite in the middle, never synced
        f.seek(2)
        f.write(b"XX")
    sync_dir(root)
    assert (root / "a").stat().st_size == 10_013  # everything is there until the cut
    assert fs.stats()["unsynced_pages"] == 2
    assert fs.crash()["lost_pages"] == 2
    assert (root / "a").read_bytes() == b"x" * 10_000
    assert (root / "b").read_bytes() == b"synced"
    assert fs.stats()["unsynced_pages"] == 0


def test_fdatasync_counts_as_a_sync(fs: FaultFS) -> None:
    with open(fs.path / "a", "wb") as f:
        f.write(b"data")
        f.flush()
        os.fdatasync(f.fileno())
    sync_dir(fs.path)
    fs.crash()
    assert (fs.path / "a").read_bytes() == b"data"


def test_names_are_durable_only_once_their_directory_is_synced(fs: FaultFS) -> None:
    root = fs.path
    write(root / "kept", b"1", sync=True)
    write(root / "renamed", b"2", sync=True)
    write(root / "unlinked", b"3", sync=True)
    sync_dir(root)
    write(root / "new", b"4", sync=True)  # its data is synced, its name is not
    os.rename(root / "renamed", root / "renamed.new")
    os.unlink(root / "unlinked")
    fs.crash()
    assert sorted(os.listdir(root)) == ["kept", "renamed", "unlinked"]
    assert (root / "renamed").read_bytes() == b"2"
    assert (root / "unlinked").read_bytes() == b"3"
    # The same changes followed by the directory's fsync are kept.
    write(root / "new", b"4", sync=True)
    os.rename(root / "renamed", root / "renamed.new")
    os.unlink(root / "unlinked")
    sync_dir(root)
    fs.crash()
    assert sorted(os.listdir(root)) == ["kept", "new", "renamed.new"]
    assert (root / "new").read_bytes() == b"4"


def test_a_synced_name_without_synced_data_comes_back_empty(fs: FaultFS) -> None:
    write(fs.path / "a", b"never synced", sync=False)
    sync_dir(fs.path)
    fs.crash()
    assert (fs.path / "a").read_bytes() == b""


def test_a_new_directory_needs_its_parent_synced(fs: FaultFS) -> None:
    # What os.makedirs then RocksDB do: the innermost directory and its files are synced,
    # the name of the directory above is not.
    inner = fs.path / "a" / "b"
    inner.mkdir(parents=True)
    write(inner / "f", b"data", sync=True)
    sync_dir(inner)
    sync_dir(fs.path / "a")
    fs.crash()
    assert os.listdir(fs.path) == []  # "a" was never made durable: all of it is gone
    inner.mkdir(parents=True)
    write(inner / "f", b"data", sync=True)
    sync_dir(inner)
    sync_dir(fs.path / "a")
    sync_dir(fs.path)
    fs.crash()
    assert (inner / "f").read_bytes() == b"data"


def test_truncation_follows_the_sync(fs: FaultFS) -> None:
    path = fs.path / "a"
    write(path, b"0123456789" * 1000, sync=True)
    sync_dir(fs.path)
    os.truncate(path, 5)
    fs.crash()
    assert path.stat().st_size == 10_000  # the truncation was not synced
    with open(path, "r+b") as f:
        f.truncate(5)
        f.truncate(8000)  # shrink, then grow: the gap reads as zeros
        f.seek(7000)
        f.write(b"end")
        f.flush()
        os.fsync(f.fileno())
    fs.crash()
    data = path.read_bytes()
    assert data[:5] == b"01234"
    assert data[5:7000] == b"\0" * 6995
    assert data[7000:7003] == b"end"
    assert len(data) == 8000


def test_hard_links_share_their_content(fs: FaultFS) -> None:
    write(fs.path / "a", b"old", sync=True)
    os.link(fs.path / "a", fs.path / "b")
    sync_dir(fs.path)
    write(fs.path / "b", b"new", sync=True, mode="r+b")
    fs.crash()
    assert (fs.path / "a").read_bytes() == (fs.path / "b").read_bytes() == b"new"
    assert (fs.path / "a").stat().st_ino == (fs.path / "b").stat().st_ino


def test_a_failed_fsync_is_not_made_good_by_the_next_one(fs: FaultFS) -> None:
    # Linux drops the pages a failed write-back could not write; the next fsync succeeds
    # without them (PostgreSQL's fsyncgate). Whoever retried and trusted it loses data.
    path = fs.path / "wal.log"
    write(path, b"first;", sync=True)
    sync_dir(fs.path)
    fs.fail("*.log", "fsync", "EIO")
    with open(path, "ab") as f:
        f.write(b"lost;")
        f.flush()
        with pytest.raises(OSError, match="Input/output error"):
            os.fsync(f.fileno())
        os.fsync(f.fileno())  # succeeds: nothing is dirty any more
    assert path.read_bytes() == b"first;lost;"  # still readable until the cut
    fs.crash()
    # The second fsync made the new size durable, not the bytes: a hole, as in a WAL whose
    # failed fsync was followed by a successful one.
    assert path.read_bytes() == b"first;" + b"\0" * 5


def test_faults_hit_matching_paths_only_and_count_down(fs: FaultFS) -> None:
    fs.fail("*/MANIFEST-*", "write", "ENOSPC", times=2)
    write(fs.path / "000001.sst", b"fine", sync=True)  # another file writes
    with open(fs.path / "MANIFEST-000001", "wb", buffering=0) as f:
        for _ in range(2):
            with pytest.raises(OSError, match="No space left on device"):
                f.write(b"x")
        assert f.write(b"x") == 1  # the rule is spent
    assert fs.stats()["injected"] == 2


def test_a_fault_without_a_count_lasts_until_cleared(fs: FaultFS) -> None:
    fs.fail("*", "write", "ENOSPC", times=None)  # a full disk
    with open(fs.path / "a", "wb", buffering=0) as f:
        for _ in range(3):
            with pytest.raises(OSError, match="No space left on device"):
                f.write(b"x")
        fs.clear()
        assert f.write(b"x") == 1
    fs.fail("/sub*", "create", "EIO")
    with pytest.raises(OSError, match="Input/output error"):
        (fs.path / "sub").mkdir()
    (fs.path / "sub").mkdir()


def test_a_crash_is_refused_while_files_are_open(fs: FaultFS) -> None:
    with open(fs.path / "a", "wb"), pytest.raises(RuntimeError, match="still open"):
        fs.crash(wait=0.2)
    fs.crash()
