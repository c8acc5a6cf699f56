"""Hostile and broken clients against the real server: it stays up, bounded, and correct.

Memory is the server process's resident set (``VmRSS`` in ``/proc/<pid>/status``), compared
with its value after a warm-up. The bounds are generous (tens of MiB; RocksDB's memtables
and allocator noise move RSS too) but far below what the attacks would cost if the server
buffered them: each attack pushes hundreds of MiB or more at it.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.hostile import MIB, RSS_SLACK, Control, abort, push, raw_socket, rss
from tests.harness import PetracacheProcess, RawClient, cmds, wait_until


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PetracacheProcess]:
    with PetracacheProcess(tmp_path / "pc", args=["-c", "4000"]) as proc:
        yield proc


def stat(client: RawClient, name: bytes) -> int:
    for line in client.call(b"stats\r\n").split(b"\r\n"):
        if line.startswith(b"STAT %s " % name):
            return int(line.split()[2])
    raise AssertionError(f"no stat {name!r}")


# -- random bytes from many connections ------------------------------------------------------

WORDS = [
    b"get",
    b"gets",
    b"set",
    b"add",
    b"append",
    b"cas",
    b"delete",
    b"incr",
    b"touch",
    b"gat",
    b"mg",
    b"ms",
    b"md",
    b"ma",
    b"mn",
    b"stats",
    b"version",
    b"verbosity",
]


def garbage(rng: random.Random) -> bytes:
    """Random bytes, or a random command with random arguments and a random data block."""
    if rng.random() < 0.4:
        return rng.randbytes(rng.randrange(1, 4000))
    args = [
        b"k%d" % rng.randrange(20),
        b"%d" % rng.randrange(-5, 1 << 34),
        rng.randbytes(rng.randrange(1, 8)),
        b"noreply",
        b"T1",
        b"v",
    ]
    parts = [rng.choice(WORDS), *(rng.choice(args) for _ in range(rng.randrange(6)))]
    out = b" ".join(parts) + rng.choice([b"\r\n", b"\n", b""])
    if rng.random() < 0.5:
        out += rng.randbytes(rng.randrange(0, 300)) + rng.choice([b"\r\n", b""])
    return out


def fuzz_connection(server: PetracacheProcess, seed: int, sends: int) -> None:
    rng = random.Random(seed)
    try:
        sock = raw_socket(server, timeout=0.1)
    except OSError:
        return
    try:
        for _ in range(sends):
            sock.sendall(garbage(rng))
            if rng.random() < 0.3:
                with contextlib.suppress(TimeoutError, OSError):
                    sock.recv(65536)
    except OSError:
        pass  # the server may close a connection that sent something unrecoverable
    finally:
        if rng.random() < 0.5:
            abort(sock)
        else:
            sock.close()


def test_random_bytes_from_many_connections(server: PetracacheProcess) -> None:
    control = Control(server)
    before = rss(server)
    for wave in range(6):
        threads = [
            threading.Thread(target=fuzz_connection, args=(server, wave * 1000 + i, 80))
            for i in range(50)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        control.check()
    assert server.proc is not None
    assert server.proc.poll() is None
    assert rss(server) - before < RSS_SLACK


# -- per-connection memory bounds ----------------------------------------------------------


def attack_and_measure(
    server: PetracacheProcess, attack: Callable[[socket.socket], None], control: Control
) -> int:
    """Run ``attack`` on its own connection; returns the server's RSS growth meanwhile."""
    before = rss(server)
    sock = raw_socket(server)
    peak = before
    done = threading.Event()

    def run() -> None:
        try:
            attack(sock)
        finally:
            done.set()

    thread = threading.Thread(target=run)
    thread.start()
    while not done.wait(0.05):
        peak = max(peak, rss(server))
    thread.join()
    peak = max(peak, rss(server))
    control.check()  # other clients are served during and after the attack
    abort(sock)
    return peak - before


def test_huge_line_without_newline(server: PetracacheProcess) -> None:
    control = Control(server)

    def attack(sock: socket.socket) -> None:
        push(sock, 512 * MIB, b"x" * 65536)

    assert attack_and_measure(server, attack, control) < RSS_SLACK


def test_huge_multiget_line_without_newline(server: PetracacheProcess) -> None:
    control = Control(server)

    def attack(sock: socket.socket) -> None:
        sock.sendall(b"get ")
        push(sock, 512 * MIB, b"somekey " * 8192)

    assert attack_and_measure(server, attack, control) < RSS_SLACK


