"""Failing writes and fsyncs, and a full disk, on the fault-injecting file system.

petracache runs with its database on ``tests/faultfs``, which makes the writes or fsyncs
of chosen files fail with EIO or ENOSPC. Each test checks the promises of
docs/operations.md ("Faults"): no client is told STORED for a write that may not be
durable; the failure is logged once and counted in ``stats`` and /metrics; /ready answers
503 while writes cannot be made durable, saying whether a restart is needed; reads keep
being served; and either the server recovers by itself once the disk does (ENOSPC on an
SST file or the MANIFEST) or a restart does (anything on the WAL), with every acknowledged
write still there, a power cut included.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.fast_reclaim import stats
from tests.faultfs.mount import FaultFS
from tests.harness import PetracacheProcess, RawClient, cmds, wait_until

pytestmark = pytest.mark.integration

SMALL = """
[storage]
write_buffer_size = 1048576
target_file_size_base = 1048576
"""
FAILING = "storage failing"  # the one ERROR line of a failure streak (server.health)


def _server(fs: FaultFS, durability: str) -> PetracacheProcess:
    """The server on ``fs``, for a ``with`` after the ``FaultFS``: it starts the server and
    stops it when the test ends, failed or not, before the file system is unmounted."""
    return PetracacheProcess(
        fs.workdir / "pc",
        args=["--db-path", str(fs.path / "db"), "--durability", durability],
        config=SMALL,
    )


def _ready(server: PetracacheProcess) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(server.admin_url() + "/ready", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _metric(server: PetracacheProcess, name: str) -> float:
    with urllib.request.urlopen(server.admin_url() + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def _set(client: RawClient, key: str, value: bytes = b"v") -> bytes:
    """The reply to a set, or b"" when the server closed the connection instead."""
    try:
        return client.call(cmds([f"set {key} 0 0 {len(value)}", value]))
    except ConnectionError:
        return b""


def _refused(server: PetracacheProcess, client: RawClient, reply: bytes) -> RawClient:
    """Check the reply to the first write that met the fault: never ``STORED``. It is
    ``SERVER_ERROR``, or, when it failed with its reactor pass's group commit, no reply and
    a closed connection (docs/operations.md, faults); then a new client goes on."""
    if reply == b"":
        client.close()
        return server.client()
    assert reply.startswith(b"SERVER_ERROR "), reply
    return client


def _get(client: RawClient, key: str) -> bytes:
    return client.call(f"get {key}\r\n".encode())


def _value(key: str, value: bytes = b"v") -> bytes:
    return b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key.encode(), len(value), value)


def _failing(server: PetracacheProcess, restart: bool) -> None:
    """/ready, stats and /metrics say that writes cannot be made durable, and why."""
    wait_until(lambda: _ready(server)[0] == 503, what="/ready answering 503")
    status, body = _ready(server)
    assert status == 503
    if restart:
        assert body.startswith("not ready: storage failing, needs a restart: "), body
    else:
        assert body.startswith("not ready: storage failing, waiting for RocksDB"), body
    client = server.client()
    figures = stats(client)
    client.close()
    assert figures["storage_writable"] == 0
    assert figures["storage_needs_restart"] == int(restart)
    assert figures["storage_failures"] == 1
    assert _metric(server, "petracache_storage_writable") == 0
    assert _metric(server, "petracache_storage_needs_restart") == int(restart)


def _logged_once(server: PetracacheProcess) -> None:
    assert server.log().count(FAILING) == 1, server.log()


def _power_cut_keeps(server: PetracacheProcess, fs: FaultFS, acked: list[str]) -> None:
    server.kill()
    fs.clear()
    fs.crash()
    with server.start():
        client = server.client()
        for key in acked:
            assert _get(client, key) == _value(key), key
        assert _ready(server) == (200, "ready\n")
        client.close()


def test_a_failed_wal_fsync_acknowledges_nothing_and_needs_a_restart(tmp_path: Path) -> None:
    with FaultFS(tmp_path / "fs") as fs, _server(fs, "fsync") as server:
        client = server.client()
        acked = [f"keep:{i}" for i in range(20)]
        for key in acked:
            assert _set(client, key) == b"STORED\r\n"
        fs.fail("*.log", "fsync", "EIO")  # once: the next fsync would succeed
        assert _set(client, "unacked") != b"STORED\r\n"  # the connection is closed instead
        other = server.client()
        for i in range(20):  # RocksDB refuses every later write; none is STORED
            assert _set(other, f"later:{i}").startswith(b"SERVER_ERROR "), i
        assert _get(other, "keep:3") == _value("keep:3")  # reads are served
        _failing(server, restart=True)
        client = server.client()
        figures = stats(client)
        assert figures["wal_fsync_failures"] >= 1
        assert figures["storage_errors"] >= 20
        assert _metric(server, "petracache_wal_fsync_failures_total") >= 1
        assert _get(client, "keep:19") == _value("keep:19")
        client.close()
        other.close()
        _logged_once(server)
        _power_cut_keeps(server, fs, acked)


@pytest.mark.parametrize(
    ("durability", "errno"), [("fsync", "EIO"), ("wal", "EIO"), ("fsync", "ENOSPC")]
)
def test_a_failed_wal_write_is_an_error_reply_and_a_restart_clears_it(
    tmp_path: Path, durability: str, errno: str
) -> None:
    with FaultFS(tmp_path / "fs") as fs, _server(fs, durability) as server:
        client = server.client()
        acked = [f"keep:{i}" for i in range(20)]
        for key in acked:
            assert _set(client, key) == b"STORED\r\n"
        fs.fail("*.log", "write", errno)
        client = _refused(server, client, _set(client, "refused"))
        for i in range(10):
            assert _set(client, f"later:{i}").startswith(b"SERVER_ERROR "), i
        assert _get(client, "keep:0") == _value("keep:0")
        assert _get(server.client(), "keep:1") == _value("keep:1")
        _failing(server, restart=True)
        _logged_once(server)
        # The disk is fine again, but RocksDB is not: a restart clears it.
        fs.clear()
        client.close()
        server.stop()  # closing fails on the broken WAL: exit status 1, the data is safe
        with server.start():
            client = server.client()
            assert _get(client, "refused") == b"END\r\n"  # never applied
            assert _set(client, "after") == b"STORED\r\n"
            assert _ready(server) == (200, "ready\n")
            for key in acked:
                assert _get(client, key) == _value(key)
            client.close()


@pytest.mark.parametrize(
    ("glob", "errno"), [("*.sst", "ENOSPC"), ("*/MANIFEST-*", "ENOSPC"), ("*.sst", "EIO")]
)
def test_a_failed_flush_stops_writes_until_space_returns_or_a_restart(
    tmp_path: Path, glob: str, errno: str
) -> None:
    # ENOSPC while writing an SST file (memtable flushes, compactions) or the MANIFEST:
    # RocksDB stops taking writes and resumes by itself once space is free again. EIO
    # there: it does not, and the server says a restart is needed.
    resumes = errno == "ENOSPC"
    value = b"f" * 4000
    with FaultFS(tmp_path / "fs") as fs, _server(fs, "fsync") as server:
        client = server.client()
        fs.fail(glob, "write", errno, times=None)  # failing until cleared
        acked = []
        for i in range(2000):  # 8 MB: several memtables' worth
            reply = _set(client, f"k:{i}", value)
            if reply != b"STORED\r\n":
                client = _refused(server, client, reply)
                break
            acked.append(f"k:{i}")
        else:
            pytest.fail("no write failed")
        assert acked, "the first memtable should have been taken"
        assert _set(client, "more", value).startswith(b"SERVER_ERROR ")
        assert _get(client, acked[0]).count(value) == 1  # reads are served
        _failing(server, restart=not resumes)
        fs.clear()  # space again
        if resumes:
            cleared = time.monotonic()
            wait_until(lambda: _ready(server)[0] == 200, 60, what="ready again")
            took = time.monotonic() - cleared
            print(f"\n{glob} {errno}: ready {took:.1f} s after space returned")
        else:
            client.close()
            server.stop()  # closing may fail on the broken database: the WAL has it all
            server.start()
            client = server.client()
            assert _ready(server) == (200, "ready\n")
        assert _set(client, "more", value) == b"STORED\r\n"
        figures = stats(client)
        assert figures["storage_writable"] == 1
        assert figures["storage_failures"] == int(resumes)  # counted since this start
        _logged_once(server)
        assert ("storage writable again" in server.log()) == resumes
        client.close()
        server.kill()
        fs.crash()  # a power cut: every acknowledged write is there
        with server.start():
            client = server.client()
            for key in [*acked, "more"]:
                assert _get(client, key).count(value) == 1, key
            client.close()
