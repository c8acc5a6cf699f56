"""Binary commands on a real engine: statuses, CAS in replies, counters and ``/metrics``.

Frames go through ``BinaryConnection.process`` and an instrumented ``Executor`` on a real
RocksDB in ``tmp_path`` (injected clock), so each case checks what the reply says, what the
text protocol's counters say, and how ``RequestMetrics`` labels it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from petracache.commands.executor import Executor
from petracache.commands.stats import ServerInfo
from petracache.observability.counters import Counters
from petracache.observability.request_metrics import RequestMetrics
from petracache.protocol.binary import BinaryConnection
from petracache.protocol.connection import MemcacheConnection
from tests.binframes import (
    ADD,
    APPEND,
    DECR,
    DELETE,
    GAT,
    GET,
    GETK,
    INCR,
    REPLACE,
    SASL_AUTH,
    SET,
    STAT,
    TOUCH,
    Frame,
    delta,
    req,
    split,
    store,
    touch,
)
from tests.storage.engines import Clock, open_engine


class Harness:
    def __init__(self, executor: Executor, metrics: RequestMetrics) -> None:
        self.executor = executor
        self.metrics = metrics
        self.execute = metrics.instrument(executor.execute)

    def call(self, data: bytes, users: dict[bytes, bytes] | None = None) -> list[Frame]:
        conn = BinaryConnection(users=users)
        conn.receive_data(data)
        frames, rest = split(conn.process(self.execute, 1 << 20).data)
        assert rest == b""
        return frames

    def text(self, data: bytes) -> bytes:
        conn = MemcacheConnection()
        conn.receive_data(data)
        return conn.process(self.execute, 1 << 20).data

    def results(self, command: str) -> dict[str, int]:
        return self.metrics.commands[command].counts()

    @property
    def counters(self) -> Counters:
        return self.executor.ctx.counters


@pytest.fixture
def h(tmp_path: Path, clock: Clock) -> Iterator[Harness]:
    engine = open_engine(tmp_path / "db", clock)
    info = ServerInfo(max_connections=4, item_size_max=1 << 20)
    yield Harness(Executor(engine, Counters(), info), RequestMetrics())
    engine.close()


def test_store_replies_carry_the_new_cas_which_text_gets_reports(h: Harness) -> None:
    [stored] = h.call(store(SET, b"k", b"v", 5))
    assert stored.status == 0
    assert stored.cas
    assert h.text(b"gets k\r\n") == b"VALUE k 5 1 %d\r\nv\r\nEND\r\n" % stored.cas
    [hit] = h.call(req(GETK, b"k"))
    assert (hit.cas, hit.extras, hit.key, hit.value) == (stored.cas, b"\0\0\0\5", b"k", b"v")


def test_store_statuses_and_counters(h: Harness) -> None:
    frames = h.call(
        store(ADD, b"k", b"1")
        + store(ADD, b"k", b"2")
        + store(REPLACE, b"zz", b"x")
        + req(APPEND, b"zz", value=b"x")
        + store(SET, b"k", b"3", cas=999_999)
        + store(SET, b"zz", b"3", cas=1)
    )
    assert [f.status for f in frames] == [0, 2, 1, 5, 2, 1]
    assert h.results("add") == {"stored": 1, "not_stored": 1}
    assert h.results("cas") == {"exists": 1, "not_found": 1}
    assert (h.counters.cas_badval, h.counters.cas_misses, h.counters.cmd_set) == (1, 1, 6)


def test_incr_creates_counts_and_compares_cas(h: Harness) -> None:
    created, bumped, refused, missing = h.call(
        delta(INCR, b"n", 1, 10, 0)
        + delta(INCR, b"n", 5)
        + delta(DECR, b"n", 1, cas=12345)
        + delta(DECR, b"m", 1, 0, 0xFFFFFFFF)
    )
    assert created.value == (10).to_bytes(8, "big")
    assert bumped.value == (15).to_bytes(8, "big")
    assert bumped.cas > created.cas
    assert (refused.status, missing.status) == (2, 1)
    assert h.text(b"get n\r\n") == b"VALUE n 0 2\r\n15\r\nEND\r\n"
    assert (h.counters.incr_hits, h.counters.decr_misses) == (1, 1)
    assert h.results("incr") == {"stored": 1, "hit": 1}
    assert h.results("decr") == {"exists": 1, "not_found": 1}


def test_delete_compares_cas(h: Harness) -> None:
    [stored] = h.call(store(SET, b"k", b"v"))
    assert [f.status for f in h.call(req(DELETE, b"k", cas=stored.cas + 1))] == [2]
    assert [f.status for f in h.call(req(DELETE, b"k", cas=stored.cas))] == [0]
    assert h.results("delete") == {"exists": 1, "hit": 1}
    assert h.counters.delete_hits == 1


def test_get_touch_and_gat_count_like_text(h: Harness) -> None:
    h.call(store(SET, b"k", b"v", 3))
    frames = h.call(
        req(GET, b"k") + req(GET, b"zz") + touch(TOUCH, b"k", 100) + touch(GAT, b"zz", 1)
    )
    assert [f.status for f in frames] == [0, 1, 0, 1]
    assert frames[2].value == b""
    assert (h.counters.get_hits, h.counters.get_misses) == (1, 1)
    assert (h.counters.touch_hits, h.counters.touch_misses, h.counters.cmd_touch) == (1, 1, 2)
    assert h.results("get") == {"hit": 1, "miss": 1}
    assert h.results("touch") == {"hit": 1}
    assert h.results("gat") == {"miss": 1}


def test_stat_groups(h: Harness) -> None:
    general = h.call(req(STAT))
    assert general[0].key == b"pid"
    assert general[-1] == Frame(STAT, 0, b"", b"", b"", 0, 0)
    settings = {f.key: f.value for f in h.call(req(STAT, b"settings"))[:-1]}
    assert settings[b"item_size_max"] == b"1048576"
    assert h.call(req(STAT, b"items")) == [Frame(STAT, 0, b"", b"", b"", 0, 0)]
    h.call(req(STAT, b"detail on") + store(SET, b"p:k", b"v"))
    [dump, _end] = h.call(req(STAT, b"detail dump"))
    assert (dump.key, dump.value) == (b"detailed", b"PREFIX p get 0 hit 0 set 1 del 0\r\nEND\r\n")
    assert h.call(req(STAT, b"nope"))[0].status == 1


def test_stat_items_slabs_sizes_are_the_text_groups_as_packets(h: Harness) -> None:
    """``stat items``/``slabs``/``sizes`` carry the rows of ``stats items``/``slabs``/
    ``sizes`` (one packet per STAT line, then the terminator); sizes_enable/_disable answer
    one packet and no terminator, as memcached's items.c does."""
    end = Frame(STAT, 0, b"", b"", b"", 0, 0)
    assert h.call(req(STAT, b"items")) == [end]
    h.call(store(SET, b"k", b"value"))
    for group in (b"items", b"slabs", b"sizes"):
        frames = h.call(req(STAT, group))
        assert frames[-1] == end
        lines = h.text(b"stats " + group + b"\r\n").split(b"\r\n")
        rows = [tuple(line.split(b" ", 2)[1:]) for line in lines if line.startswith(b"STAT ")]
        assert [(f.key, f.value) for f in frames[:-1]] == rows, group
    items = {f.key: f.value for f in h.call(req(STAT, b"items"))[:-1]}
    assert items[b"items:1:number"] == b"1"
    for toggle in (b"sizes_enable", b"sizes_disable"):
        assert h.call(req(STAT, toggle)) == [
            Frame(STAT, 0, b"", b"sizes_status", b"disabled", 0, 0)
        ]
    assert h.call(req(STAT, b"conns"))[0].status == 1  # text-only, as in memcached
    assert h.call(req(STAT, b"cachedump 1 1"))[0].status == 1


def test_sasl_counts_auth_commands(h: Harness) -> None:
    users = {b"u": b"p"}
    frames = h.call(
        req(SASL_AUTH, b"PLAIN", value=b"\0u\0bad") + req(SASL_AUTH, b"PLAIN", value=b"\0u\0p"),
        users,
    )
    assert [(f.status, f.value) for f in frames] == [
        (0x20, b"Auth failure."),
        (0, b"Authenticated"),
    ]
    assert (h.counters.auth_cmds, h.counters.auth_errors) == (2, 1)
    assert h.results("sasl_auth") == {"error": 1, "ok": 1}
