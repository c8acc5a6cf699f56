"""What survives a restart: SIGTERM (clean) and kill -9 (crash) of a real petracache process.

Values, flags, TTLs, CAS uniques and flush_all state must survive a clean restart; every write
the server acknowledged must survive kill -9 in the middle of a multi-client write load.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.harness import PetracacheProcess, RawClient, wait_until

pytestmark = pytest.mark.integration


def _cas(client: RawClient, key: bytes) -> int:
    reply = client.call(b"gets " + key + b"\r\n")
    match = re.match(rb"VALUE \S+ \d+ \d+ (\d+)\r\n", reply)
    assert match, reply
    return int(match.group(1))


def _wait_for_miss(client: RawClient, key: bytes, limit: float = 15.0) -> None:
    """Poll until ``key`` is gone (its TTL ran out); fail if it outlives ``limit``."""
    wait_until(
        lambda: client.call(b"get " + key + b"\r\n") == b"END\r\n", limit, 0.2, f"{key!r} expired"
    )


def test_values_flags_ttls_cas_survive_sigterm(server: PetracacheProcess) -> None:
    client = server.client()
    assert client.call(b"set plain 0 0 5\r\nhello\r\n") == b"STORED\r\n"
    assert client.call(b"set flagged 4294967295 0 3\r\nabc\r\n") == b"STORED\r\n"
    assert client.call(b"set long 0 100000 2\r\nlv\r\n") == b"STORED\r\n"
    assert client.call(b"set short 0 3 2\r\nsv\r\n") == b"STORED\r\n"
    assert client.call(b"set binary 0 0 4\r\n\x00\r\n\xff\r\n") == b"STORED\r\n"
    assert client.call(b"set counter 0 0 3\r\n100\r\ndecr counter 1\r\n") == b"STORED\r\n99\r\n"
    tokens = {key: _cas(client, key) for key in (b"plain", b"flagged", b"counter")}
    client.close()

    assert server.restart(signal.SIGTERM).proc is not None
    client = server.client()
    assert client.call(b"get plain flagged binary counter long\r\n") == (
        b"VALUE plain 0 5\r\nhello\r\n"
        b"VALUE flagged 4294967295 3\r\nabc\r\n"
        b"VALUE binary 0 4\r\n\x00\r\n\xff\r\n"
        b"VALUE counter 0 3\r\n99 \r\n"
        b"VALUE long 0 2\r\nlv\r\n"
        b"END\r\n"
    )
    # CAS uniques are kept: an unchanged item still matches its old token ...
    assert _cas(client, b"plain") == tokens[b"plain"]
    assert client.call(b"cas plain 0 0 1 %d\r\nx\r\n" % tokens[b"plain"]) == b"STORED\r\n"
    # ... a changed one does not, and new uniques are above every old one
    assert client.call(b"set flagged 0 0 1\r\ny\r\n") == b"STORED\r\n"
    assert client.call(b"cas flagged 0 0 1 %d\r\nz\r\n" % tokens[b"flagged"]) == b"EXISTS\r\n"
    assert _cas(client, b"flagged") > max(tokens.values())
    # and the short TTL is still counting: the item expires, the long one stays
    _wait_for_miss(client, b"short")
    assert client.call(b"get long\r\n") == b"VALUE long 0 2\r\nlv\r\nEND\r\n"
    client.close()


def test_gets_token_from_before_a_restart_never_matches_a_new_value(
    server: PetracacheProcess,
) -> None:
    client = server.client()
    client.call(b"set k 0 0 1\r\na\r\n")
    old = _cas(client, b"k")
    client.close()
    server.restart(signal.SIGTERM)
    client = server.client()
    for value in (b"b", b"c", b"d"):  # several new versions: none may reuse the old token
        assert client.call(b"set k 0 0 1\r\n" + value + b"\r\n") == b"STORED\r\n"
        assert client.call(b"cas k 0 0 1 %d\r\nx\r\n" % old) == b"EXISTS\r\n"
    client.close()
    server.restart(signal.SIGKILL)  # a crash does not reuse tokens either
    client = server.client()
    client.call(b"set k 0 0 1\r\ne\r\n")
    assert _cas(client, b"k") > old
    assert client.call(b"cas k 0 0 1 %d\r\nx\r\n" % old) == b"EXISTS\r\n"
    client.close()


def test_flush_all_survives_restart(server: PetracacheProcess) -> None:
    client = server.client()
    client.call(b"set before 0 0 1\r\n1\r\n")
    assert client.call(b"flush_all\r\n") == b"OK\r\n"
    client.close()
    server.restart(signal.SIGTERM)
    client = server.client()
    assert client.call(b"get before\r\n") == b"END\r\n"  # the immediate flush still holds
    client.call(b"set delayed 0 0 1\r\n3\r\n")
    assert client.call(b"flush_all 3\r\n") == b"OK\r\n"  # fires in 3 s, after the restart
    client.close()
    server.restart(signal.SIGTERM)
    client = server.client()
    _wait_for_miss(client, b"delayed")  # the delayed one fires after the restart
    time.sleep(1.1)  # items updated in the deadline's own second are covered too (memcached)
    client.call(b"set later 0 0 1\r\n4\r\n")
    assert client.call(b"get later\r\n") == b"VALUE later 0 1\r\n4\r\nEND\r\n"
    client.close()


def test_acknowledged_writes_survive_kill_9_under_load(tmp_path: Path) -> None:
    """Writers record every STORED; kill -9 mid-load; each key must hold its last acknowledged
    value or a later one (values only grow per key)."""
    server = PetracacheProcess(tmp_path / "pc").start()
    acked: dict[bytes, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(thread: int) -> None:
        client = RawClient(server.port, timeout=5)
        n = 0
        try:
            while not stop.is_set():
                n += 1
                key = b"w%d:%d" % (thread, n % 40)
                value = b"%d" % n
                client.send(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
                if client.read_line() != b"STORED\r\n":
                    return
                with lock:
                    acked[key] = n
        except (OSError, ConnectionError):
            return  # the server died under us: what was acknowledged so far is what counts

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(acked) >= 6 * 40, interval=0.01, what="every key written once")
        time.sleep(0.3)  # the load runs on: the kill lands at no particular write
    finally:
        server.kill()
        stop.set()
    for t in threads:
        t.join(10)
    with lock:
        snapshot = dict(acked)
    server.start()
    try:
        client = server.client()
        lost = []
        for key, n in snapshot.items():
            reply = client.call(b"get " + key + b"\r\n")
            match = re.match(rb"VALUE \S+ 0 \d+\r\n(\d+)\r\nEND\r\n", reply)
            if match is None or int(match.group(1)) < n:
                lost.append((key, n, reply))
        assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:3]}"
        assert len(snapshot) == 6 * 40
        client.close()
    finally:
        server.stop()