def test_gigantic_declared_values_are_refused_and_not_buffered(server: PetracacheProcess) -> None:
    """2^30 bytes: too large, the data is swallowed as it arrives; 2^31: a bad command line
    (memcached's length is a signed int), and the data that follows is a too-long line."""
    control = Control(server)
    replies: list[bytes] = []

    def declare(size: int) -> Callable[[socket.socket], None]:
        def attack(sock: socket.socket) -> None:
            sock.sendall(b"set big 0 0 %d\r\n" % size)
            push(sock, 256 * MIB, b"v" * 65536)
            sock.settimeout(5)
            try:
                replies.append(sock.recv(100))
            except OSError:
                replies.append(b"<reset>")

        return attack

    assert attack_and_measure(server, declare(1 << 30), control) < RSS_SLACK
    assert attack_and_measure(server, declare(1 << 31), control) < RSS_SLACK
    assert replies[0] == b"SERVER_ERROR object too large for cache\r\n"
    assert replies[1] in (b"CLIENT_ERROR bad command line format\r\n", b"", b"<reset>")
    assert control.client.call(b"get big\r\n") == b"END\r\n"


def test_a_million_pipelined_gets_without_reading(server: PetracacheProcess) -> None:
    control = Control(server)
    value = b"v" * 1000
    assert control.client.call(cmds(["set hot 0 0 1000", value.decode()])) == b"STORED\r\n"
    sent: list[int] = []

    def attack(sock: socket.socket) -> None:
        batch = b"get hot\r\n" * 10_000
        sent.append(push(sock, len(batch) * 100, batch, seconds=8))

    growth = attack_and_measure(server, attack, control)
    # The replies to what was sent would be ~110 times its size; TCP back-pressure stopped
    # both the server's reading and the client's sending long before a million.
    assert growth < RSS_SLACK
    assert sent[0] < 9 * 1_000_000


def test_silent_connections_cost_little(server: PetracacheProcess) -> None:
    control = Control(server)
    before = rss(server)
    idle = [raw_socket(server) for _ in range(1000)]
    wait_until(lambda: stat(control.client, b"curr_connections") == 1001, 30)
    control.check()
    per_connection = (rss(server) - before) / len(idle)
    for sock in idle:
        sock.close()
    assert per_connection < 64 * 1024, per_connection


# -- clients leaving at the worst moment -----------------------------------------------------


def test_disconnects_mid_value_pipeline_and_reply(server: PetracacheProcess) -> None:
    control = Control(server)
    big = random.randbytes(500_000)
    for i in range(20):
        line = b"set big:%d 0 0 %d\r\n%s\r\n" % (i, len(big), big)
        assert control.client.call(line) == b"STORED\r\n"
    all_big = b"get " + b" ".join(b"big:%d" % i for i in range(20)) + b"\r\n"

    def mid_value(sock: socket.socket) -> None:
        sock.sendall(b"set victim 0 0 100000\r\n" + b"x" * 50_000)

    def mid_pipeline(sock: socket.socket) -> None:
        sock.sendall(b"set p 0 0 1\r\n1\r\nincr p 1\r\nget p\r\n" * 500 + b"get p")

    def mid_reply(sock: socket.socket) -> None:
        sock.sendall(all_big * 3)  # 30 MB of replies, then we leave after the first bytes
        sock.recv(1000)

    def run(attack: Callable[[socket.socket], None], rude: bool) -> None:
        sock = raw_socket(server)
        try:
            attack(sock)
        finally:
            abort(sock) if rude else sock.close()

    rounds = [
        (attack, rude) for attack in (mid_value, mid_pipeline, mid_reply) for rude in (True, False)
    ] * 5
    threads = [threading.Thread(target=run, args=pair) for pair in rounds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    control.check()
    # The half-sent value never became an item; the big items are intact.
    assert control.client.call(b"get victim\r\n") == b"END\r\n"
    reply = control.client.call(all_big)
    assert reply.count(big) == 20
    assert server.proc is not None
    assert server.proc.poll() is None
    wait_until(lambda: stat(control.client, b"curr_connections") == 1, 30)


def test_two_thousand_connections_under_load(server: PetracacheProcess) -> None:
    """2,000 connections held open (each did one request) while clients keep working."""
    control = Control(server)
    before = rss(server)
    held: list[RawClient] = []
    for i in range(2000):
        c = RawClient(server.port, timeout=30)
        c.send(b"set held:%d 0 0 1\r\nh\r\n" % i)
        held.append(c)
    for c in held:
        assert c.read_line() == b"STORED\r\n"
    control.check()
    for c in held[::100]:
        assert c.call(b"get held:0\r\n") == b"VALUE held:0 0 1\r\nh\r\nEND\r\n"
    per_connection = (rss(server) - before) / len(held)
    print(f"\nRSS per held connection: {per_connection / 1024:.1f} KiB")
    for c in held:
        c.close()
    assert per_connection < 64 * 1024, per_connection
