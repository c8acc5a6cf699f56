"""Faults against the real process: a full disk, a locked data directory, corrupt values.

The disk-full test mounts a small tmpfs (it needs root and a kernel that allows mounts; it
is skipped, saying why, where either is missing) and fills it with a ballast file.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import rocksdict

from tests.harness import PetracacheProcess, RawClient, cmds, wait_until

SMALL_BUFFERS = """
[storage]
write_buffer_size = 1048576
target_file_size_base = 1048576
block_cache_size = 1048576
"""


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(path: Path, leave: int) -> None:
    """Write a ballast file until only ``leave`` bytes stay free on the filesystem."""
    st = os.statvfs(path.parent)
    free = st.f_bavail * st.f_frsize
    chunk = b"\0" * (1 << 20)
    with open(path, "wb") as f:
        remaining = max(free - leave, 0)
        while remaining > 0:
            f.write(chunk[: min(remaining, len(chunk))])
            remaining -= len(chunk)


def _fill_until_refused(
    server: PetracacheProcess, client: RawClient, value: bytes
) -> tuple[RawClient, list[bytes]]:
    """Set big values until the disk refuses one: (a live client, the keys acknowledged).

    The write whose commit fails is never acknowledged: it is answered ``SERVER_ERROR``, or
    (a reactor pass's batch failed) its connection is closed without a reply, since the
    pass's replies cannot be sent (docs/operations.md, faults); then a new client is made.
    """
    stored: list[bytes] = []
    for i in range(200):
        key = b"big:%d" % i
        try:
            reply = client.call(b"set %b 0 0 %d\r\n%b\r\n" % (key, len(value), value))
        except ConnectionError:
            client.close()
            return server.client(), stored
        if reply != b"STORED\r\n":
            assert reply.startswith(b"SERVER_ERROR "), reply
            return client, stored
        stored.append(key)
    raise AssertionError("the disk never filled")


def test_disk_full_fails_writes_keeps_reads_and_recovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "32m") as mnt:
        # No hot items and no key sizes: then a first get writes its fetch record to
        # RocksDB at once (with either it stays in memory), which is the side write this
        # test makes fail.
        server = PetracacheProcess(
            tmp_path / "pc",
            args=["--db-path", str(mnt / "db"), "--hot-cache-size", "0"],
            config=SMALL_BUFFERS + "exact_item_count = false\n",
        )
        with server:
            client = server.client()
            assert client.call(cmds(["set keep 7 0 5", "hello"])) == b"STORED\r\n"
            _fill(mnt / "ballast", leave=512 * 1024)
            value = os.urandom(60_000)
            client, _stored = _fill_until_refused(server, client, value)
            # Once a commit has failed, every write is refused on its own, with the reason.
            reply = client.call(b"set big 0 0 %d\r\n%s\r\n" % (len(value), value))
            assert reply.startswith(b"SERVER_ERROR "), reply
            assert b"No space left on device" in reply
            # Reads keep working, on this connection and on a new one; nothing crashed.
            assert client.call(b"get keep\r\n") == b"VALUE keep 7 5\r\nhello\r\nEND\r\n"
            other = server.client()
            assert other.call(b"get keep\r\n") == b"VALUE keep 7 5\r\nhello\r\nEND\r\n"
            assert client.call(cmds(["set small 0 0 1", "x"])).startswith(b"SERVER_ERROR ")
            # The first get of "keep" could not record its fetch on disk: counted, not fatal.
            assert b"STAT read_write_failures 0\r\n" not in client.call(b"stats\r\n")
            assert server.proc is not None
            assert server.proc.poll() is None
            # Free the space: RocksDB clears the error by itself (it polls every 5 s).
            (mnt / "ballast").unlink()
            wait_until(
                lambda: client.call(cmds(["set small 0 0 1", "x"])) == b"STORED\r\n",
                60,
                0.25,
                "a write stored again",
            )
            assert client.call(b"get keep small\r\n") == (
                b"VALUE keep 7 5\r\nhello\r\nVALUE small 0 1\r\nx\r\nEND\r\n"
            )
            client.close()
            other.close()
            assert server.stop() == 0
        # Everything acknowledged survives a restart on the same filesystem.
        with server.start():
            client = server.client()
            assert client.call(b"get keep small\r\n") == (
                b"VALUE keep 7 5\r\nhello\r\nVALUE small 0 1\r\nx\r\nEND\r\n"
            )
            client.close()


def test_shutdown_on_a_full_disk_reports_and_loses_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "32m") as mnt:
        server = PetracacheProcess(
            tmp_path / "pc", args=["--db-path", str(mnt / "db")], config=SMALL_BUFFERS
        )
        server.start()
        client = server.client()
        assert client.call(cmds(["set keep 7 0 5", "hello"])) == b"STORED\r\n"
        _fill(mnt / "ballast", leave=512 * 1024)
        value = os.urandom(60_000)
        client, stored = _fill_until_refused(server, client, value)
        client.close()
        # The memtables cannot be flushed: one clear line, a non-zero exit, no traceback.
        assert server.stop() == 1
        log = server.log()
        assert "petracache: storage.db_path: closing the database: IO error" in log
        assert "Traceback" not in log
        (mnt / "ballast").unlink()
        with server.start():
            client = server.client()
            assert client.call(b"get keep\r\n") == b"VALUE keep 7 5\r\nhello\r\nEND\r\n"
            for key in stored:
                assert client.call(b"get " + key + b"\r\n").count(value) == 1
            client.close()


def test_locked_data_directory_is_refused_without_damage(tmp_path: Path) -> None:
    with PetracacheProcess(tmp_path / "first") as first:
        client = first.client()
        assert client.call(cmds(["set k 3 0 2", "v1"])) == b"STORED\r\n"
        second = subprocess.run(
            [sys.executable, "-m", "petracache", "-p", "0", "--db-path", str(first.db_path)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PETRACACHE_METRICS__LISTEN_ADDR": "127.0.0.1:0"},
        )
        assert second.returncode == 1
        assert "locked by another process" in second.stderr
        assert "Traceback" not in second.stderr
        # The first instance still serves, and its data is untouched.
        assert client.call(b"get k\r\n") == b"VALUE k 3 2\r\nv1\r\nEND\r\n"
        assert client.call(cmds(["set k2 0 0 2", "v2"])) == b"STORED\r\n"
        client.close()
        assert first.stop() == 0
        first.start()
        client = first.client()
        assert client.call(b"get k k2\r\n") == b"VALUE k 3 2\r\nv1\r\nVALUE k2 0 2\r\nv2\r\nEND\r\n"
        client.close()


CORRUPT = {
    b"c:empty": b"",
    b"c:short": b"\x01\x00\x00",
    b"c:version": b"\x09" + b"\0" * 30 + b"payload",
    b"c:header-only": b"\x01" + b"\0" * 10,
}


def _write_raw(db_path: Path, items: dict[bytes, bytes]) -> None:
    path = str(db_path)
    opts = rocksdict.Options(raw_mode=True)
    families = {
        name: rocksdict.Options(raw_mode=True)
        for name in rocksdict.Rdict.list_cf(path, opts)
        if name != "default"
    }
    db = rocksdict.Rdict(path, opts, column_families=families)
    try:
        for key, raw in items.items():
            db[key] = raw
    finally:
        db.close()


def test_corrupt_values_are_misses_and_counted(tmp_path: Path) -> None:
    server = PetracacheProcess(tmp_path / "pc")
    with server:
        client = server.client()
        assert client.call(cmds(["set good 5 0 4", "fine"])) == b"STORED\r\n"
        client.close()
    _write_raw(server.db_path, CORRUPT)
    with server.start():
        client = server.client()
        for key in CORRUPT:
            k = key.decode()
            assert client.call(f"get {k}\r\n".encode()) == b"END\r\n"
            assert client.call(f"get good {k} good\r\n".encode()) == (
                b"VALUE good 5 4\r\nfine\r\nVALUE good 5 4\r\nfine\r\nEND\r\n"
            )
            assert client.call(f"gets {k}\r\n".encode()) == b"END\r\n"
            assert client.call(f"gat 0 {k}\r\n".encode()) == b"END\r\n"
            assert client.call(f"incr {k} 1\r\n".encode()) == b"NOT_FOUND\r\n"
            assert client.call(f"touch {k} 0\r\n".encode()) == b"NOT_FOUND\r\n"
            assert client.call(cmds([f"append {k} 0 0 1", "x"])) == b"NOT_STORED\r\n"
            assert client.call(cmds([f"replace {k} 0 0 1", "x"])) == b"NOT_STORED\r\n"
        # Overwriting a corrupt value repairs it.
        assert client.call(cmds(["add c:empty 1 0 2", "ok"])) == b"STORED\r\n"
        assert client.call(cmds(["set c:short 2 0 2", "ok"])) == b"STORED\r\n"
        assert client.call(b"get c:empty c:short\r\n") == (
            b"VALUE c:empty 1 2\r\nok\r\nVALUE c:short 2 2\r\nok\r\nEND\r\n"
        )
        stats = client.call(b"stats\r\n")
        counted = [line for line in stats.split(b"\r\n") if line.startswith(b"STAT corrupt_values")]
        assert counted, stats
        assert int(counted[0].split()[2]) >= 8 * len(CORRUPT) - 2
        assert client.call(b"get good\r\n") == b"VALUE good 5 4\r\nfine\r\nEND\r\n"
        client.close()
