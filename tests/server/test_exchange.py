"""``Exchange``, the per-read work both data-plane paths share: bytes in, replies and what next
out, counters moved; no sockets (``test_reactor`` and ``test_handler`` drive the I/O)."""

from __future__ import annotations

from petracache.observability.counters import Counters
from petracache.protocol.crawler import LruCrawler, Streamed
from petracache.protocol.detect import ClientConnection
from petracache.protocol.requests import Get, Request
from petracache.protocol.responses import Response, Status, Values
from petracache.server.auth import AuthGate
from petracache.server.exchange import CLOSE, MORE, READ, STREAM, Exchange

VALUE = b"v" * 100


def execute(request: Request) -> Response:
    """Gets hit with VALUE, ``lru_crawler`` streams three chunks, the rest is NOT_FOUND."""
    if isinstance(request, Get):
        return Values([(key, 0, 1, VALUE) for key in request.keys], False)
    if isinstance(request, LruCrawler):
        return Streamed(iter([b"a\r\n", b"b\r\n", b"END\r\n"]))
    return Status.NOT_FOUND


def hit(key: bytes) -> bytes:
    return b"VALUE %b 0 %d\r\n%b\r\nEND\r\n" % (key, len(VALUE), VALUE)


def exchange(
    counters: Counters, write_size: int = 1 << 20, users: dict[bytes, bytes] | None = None
) -> Exchange:
    gate = AuthGate(users, counters) if users is not None else None
    return Exchange(ClientConnection(1 << 20, users), execute, counters, write_size, gate)


def test_a_read_is_answered_and_counted() -> None:
    counters = Counters()
    ex = exchange(counters)
    data = b"get a\r\ndelete b\r\nbogus\r\n"
    out = ex.answer(data)
    assert out == hit(b"a") + b"NOT_FOUND\r\nERROR\r\n"
    assert ex.then == READ
    assert (counters.bytes_read, counters.bytes_written) == (len(data), len(out))
    assert counters.protocol_errors == 1


def test_an_incomplete_request_waits_for_the_next_read() -> None:
    ex = exchange(Counters())
    assert ex.answer(b"get ") == b""
    assert ex.then == READ
    assert ex.answer(b"a\r\n") == hit(b"a")


def test_replies_past_the_write_size_come_in_batches() -> None:
    counters = Counters()
    ex = exchange(counters, write_size=len(hit(b"k0")) * 2)
    out = ex.answer(b"".join(b"get k%d\r\n" % i for i in range(5)))
    batches = [out]
    while ex.then == MORE:
        batches.append(ex.replies())
    assert ex.then == READ
    assert batches == [hit(b"k0") + hit(b"k1"), hit(b"k2") + hit(b"k3"), hit(b"k4")]
    assert counters.bytes_written == sum(map(len, batches))


def test_a_streamed_reply_asks_for_a_yield_between_chunks() -> None:
    ex = exchange(Counters())
    out = ex.answer(b"get a\r\nlru_crawler metadump all\r\nget b\r\n")
    thens = []
    while True:
        thens.append(ex.then)
        if ex.then == READ:
            break
        out += ex.replies()
    assert out == hit(b"a") + b"a\r\nb\r\nEND\r\n" + hit(b"b")
    assert STREAM in thens


def test_quit_closes_after_the_replies_before_it() -> None:
    ex = exchange(Counters())
    assert ex.answer(b"delete k\r\nquit\r\nget a\r\n") == b"NOT_FOUND\r\n"
    assert ex.then == CLOSE


def test_the_gate_passes_only_credentials_then_the_rest_of_the_read() -> None:
    counters = Counters()
    ex = exchange(counters, users={b"user": b"pass"})
    assert ex.answer(b"get a\r\n") == b"CLIENT_ERROR unauthenticated\r\n"
    assert (ex.then, ex.authenticated) == (READ, False)
    login = b"set x 0 0 9\r\nuser pass\r\n"
    assert ex.answer(login + b"get a\r\n") == b"STORED\r\n" + hit(b"a")
    assert (ex.then, ex.authenticated) == (READ, True)
    assert counters.bytes_read == len(b"get a\r\n") + len(login + b"get a\r\n")
    assert counters.auth_cmds == 1


def test_a_refused_gate_closes() -> None:
    ex = exchange(Counters(), users={b"user": b"pass"})
    assert ex.answer(b"x" * 3000) == b""
    assert ex.then == CLOSE
