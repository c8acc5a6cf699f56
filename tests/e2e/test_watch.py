"""``watch`` over real sockets, against memcached 1.6.18 and petracache side by side.

The same traffic goes to both servers while a watcher listens; the watchers' lines must be
the same once the fields that carry times and ids are normalised (``ts=`` and ``gid=``
dropped after checking their shape and order, ``rport=`` replaced, ``cfd=`` numbered in
order of appearance, so a line's connection must still match the one its ``conn_new``
named). Also: the replies around ``watch`` (pipelined, bad arguments, the 20-watcher limit),
a watcher that does not read (bounded, then ``skipped=<n>``), evictions under a disk
bound, and a watcher at shutdown.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.fast_reclaim import FAST, set_many
from tests.harness import MemcachedProcess, PetracacheProcess, RawClient, wait_until

pytestmark = pytest.mark.integration

LINE = re.compile(rb"^ts=(\d+)\.(\d{1,6}) gid=(\d+) (type=\S+ .*)$")


class Watcher:
    """A raw watcher connection: ``watch <kinds>``, then the lines as they come."""

    def __init__(self, port: int, kinds: bytes, rcvbuf: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # before connecting, so the window stays small: a slow reader
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.sock.sendall(b"watch " + kinds + b"\r\n" if kinds else b"watch\r\n")
        assert self.read_line() == b"OK\r\n"

    def read_line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("watcher closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def lines_until(self, marker: bytes) -> list[bytes]:
        """Lines (without their newline) up to and including the first containing ``marker``."""
        out = []
        while True:
            line = self.read_line().rstrip(b"\n")
            out.append(line)
            if marker in line:
                return out

    def close(self) -> None:
        self.sock.close()


def normalised(lines: list[bytes]) -> list[bytes]:
    """Drop ts= and gid= (checked: well formed, gid increasing), number cfd= values, hide
    rport= values."""
    out = []
    gids = []
    cfds: dict[bytes, int] = {}
    for line in lines:
        match = LINE.match(line)
        assert match is not None, line
        gids.append(int(match[3]))
        body = re.sub(rb"rport=\d+", b"rport=P", match[4])
        body = re.sub(
            rb"cfd=(\d+)", lambda m: b"cfd=%d" % cfds.setdefault(m[1], len(cfds) + 1), body
        )
        out.append(body)
    assert gids == sorted(gids)
    assert len(set(gids)) == len(gids)
    return out


def traffic(prefix: bytes) -> list[tuple[bytes, bytes]]:
    """(request, the end of its reply) pairs: every kind of lookup and store."""
    a, n, m, q = (prefix + k for k in (b"a", b"n", b"m", b"q"))
    return [
        (b"set %b 0 0 1\r\n1\r\n" % a, b"STORED\r\n"),
        (b"get %b %bmiss\r\n" % (a, prefix), b"END\r\n"),
        (b"add %b 0 100 1\r\n2\r\n" % a, b"NOT_STORED\r\n"),
        (b"append %b 0 0 2\r\nxy\r\n" % a, b"STORED\r\n"),
        (b"prepend %bmiss 0 0 1\r\nx\r\n" % prefix, b"NOT_STORED\r\n"),
        (b"replace %bmiss 0 0 1\r\nx\r\n" % prefix, b"NOT_STORED\r\n"),
        (b"gets %b\r\n" % a, b"END\r\n"),
        (b"cas %b 0 0 1 999999\r\n1\r\n" % a, b"EXISTS\r\n"),
        (b"cas %bmiss 0 0 1 1\r\n1\r\n" % prefix, b"NOT_FOUND\r\n"),
        (b"set %b 0 0 1\r\n5\r\n" % n, b"STORED\r\n"),
        (b"incr %b 10\r\n" % n, b"15\r\n"),
        (b"decr %b 1\r\n" % n, b"14\r\n"),
        (b"touch %b 100\r\n" % n, b"TOUCHED\r\n"),
        (b"gat 100 %b\r\n" % n, b"END\r\n"),
        (b"delete %b\r\n" % n, b"DELETED\r\n"),
        (b"delete %b\r\n" % n, b"NOT_FOUND\r\n"),
        (b"mg %b v\r\n" % a, b"\r\n"),
        (b"mg %bviv v N30\r\n" % prefix, b"\r\n"),
        (b"ms %b 2 T50\r\nhi\r\n" % m, b"HD\r\n"),
        (b"ms %b 2 MA\r\nhi\r\n" % m, b"HD\r\n"),
        (b"md %b\r\n" % m, b"HD\r\n"),
        (b"ma %b N0 J7\r\n" % q, b"HD\r\n"),
        (b"ma %b\r\n" % q, b"HD\r\n"),
        (b"set %bf 0 0 1\r\n1\r\n" % prefix, b"STORED\r\n"),
        (b"flush_all\r\n", b"OK\r\n"),
        (b"get %bf\r\n" % prefix, b"END\r\n"),
    ]


def watched_lines(port: int, prefix: bytes) -> list[bytes]:
    """Run ``traffic`` on a fresh connection under a watcher; the watcher's lines."""
    watcher = Watcher(port, b"fetchers mutations evictions connevents")
    client = RawClient(port)
    for request, end in traffic(prefix):
        client.send(request)
        client.read_until(end)
    client.send(b"get %bf\r\nquit\r\n" % prefix)  # gone now; quit: reason=normal
    client.read_until(b"END\r\n")
    lines = watcher.lines_until(b"type=conn_close")
    client.close()
    watcher.close()
    return lines


