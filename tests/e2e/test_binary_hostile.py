"""Hostile binary-protocol input against the real server: it stays up, bounded and correct.

Huge body lengths (a value bigger than any item is skipped as it arrives, never buffered),
truncated headers, keys that claim 64 KiB, unknown opcodes with big bodies, and random bytes
after a valid magic, from many connections at once. Each gets a clear error reply or a
close; a text client and a binary client keep reading their data intact; resident memory
stays within ``hostile.RSS_SLACK`` of its warm value.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.binframes import GETK, NOOP, SET, BinClient, Frame, req, split, store
from tests.e2e.hostile import MIB, RSS_SLACK, Control, abort, push, raw_socket, rss
from tests.harness import PetracacheProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PetracacheProcess]:
    with PetracacheProcess(tmp_path / "pc", args=["-c", "4000"]) as proc:
        yield proc


class BinaryControl:
    """A well-behaved binary client whose items must survive every attack."""

    def __init__(self, server: PetracacheProcess) -> None:
        self.client = BinClient(server.port, timeout=30)
        self.values = {b"bin:%d" % i: random.randbytes(300) for i in range(30)}
        frames = self.client.exchange(b"".join(store(SET, k, v, 3) for k, v in self.values.items()))
        assert [f.status for f in frames] == [0] * len(self.values)

    def check(self) -> None:
        frames = self.client.exchange(b"".join(req(GETK, k) for k in self.values))
        assert [(f.key, f.value, f.extras) for f in frames] == [
            (k, v, b"\0\0\0\3") for k, v in self.values.items()
        ]


def hostile_frame(rng: random.Random) -> bytes:
    """One nasty request: oversized, truncated, lying about its lengths, or random."""
    pick = rng.randrange(7)
    if pick == 0:  # a set whose value is bigger than any item
        return req(SET, b"k", b"\0" * 8, bodylen=rng.choice([2**32 - 1, 50 * MIB + 9]))
    if pick == 1:  # a truncated header
        return req(SET, b"k", b"\0" * 8, b"v")[: rng.randrange(1, 24)]
    if pick == 2:  # a key length of 64 KiB, never sent in full
        head = struct.pack(">BBHBBHIIQ", 0x80, 0, 0xFFFF, 0, 0, 0, 0xFFFF, 0, 0)
        return head + rng.randbytes(rng.randrange(0, 3000))
    if pick == 3:  # an unknown opcode with a big body to skip
        return req(0x77, bodylen=rng.randrange(1, 10 * MIB)) + rng.randbytes(1000)
    if pick == 4:  # random bytes after a valid magic
        return b"\x80" + rng.randbytes(rng.randrange(23, 500))
    if pick == 5:  # a body shorter than key plus extras
        return req(SET, b"key", b"\0" * 8, b"v", bodylen=4)
    return rng.randbytes(rng.randrange(1, 2000))


def hostile_connection(server: PetracacheProcess, seed: int, failures: list[BaseException]) -> None:
    """Valid requests, then hostile input: every reply received is well formed."""
    try:
        _hostile_connection(server, seed)
    except BaseException as exc:  # a thread's failure must fail the test
        failures.append(exc)


def _hostile_connection(server: PetracacheProcess, seed: int) -> None:
    rng = random.Random(seed)
    try:
        sock = raw_socket(server, timeout=0.5)
    except OSError:
        return
    try:
        sock.sendall(req(NOOP, opaque=seed))
        sock.sendall(hostile_frame(rng))
        if rng.random() < 0.5:
            sock.sendall(rng.randbytes(rng.randrange(0, 100_000)))
        raw = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
    except OSError:
        raw = b""
    finally:
        if rng.random() < 0.5:
            abort(sock)
        else:
            sock.close()
    frames, _rest = split(raw)
    for frame in frames:
        assert frame.magic == 0x81, raw[:200]


def test_hostile_binary_from_many_connections(server: PetracacheProcess) -> None:
    control, binary = Control(server), BinaryControl(server)
    before = rss(server)
    failures: list[BaseException] = []
    for wave in range(4):
        threads = [
            threading.Thread(target=hostile_connection, args=(server, wave * 1000 + i, failures))
            for i in range(40)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        control.check()
        binary.check()
    assert failures == []
    assert server.proc is not None
    assert server.proc.poll() is None
    assert rss(server) - before < RSS_SLACK


def test_huge_value_is_skipped_not_buffered(server: PetracacheProcess) -> None:
    """A set claiming a 4 GiB value: 200 MiB pushed at it leave memory flat, the reply is
    ``Too large.`` and the connection keeps working once the claimed body has passed."""
    before = rss(server)
    sock = raw_socket(server, timeout=10)
    sock.sendall(req(SET, b"big", b"\0" * 8, bodylen=2**32 - 1))
    sent = push(sock, 200 * MIB, b"\0" * 65536, seconds=20)
    assert sent > 50 * MIB  # the server kept reading (skipping), it did not stall us
    assert rss(server) - before < RSS_SLACK
    frames, _ = split(sock.recv(4096))
    assert frames[0] == Frame(SET, 0x03, b"", b"", b"Too large.", 0, 0)
    sock.close()


def test_invalid_magic_closes_only_that_connection(server: PetracacheProcess) -> None:
    binary = BinaryControl(server)
    sock = raw_socket(server)
    sock.sendall(req(NOOP) + b"\x81" + b"\0" * 23)
    raw = b""
    while chunk := sock.recv(4096):
        raw += chunk
    assert split(raw) == ([Frame(NOOP, 0, b"", b"", b"", 0, 0)], b"")
    sock.close()
    binary.check()


def test_unauthenticated_binary_is_refused(tmp_path: Path) -> None:
    """With an auth file, a binary request before SASL gets ``Auth failure.`` and a close."""
    users = tmp_path / "users"
    users.write_text("u:p\n")
    with PetracacheProcess(tmp_path / "pc", config=f'[server]\nauth_file = "{users}"\n') as srv:
        client = BinClient(srv.port)
        frames = client.exchange(store(SET, b"k", b"v"))
        assert frames == [Frame(SET, 0x20, b"", b"", b"Auth failure.", 0, 0)]
        assert client.closed
        with socket.create_connection(("127.0.0.1", srv.port)) as text:
            text.sendall(b"get k\r\n")
            assert text.recv(100) == b"CLIENT_ERROR unauthenticated\r\n"
