"""lru_crawler replies (memcached 1.6.18's, read from the real server) and the dump stream."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from petracache.commands.crawler import Crawler, metadump_line, mgdump_line, parse_classes
from petracache.commands.executor import Executor
from petracache.commands.stats import ServerInfo
from petracache.observability.counters import Counters
from petracache.protocol import compose
from petracache.protocol.connection import MemcacheConnection
from petracache.protocol.crawler import LruCrawler, Streamed
from petracache.protocol.requests import Request
from petracache.protocol.responses import Response, VersionReply
from petracache.rules.verbs import StoreMode
from petracache.rules.versions import SERVER_VERSION
from petracache.storage.engine import Engine
from petracache.storage.items import FETCHED, Item
from tests.storage.engines import Clock, open_engine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = open_engine(tmp_path / "db", Clock())
    yield eng
    eng.close()


# Each observed from memcached 1.6.18 with a live crawler (tests/e2e checks the dumps).
REPLIES = [
    (b"crawl all", b"OK\r\n"),
    (b"crawl 1,2", b"OK\r\n"),
    (b"crawl 0", b"BADCLASS invalid class id\r\n"),
    (b"crawl x", b"BADCLASS invalid class id\r\n"),
    (b"crawl", b"ERROR\r\n"),
    (b"metadump", b"ERROR\r\n"),
    (b"metadump 0", b"BADCLASS invalid class id\r\n"),
    (b"metadump 64", b"BADCLASS invalid class id\r\n"),
    (b"metadump 1,x", b"BADCLASS invalid class id\r\n"),
    (b"metadump 2,all", b"BADCLASS invalid class id\r\n"),
    (b"metadump HASH", b"BADCLASS invalid class id\r\n"),
    (b"metadump all noreply", b"ERROR\r\n"),
    (b"tocrawl 10", b"OK\r\n"),
    (b"tocrawl 0", b"OK\r\n"),
    (b"tocrawl x", b"CLIENT_ERROR bad command line format\r\n"),
    (b"tocrawl -1", b"CLIENT_ERROR bad command line format\r\n"),
    (b"tocrawl", b"ERROR\r\n"),
    (b"sleep 1000000", b"OK\r\n"),
    (b"sleep 2000000", b"CLIENT_ERROR sleep must be one second or less\r\n"),
    (b"sleep -1", b"CLIENT_ERROR bad command line format\r\n"),
    (b"enable", b"ERROR failed to start lru crawler thread\r\n"),
    (b"enable x", b"ERROR\r\n"),
    (b"", b"ERROR\r\n"),
    (b"foo", b"ERROR\r\n"),
    (b"METADUMP all", b"ERROR\r\n"),
]


def _reply(crawler: Crawler, engine: Engine, line: bytes) -> bytes:
    return compose.encode(crawler.execute(LruCrawler(line.split()), engine))


@pytest.mark.parametrize(("line", "reply"), REPLIES)
def test_replies_match_memcached(engine: Engine, line: bytes, reply: bytes) -> None:
    assert _reply(Crawler(), engine, line) == reply


def test_disable_refuses_dumps_until_enabled(engine: Engine) -> None:
    crawler = Crawler()
    assert _reply(crawler, engine, b"disable") == b"OK\r\n"
    assert _reply(crawler, engine, b"disable") == b"OK\r\n"
    assert _reply(crawler, engine, b"metadump all") == b"CLIENT_ERROR lru crawler disabled\r\n"
    assert _reply(crawler, engine, b"enable") == b"OK\r\n"
    assert _reply(crawler, engine, b"metadump all") == b"END\r\n"


def test_metadump_line_format() -> None:
    item = Item(5, 0, 100, 7, b"abc", 1796097044, FETCHED)
    assert metadump_line(b"a", item) == (
        b"key=a exp=-1 la=1796097044 cas=7 fetch=yes cls=1 size=67\n"
    )
    item = Item(0, 2000000000, 100, 4, b"z", 1796097044, 0)
    assert metadump_line(b"d%e~ x\x01", item) == (
        b"key=d%25e~%20x%01 exp=2000000000 la=1796097044 cas=4 fetch=no cls=1 size=67\n"
    )


def test_mgdump_line_uses_base64_for_unsafe_keys() -> None:
    item = Item(0, 0, 0, 1, b"")
    assert mgdump_line(b"plain", item) == b"mg plain\r\n"
    assert mgdump_line(b"b\x01x", item) == b"mg YgF4 b\r\n"


def test_parse_classes() -> None:
    assert parse_classes(b"all") == frozenset()
    assert parse_classes(b"1,,2") == frozenset({1, 2})
    assert parse_classes(b"63") == frozenset({63})
    assert parse_classes(b",") is None


def test_metadump_filters_by_class_and_streams_in_chunks(engine: Engine) -> None:
    for i in range(1500):
        engine.store(StoreMode.SET, b"k%04d" % i, 0, 0, b"x" * (10 if i % 2 else 100))
    reply = Crawler().execute(LruCrawler([b"metadump", b"all"]), engine)
    assert isinstance(reply, Streamed)
    chunks = list(reply.chunks)
    assert len(chunks) > 3  # one per walk step, then END
    assert chunks[-1] == b"END\r\n"
    lines = b"".join(chunks[:-1]).splitlines()
    assert len(lines) == 1500
    small = Crawler().execute(LruCrawler([b"metadump", b"1"]), engine)
    assert isinstance(small, Streamed)
    assert b"".join(small.chunks).count(b"\n") - 1 == 750


def _drain(conn: MemcacheConnection, execute: Callable[[Request], Response]) -> list[bytes]:
    batches = []
    while True:
        batch = conn.process(execute, 1 << 20)
        batches.append(batch.data)
        if not batch.more:
            return batches
        assert conn.streaming


def test_connection_writes_a_stream_chunk_by_chunk_then_continues(engine: Engine) -> None:
    for i in range(2000):
        engine.store(StoreMode.SET, b"k%04d" % i, 0, 0, b"x")
    crawler = Crawler()

    def execute(request: Request) -> Response:
        if isinstance(request, LruCrawler):
            return crawler.execute(request, engine)
        return VersionReply("1.6.18")

    conn = MemcacheConnection()
    conn.receive_data(b"lru_crawler metadump all\r\nversion\r\n")
    batches = _drain(conn, execute)
    out = b"".join(batches)
    assert out.startswith(b"key=k0000 ")
    assert out.endswith(b"END\r\nVERSION 1.6.18\r\n")
    assert out.count(b"\n") == 2000 + 2
    assert len(batches) > 4
    assert max(len(b) for b in batches) < 64 * 1024  # bounded: one walk step per chunk
    assert not conn.streaming


@pytest.mark.parametrize(
    ("before", "refused"),
    [
        (b"version\r\n", True),  # a reply held: memcached's resp_has_stack
        (b"mn\r\n", False),  # mn is a flush point: nothing is held
        (b"get a\r\n", False),  # so is get
        (b"version noreply\r\n", True),  # a noreply request holds its (empty) reply too
        (b"bogus\r\n", True),  # so does an error
    ],
)
@pytest.mark.parametrize(
    "dump",
    [b"lru_crawler metadump all", b"lru_crawler metadump 1", b"lru_crawler mgdump all"],
)
def test_a_dump_behind_held_replies_is_refused(
    engine: Engine, before: bytes, refused: bool, dump: bytes
) -> None:
    """memcached's process_lru_crawler_command: ``ERROR cannot pipeline other commands
    before metadump`` (mgdump) when a request since the last flush point holds a reply; the
    requests after it are answered as usual."""
    engine.store(StoreMode.SET, b"k", 0, 0, b"x")
    execute = Executor(engine, Counters(), ServerInfo(4, 1 << 20)).execute
    conn = MemcacheConnection()
    conn.receive_data(before + dump + b"\r\nversion\r\n")
    out = b"".join(_drain(conn, execute))
    word = dump.split()[1]
    assert (b"ERROR cannot pipeline other commands before %b\r\n" % word in out) == refused
    assert out.endswith(b"VERSION %b\r\n" % SERVER_VERSION.encode())
    # A bad class list is checked after the pipelining, as memcached does.
    conn.receive_data(before + b"lru_crawler metadump 99\r\n")
    out = b"".join(_drain(conn, execute))
    assert out.endswith(
        b"ERROR cannot pipeline other commands before metadump\r\n"
        if refused
        else b"BADCLASS invalid class id\r\n"
    )
