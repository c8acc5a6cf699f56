"""lru_crawler replies (memcached 1.6.18's, read from the real server) and the dump stream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from petracache.commands.crawler import Crawler, metadump_line, mgdump_line, parse_classes
from petracache.protocol import compose
from petracache.protocol.connection import MemcacheConnection
from petracache.protocol.crawler import LruCrawler, Streamed
from petracache.protocol.requests import Request
from petracache.protocol.responses import Response, VersionReply
from petracache.rules.verbs import StoreMode
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


def test_connection_writes_a_stream_chunk_by_chunk_then_continues(engine: Engine) -> None:
    for i in range(2000):
        engine.store(StoreMode.SET, b"k%04d" % i, 0, 0, b"x")
    crawler = Crawler()

    def execute(request: Request) -> Response:
        if isinstance(request, LruCrawler):
            return crawler.execute(request, engine)
        return VersionReply("1.6.18")

    conn = MemcacheConnection()
    conn.receive_data(b"version\r\nlru_crawler metadump all\r\nversion\r\n")
    batches = []
    while True:
        batch = conn.process(execute, 1 << 20)
        batches.append(batch.data)
        if not batch.more:
            break
        assert conn.streaming
    out = b"".join(batches)
    assert out.startswith(b"VERSION 1.6.18\r\nkey=k0000 ")
    assert out.endswith(b"END\r\nVERSION 1.6.18\r\n")
    assert out.count(b"\n") == 2000 + 3
    assert len(batches) > 4
    assert max(len(b) for b in batches) < 64 * 1024  # bounded: one walk step per chunk
    assert not conn.streaming
