"""The executor and the command handlers without a server: bytes in, reply bytes out.

Each case parses request bytes with ``MemcacheConnection``, runs them through ``Executor``
on a real engine in ``tmp_path`` (injected clock, no sleeps), and encodes the reply with
``compose``; the counters the handlers move are checked alongside.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from petracache.commands.executor import HANDLERS, Executor
from petracache.commands.stats import ServerInfo
from petracache.observability.counters import Counters
from petracache.protocol.binary_requests import BINARY_REQUESTS
from petracache.protocol.connection import NEED_DATA, MemcacheConnection
from petracache.protocol.meta_requests import MetaSetHeader
from petracache.protocol.requests import Request
from tests.storage.engines import Clock, open_engine


@pytest.fixture
def executor(tmp_path: Path, clock: Clock) -> Iterator[Executor]:
    engine = open_engine(tmp_path / "db", clock)
    yield Executor(engine, Counters(), ServerInfo(max_connections=4, item_size_max=1 << 20))
    engine.close()


def run(executor: Executor, data: bytes) -> bytes:
    """Every request in ``data``, executed in order; the concatenated replies."""
    conn = MemcacheConnection()
    conn.receive_data(data)
    out = b""
    while True:
        request = conn.next_request()
        if request is NEED_DATA:
            return out
        out += conn.send(request, executor.execute(request))  # type: ignore[arg-type]


def test_every_request_type_has_a_handler() -> None:
    handled = set(HANDLERS)
    for member in Request.__args__:
        if member.__name__ not in ("MetaRequest", "BinaryRequest"):
            assert member in handled, member
    assert set(BINARY_REQUESTS) <= handled
    # meta requests reach the executor completed (a header is finished by the connection)
    assert MetaSetHeader not in handled


@pytest.mark.parametrize(
    ("data", "reply"),
    [
        (b"set k 5 0 1\r\nx\r\nget k\r\n", b"STORED\r\nVALUE k 5 1\r\nx\r\nEND\r\n"),
        (b"add k 0 0 1\r\nx\r\nadd k 0 0 1\r\ny\r\n", b"STORED\r\nNOT_STORED\r\n"),
        (b"replace k 0 0 1\r\nx\r\n", b"NOT_STORED\r\n"),
        (b"cas k 0 0 1 1\r\nx\r\n", b"NOT_FOUND\r\n"),
        (b"set k 0 0 1\r\na\r\ncas k 0 0 1 999\r\nx\r\n", b"STORED\r\nEXISTS\r\n"),
        (
            b"set k 3 0 1\r\nb\r\nappend k 9 0 1\r\nc\r\nget k\r\n",
            b"STORED\r\nSTORED\r\nVALUE k 3 2\r\nbc\r\nEND\r\n",
        ),
        (
            b"set n 0 0 2\r\n10\r\ndecr n 3\r\nget n\r\n",
            b"STORED\r\n7\r\nVALUE n 0 2\r\n7 \r\nEND\r\n",
        ),
        (
            b"set n 0 0 1\r\nx\r\nincr n 1\r\n",
            b"STORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        (b"incr n 1\r\n", b"NOT_FOUND\r\n"),
        (b"delete k\r\nset k 0 0 1\r\nx\r\ndelete k\r\n", b"NOT_FOUND\r\nSTORED\r\nDELETED\r\n"),
        (
            b"touch k 10\r\nset k 0 0 1\r\nx\r\ntouch k 10\r\n",
            b"NOT_FOUND\r\nSTORED\r\nTOUCHED\r\n",
        ),
        (b"flush_all\r\nversion\r\n", b"OK\r\nVERSION 1.6.18\r\n"),
        (b"verbosity 1\r\nquit\r\n", b"OK\r\n"),
        (b"cache_memlimit 1\r\n", b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"),
        (
            b"cache_memlimit 2000000000\r\n",
            b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n",
        ),
        (b"cache_memlimit 64\r\n", b"OK\r\n"),  # no disk bound: accepted, no effect
        (b"stats nonsense\r\n", b"ERROR\r\n"),
        (b"stats detail bogus\r\n", b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"),
        (
            b"stats detail on\r\nget a:1 a:2\r\nset a:1 0 0 1\r\nx\r\nstats detail dump\r\n",
            b"OK\r\nEND\r\nSTORED\r\nPREFIX a get 2 hit 0 set 1 del 0\r\nEND\r\n",
        ),
        (b"mn\r\nms k 1 T0 c\r\nx\r\nmg k v s\r\n", b"MN\r\nHD c1\r\nVA 1 s1\r\nx\r\n"),
        (b"mg k v\r\nmg k q\r\nmd k\r\nma k\r\n", b"EN\r\nNF\r\nNF\r\n"),
    ],
)
def test_replies(executor: Executor, data: bytes, reply: bytes) -> None:
    if b"VERSION" in reply:
        version = run(executor, b"version\r\n")
        reply = reply.replace(b"VERSION 1.6.18\r\n", version)
    assert run(executor, data) == reply


def test_counters_move_in_the_commands(executor: Executor) -> None:
    run(executor, b"set k 0 0 1\r\n5\r\nget k nope\r\nincr k 1\r\ndecr nope 1\r\n")
    run(executor, b"cas k 0 0 1 1\r\nx\r\nmg k\r\nmg gone\r\nmd k\r\n")
    c = executor.ctx.counters
    assert (c.cmd_set, c.cmd_get, c.get_hits, c.get_misses) == (2, 4, 2, 2)
    assert (c.incr_hits, c.decr_misses, c.cas_badval, c.delete_hits) == (1, 1, 1, 1)


def test_stats_reset_rebases_request_and_engine_counters(executor: Executor, clock: Clock) -> None:
    run(executor, b"set k 0 0 1 \r\nx\r\nget k\r\nset e 0 1 1\r\nx\r\n")
    clock.now += 2
    run(executor, b"get e\r\n")  # a lazy expiry: an engine counter

    def stats() -> dict[bytes, bytes]:
        lines = run(executor, b"stats\r\n").split(b"\r\n")
        return {parts[1]: parts[2] for parts in (line.split() for line in lines) if len(parts) == 3}

    before = stats()
    assert (before[b"get_hits"], before[b"get_expired"], before[b"total_items"]) == (
        b"1",
        b"1",
        b"2",
    )
    assert run(executor, b"stats reset\r\n") == b"RESET\r\n"
    after = stats()
    assert (after[b"get_hits"], after[b"get_expired"], after[b"total_items"]) == (b"0", b"0", b"0")
    assert executor.ctx.counters.get_hits == 1  # /metrics stays monotonic


def test_a_storage_error_becomes_server_error(tmp_path: Path, clock: Clock) -> None:
    # A real failure: RocksDB refuses the write once the database under the engine is
    # closed (what a crash leaves; the engine is not closed again afterwards).
    engine = open_engine(tmp_path / "db", clock)
    executor = Executor(engine, Counters(), ServerInfo(max_connections=4, item_size_max=1 << 20))
    assert run(executor, b"set k 0 0 1\r\nx\r\n") == b"STORED\r\n"
    engine.db.items.close()
    reply = run(executor, b"set k 0 0 1\r\ny\r\n")
    assert reply.startswith(b"SERVER_ERROR write failed: ")
    assert reply.endswith(b"\r\n")
    assert reply.count(b"\r\n") == 1
    assert executor.ctx.counters.storage_errors == 1
