"""Start-up and graceful shutdown of a real process: /ready while the database recovers,
and SIGTERM/SIGINT with clients mid-pipeline.

What must hold: every request a client sent before the signal gets its full reply, then
the connection closes cleanly (EOF, no partial reply); /ready turns 503 while draining;
the process exits 0 with the database closed (the data is there after a restart); a client
that never reads cannot hold the shutdown past ``server.shutdown_grace``.
"""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.harness import PetracacheProcess, unread_bytes, wait_until

pytestmark = pytest.mark.integration


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def read_to_eof(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_pipelined_requests_in_flight_all_get_replies(tmp_path: Path, sig: int) -> None:
    clients, per_client = 8, 300
    proc = PetracacheProcess(tmp_path).start()
    socks = [socket.create_connection(("127.0.0.1", proc.port), timeout=30) for _ in range(clients)]
    for s in socks:  # accepted and served (a connection still in the backlog is not in flight)
        s.sendall(b"version\r\n")
        assert s.recv(100).startswith(b"VERSION ")
    expected: list[bytes] = []
    for i, s in enumerate(socks):
        batch = []
        replies = []
        for j in range(per_client):
            value = b"v%d-%d" % (i, j)
            batch.append(b"set k%d-%d 0 0 %d\r\n%s\r\n" % (i, j, len(value), value))
            batch.append(b"get k%d-%d\r\n" % (i, j))
            replies.append(b"STORED\r\n")
            replies.append(b"VALUE k%d-%d 0 %d\r\n%s\r\nEND\r\n" % (i, j, len(value), value))
        s.sendall(b"".join(batch))  # the whole pipeline is on its way before the signal
        expected.append(b"".join(replies))
    assert proc.proc is not None
    proc.proc.send_signal(sig)
    for s, want in zip(socks, expected, strict=True):
        assert read_to_eof(s) == want  # every reply, complete, then a clean close
        s.close()
    assert proc.stop() == 0
    assert "database closed" in proc.log()
    client = proc.start().client()  # the same database, reopened
    got = client.call(b"get k7-299\r\n")
    assert got == b"VALUE k7-299 0 6\r\nv7-299\r\nEND\r\n"
    proc.stop()


def test_ready_is_503_while_draining_and_the_slow_reader_gets_everything(tmp_path: Path) -> None:
    proc = PetracacheProcess(tmp_path, args=["--shutdown-grace", "60"]).start()
    base = proc.admin_url()
    assert status_of(base + "/ready") == 200
    value = b"x" * 512 * 1024
    setup = proc.client()
    assert setup.call(b"set big 0 0 %d\r\n%s\r\n" % (len(value), value)) == b"STORED\r\n"
    setup.close()
    gets = 40  # 20 MiB of replies: the server blocks writing them until we read
    slow = socket.create_connection(("127.0.0.1", proc.port), timeout=30)
    slow.sendall(b"get big\r\n" * gets)
    # The server is executing the batch once replies arrive; it then fills the socket
    # buffers and waits for us.
    wait_until(lambda: unread_bytes(slow), what="the first replies")
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: status_of(base + "/ready") == 503, what="/ready 503")
    assert status_of(base + "/health") == 200
    assert proc.proc.poll() is None  # still draining: it waits for the slow reader
    one = b"VALUE big 0 %d\r\n%s\r\nEND\r\n" % (len(value), value)
    assert read_to_eof(slow) == one * gets
    assert proc.stop() == 0


def test_a_client_that_never_reads_cannot_hold_shutdown_past_the_grace(tmp_path: Path) -> None:
    proc = PetracacheProcess(tmp_path, args=["--shutdown-grace", "0.5"]).start()
    value = b"y" * 512 * 1024
    client = proc.client()
    assert client.call(b"set big 0 0 %d\r\n%s\r\n" % (len(value), value)) == b"STORED\r\n"
    stuck = socket.create_connection(("127.0.0.1", proc.port), timeout=30)
    stuck.sendall(b"get big\r\n" * 40)
    wait_until(lambda: unread_bytes(stuck), what="the first replies")  # now stuck writing
    assert proc.stop(timeout=30) == 0
    assert "database closed" in proc.log()
    stuck.close()


def test_second_signal_ends_the_drain(tmp_path: Path) -> None:
    proc = PetracacheProcess(tmp_path, args=["--shutdown-grace", "600"]).start()
    value = b"z" * 512 * 1024
    client = proc.client()
    assert client.call(b"set big 0 0 %d\r\n%s\r\n" % (len(value), value)) == b"STORED\r\n"
    stuck = socket.create_connection(("127.0.0.1", proc.port), timeout=30)
    stuck.sendall(b"get big\r\n" * 40)
    wait_until(lambda: unread_bytes(stuck), what="the first replies")  # now stuck writing
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)  # a window in which it must not exit
    assert proc.proc.poll() is None  # draining, held by the client that does not read
    assert proc.stop(timeout=30) == 0  # the second SIGTERM
    assert "closing connections now" in proc.log()
    stuck.close()


def test_ready_is_503_while_the_database_recovers(tmp_path: Path) -> None:
    """A restart after kill -9 replays ~100 MB of WAL; meanwhile the sidecar answers 503."""
    env = {"PETRACACHE_STORAGE__WRITE_BUFFER_SIZE": str(512 << 20)}  # keep it all in the WAL
    proc = PetracacheProcess(tmp_path, env=env).start()
    value = b"w" * 1_000_000
    client = proc.client()
    client.send(b"".join(b"set w%d 0 0 %d\r\n%s\r\n" % (i, len(value), value) for i in range(100)))
    for _ in range(100):
        assert client.read_line() == b"STORED\r\n"
    proc.kill()
    offset = proc.log_path.stat().st_size
    seen: list[int] = []

    def poll() -> None:
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline:
            log = proc.log_path.read_text()[offset:]
            found = re.findall(r"admin listening on ([\d.]+):(\d+)", log)
            url = f"http://{found[0][0]}:{found[0][1]}/ready" if found else None
        while url is not None and time.monotonic() < deadline:
            seen.append(status_of(url))
            if seen[-1] == 200:
                return

    poller = threading.Thread(target=poll)
    poller.start()
    proc.start()
    poller.join()
    assert "write-ahead log in a child process" in proc.log()
    assert seen[0] == 503  # the sidecar answered while the database was recovering
    assert seen[-1] == 200
    assert seen == sorted(seen, reverse=True)  # 503s, then 200: never back
    assert proc.client().call(b"get w99\r\n").startswith(b"VALUE w99 0 1000000\r\n")
    assert proc.stop() == 0
