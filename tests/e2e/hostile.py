"""Tools for the hostile-client tests (``test_hostile``, ``test_binary_hostile``): the
server's resident memory, a well-behaved control client whose data must survive every
attack, raw sockets, the rudest close, and pushing bytes until the server stops reading.
"""

from __future__ import annotations

import random
import socket
import struct
import time

from tests.harness import PetracacheProcess

MIB = 1024 * 1024
RSS_SLACK = 64 * MIB  # how far an attack may move the resident set (RocksDB and allocator noise)


def rss(server: PetracacheProcess) -> int:
    """The server process's resident set (``VmRSS``), in bytes."""
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Control:
    """A well-behaved client whose data must come through every attack intact."""

    def __init__(self, server: PetracacheProcess) -> None:
        self.client = server.client(timeout=30)
        self.values = {b"control:%d:%s" % (i, b"q" * 20): random.randbytes(500) for i in range(50)}
        for key, value in self.values.items():
            line = b"set %s 9 0 %d\r\n%s\r\n" % (key, len(value), value)
            assert self.client.call(line) == b"STORED\r\n"

    def check(self) -> None:
        for key, value in self.values.items():
            assert self.client.call(b"get " + key + b"\r\n") == (
                b"VALUE %s 9 %d\r\n%s\r\nEND\r\n" % (key, len(value), value)
            )


def raw_socket(server: PetracacheProcess, timeout: float = 5.0) -> socket.socket:
    """A plain TCP connection to ``server``."""
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def abort(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), the rudest way a client can leave."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def push(sock: socket.socket, total: int, chunk: bytes, seconds: float = 5.0) -> int:
    """Send up to ``total`` bytes of ``chunk`` until the server stops reading; bytes sent."""
    sent = 0
    sock.settimeout(0.5)
    deadline = time.monotonic() + seconds
    try:
        while sent < total and time.monotonic() < deadline:
            sent += sock.send(chunk)
    except (TimeoutError, OSError):
        pass
    return sent