def test_watch_lines_match_memcached(
    memcached: MemcachedProcess, server: PetracacheProcess
) -> None:
    prefix = b"w%s:" % uuid.uuid4().hex[:8].encode()
    mc = normalised(watched_lines(memcached.port, prefix))
    pc = normalised(watched_lines(server.port, prefix))
    assert pc == mc
    kinds = {re.match(rb"type=(\w+)", line)[1] for line in pc}  # type: ignore[index]
    assert kinds == {b"conn_new", b"item_get", b"item_store", b"conn_close"}
    assert any(b"status=flushed" in line for line in pc)
    assert pc[-1] == b"type=conn_close rip=127.0.0.1 rport=P transport=tcp reason=normal cfd=1"


REPLIES = [
    b"version\r\nwatch\r\nversion\r\n",  # ERROR cannot pipeline other commands before watch
    b"version\r\nwatch bogus\r\n",  # the pipelining is checked first
    b"watch bogus\r\nversion\r\n",  # ERROR, and the connection goes on
    b"watch fetchers noreply\r\nversion\r\n",  # noreply: the ERROR is not sent
]


@pytest.mark.parametrize("data", REPLIES, ids=range(len(REPLIES)))
def test_replies_around_watch_match_memcached(
    memcached: MemcachedProcess, shared_server: PetracacheProcess, data: bytes
) -> None:
    replies = []
    for port in (memcached.port, shared_server.port):
        client = RawClient(port)
        client.send(data)
        client.send(b"version\r\n")  # a fence
        out = b""
        while out.count(b"VERSION ") <= data.count(b"version\r\n"):
            out += client.read_line()
        replies.append(re.sub(rb"VERSION [^\r]*", b"VERSION X", out))
        client.close()
    assert replies[1] == replies[0]


def test_twenty_watchers_at_most(server: PetracacheProcess) -> None:
    fresh = MemcachedProcess()  # the shared one may still count the other tests' watchers
    try:
        _twenty_watchers_at_most(fresh.port)
    finally:
        fresh.stop()
    _twenty_watchers_at_most(server.port)


def _twenty_watchers_at_most(port: int) -> None:
    """20 watchers; the 21st gets WATCHER_TOO_MANY and its connection goes on."""
    watchers = [Watcher(port, b"") for _ in range(20)]
    client = RawClient(port)
    client.send(b"watch\r\n")
    assert client.read_line() == b"WATCHER_TOO_MANY log watcher limit reached\r\n"
    assert client.call(b"") == b""  # and the connection goes on
    watchers.pop().close()
    time.sleep(0.2)  # memcached's logger notices the hang-up on its next poll
    again = Watcher(port, b"fetchers")  # room again
    client.send(b"get wlimit\r\n")
    client.read_until(b"END\r\n")
    assert b"type=item_get key=wlimit status=not_found" in again.read_line()
    for w in [*watchers, again]:
        w.close()
    client.close()


def _most_the_kernel_buffers() -> int:
    """What the server's socket may hold for an unread watcher at most (tcp_wmem's max),
    with a 4 MiB guess where /proc does not say."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 << 20


def test_a_slow_watcher_loses_lines_not_memory(server: PetracacheProcess) -> None:
    """A watcher that stops reading: the server keeps at most its 256 KiB buffer (plus the
    socket's), drops what does not fit, and says ``skipped=<n>`` once the watcher reads."""
    slow = Watcher(server.port, b"fetchers", rcvbuf=4096)
    client = RawClient(server.port, timeout=60)
    keys = b" ".join(b"k%03d" % i + b"x" * 246 for i in range(100))  # 250-byte keys
    # Lines of about 340 bytes: twice what the buffer and the socket can hold between them.
    rounds = max(300, 2 * (_most_the_kernel_buffers() + (256 << 10)) // (340 * 100))
    for _ in range(rounds):
        client.send(b"get " + keys + b"\r\n")
        client.read_until(b"END\r\n")
    assert client.call(b"") == b""  # the server still serves
    lines = 0
    slow.sock.settimeout(1)
    with contextlib.suppress(TimeoutError):  # read what the server kept
        while True:
            slow.read_line()
            lines += 1
    assert 0 < lines < rounds * 100
    client.send(b"get after\r\n")  # the next line that fits says how many were dropped
    client.read_until(b"END\r\n")
    skipped = slow.read_line()
    assert skipped.startswith(b"skipped=")
    assert lines + int(skipped[8:]) == rounds * 100
    assert b"key=after " in slow.read_line()
    slow.close()
    client.close()


def test_evictions_are_watched(tmp_path: Path) -> None:
    env = {**FAST, "PETRACACHE_STORAGE__MAX_DISK_BYTES": str(2 << 20)}
    with PetracacheProcess(tmp_path / "pc", env=env) as server:
        watcher = Watcher(server.port, b"evictions")
        client = server.client(timeout=60)
        set_many(client, [b"fill:%d" % i for i in range(6000)], exptime=0)
        line = watcher.read_line()
        assert re.match(
            rb"ts=\d+\.\d+ gid=\d+ type=eviction key=fill%3A\d+ fetch=no ttl=-1 la=\d+ clsid=\d+"
            rb" size=1000\n$",
            line,
        ), line
        watcher.close()


def test_a_watcher_is_closed_at_shutdown(server: PetracacheProcess) -> None:
    watcher = Watcher(server.port, b"fetchers")
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 10
    watcher.sock.settimeout(5)
    wait_until(lambda: watcher.sock.recv(1024) == b"", what="the watcher closed")
    watcher.close()
