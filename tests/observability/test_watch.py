"""``watch``'s log: line formats, the per-watcher bound and ``skipped=``, the watcher limit,
and what the commands report (through a real executor on a real engine, clock injected).

The formats are memcached 1.6.18's ``logger.c`` ones; ``tests/e2e/test_watch.py`` compares
the lines with a real memcached's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from petracache.commands.executor import Executor
from petracache.commands.stats import ServerInfo
from petracache.commands.watching import eviction_hook
from petracache.observability.counters import Counters
from petracache.observability.watch import (
    CONNEVENTS,
    EVICTIONS,
    FETCHERS,
    LINE_ROOM,
    MUTATIONS,
    OK,
    WATCHER_BUFFER,
    WATCHER_LIMIT,
    WatchLog,
    parse_kinds,
)
from petracache.protocol.binary import BinaryConnection
from petracache.protocol.connection import MemcacheConnection
from petracache.storage.items import FETCHED, Item
from tests.binframes import INCR, delta
from tests.storage.engines import T0, Clock, open_engine


def _log(at: float = T0 + 0.000042) -> WatchLog:
    return WatchLog(clock=lambda: at)


def test_lines_have_memcacheds_formats() -> None:
    log = _log()
    watcher = log.add(FETCHERS | MUTATIONS | EVICTIONS | CONNEVENTS, lambda: None)
    assert watcher is not None
    log.cfd = 21
    log.conn_new("127.0.0.1", 40000, b"tcp", 21)
    log.item_get(b"a b%", b"found", 1, 3)
    log.item_store(b"k", b"stored", b"set", -63, 1, 1)
    log.eviction(b"k", True, -1, 5, 2, 100)
    log.conn_close("unix", 0, b"local", b"normal", 21)
    assert watcher.take().decode().splitlines() == [
        "OK",
        # the microseconds unpadded, as memcached's %d prints them; gid 1 went to the watcher
        f"ts={T0}.42 gid=2 type=conn_new rip=127.0.0.1 rport=40000 transport=tcp cfd=21",
        f"ts={T0}.42 gid=3 type=item_get key=a%20b%25 status=found clsid=1 cfd=21 size=3",
        f"ts={T0}.42 gid=4 type=item_store key=k status=stored cmd=set ttl=4294967233 clsid=1"
        " cfd=21 size=1",
        f"ts={T0}.42 gid=5 type=eviction key=k fetch=yes ttl=-1 la=5 clsid=2 size=100",
        f"ts={T0}.42 gid=6 type=conn_close rip=unix rport=0 transport=local reason=normal cfd=21",
    ]
    assert watcher.take() == b""


def test_a_watcher_gets_only_its_kinds_and_only_while_watching() -> None:
    log = _log()
    changes: list[bool] = []
    log.on_change.append(changes.append)
    log.item_get(b"early", b"found", 1, 1)  # nobody watches: no line, no gid
    fetchers = log.add(FETCHERS, lambda: None)
    mutations = log.add(MUTATIONS, lambda: None)
    assert fetchers is not None
    assert mutations is not None
    assert (log.active, log.kinds, changes) == (True, FETCHERS | MUTATIONS, [True])
    log.item_get(b"k", b"not_found", 0, 0)
    log.item_store(b"k", b"stored", b"add", 0, 1, 1)
    log.conn_new("127.0.0.1", 1, b"tcp", 3)  # nobody asked for connevents
    assert fetchers.take().count(b"\n") == 2  # OK and the item_get
    assert mutations.take().count(b"\n") == 2
    log.remove(fetchers)
    log.remove(fetchers)  # idempotent
    log.remove(mutations)
    assert (log.active, log.kinds, changes) == (False, 0, [True, False])


def test_a_slow_watcher_skips_lines_and_says_how_many() -> None:
    """The buffer is bounded (memcached's 256 KiB): lines that do not fit are counted, and
    the first that fits once the watcher has read is preceded by ``skipped=<n>``."""
    log = _log()
    wakes: list[int] = []
    watcher = log.add(FETCHERS, lambda: wakes.append(1))
    assert watcher is not None
    key = b"k" * 200
    offered = 0
    while not watcher.skipped:
        log.item_get(key, b"found", 1, 10)
        offered += 1
    for _ in range(9):
        log.item_get(key, b"found", 1, 10)
    assert watcher.skipped == 10
    assert len(watcher.buffer) + LINE_ROOM <= WATCHER_BUFFER
    held = watcher.take()
    assert held.startswith(OK)
    assert held.count(b"type=item_get") == offered - 1
    log.item_get(b"after", b"not_found", 0, 0)
    after = watcher.take()
    assert after.startswith(b"skipped=10\n")
    assert b"key=after" in after
    assert watcher.skipped == 0
    assert len(wakes) == offered  # once per line queued


def test_at_most_twenty_watchers() -> None:
    log = _log()
    watchers = [log.add(FETCHERS, lambda: None) for _ in range(WATCHER_LIMIT)]
    assert all(w is not None for w in watchers)
    assert log.full
    assert log.add(FETCHERS, lambda: None) is None


@pytest.mark.parametrize(
    ("args", "kinds"),
    [
        ([], FETCHERS),
        ([b"mutations", b"evictions"], MUTATIONS | EVICTIONS),
        ([b"connevents", b"fetchers"], CONNEVENTS | FETCHERS),
        ([b"rawcmds"], 0),  # memcached's, with no events here
        ([b"fetchers", b"bogus"], None),
        ([b"noreply"], None),
    ],
)
def test_parse_kinds(args: list[bytes], kinds: int | None) -> None:
    assert parse_kinds(args) == kinds


# -- what the commands report -----------------------------------------------------------------


class Watched:
    """An executor on a real engine with a watcher on every kind."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.clock = clock
        self.engine = open_engine(path, clock)
        self.log = WatchLog(clock=clock)
        info = ServerInfo(max_connections=4, item_size_max=1 << 20)
        self.executor = Executor(self.engine, Counters(), info, self.log)
        watcher = self.log.add(FETCHERS | MUTATIONS | EVICTIONS, lambda: None)
        assert watcher is not None
        self.watcher = watcher
        watcher.take()

    def text(self, data: bytes) -> list[str]:
        """Send ``data`` over text; the log lines it made, without ts= and gid=."""
        conn = MemcacheConnection()
        conn.receive_data(data)
        conn.process(self.executor.execute, 1 << 20)
        return self.lines()

    def lines(self) -> list[str]:
        return [line.split(" ", 2)[2] for line in self.watcher.take().decode().splitlines()]


@pytest.fixture
def watched(tmp_path: Path, clock: Clock) -> Iterator[Watched]:
    w = Watched(tmp_path / "db", clock)
    yield w
    w.engine.close()


def test_commands_report_as_memcached_logs(watched: Watched) -> None:
    assert watched.executor.ctx.watching  # the flag the request path reads
    assert watched.text(b"set a 0 100 1\r\n1\r\nget a b\r\n") == [
        "type=item_get key=a status=not_found clsid=0 cfd=-1 size=0",
        "type=item_store key=a status=stored cmd=set ttl=100 clsid=1 cfd=-1 size=1",
        "type=item_get key=a status=found clsid=1 cfd=-1 size=1",
        "type=item_get key=b status=not_found clsid=0 cfd=-1 size=0",
    ]
    # append: the joined item, with the old item's TTL; incr: a lookup only
    assert watched.text(b"append a 0 0 2\r\nxy\r\nincr a 1\r\ndelete a\r\n") == [
        "type=item_get key=a status=found clsid=1 cfd=-1 size=1",
        "type=item_store key=a status=stored cmd=append ttl=100 clsid=1 cfd=-1 size=3",
        "type=item_get key=a status=found clsid=1 cfd=-1 size=3",
        "type=item_get key=a status=found clsid=1 cfd=-1 size=3",
    ]
    # mg N on a miss: the lookup only; ma N: a second lookup and an add
    assert watched.text(b"mg v v N30\r\nma c N0 J7\r\n") == [
        "type=item_get key=v status=not_found clsid=0 cfd=-1 size=0",
        "type=item_get key=c status=not_found clsid=0 cfd=-1 size=0",
        "type=item_get key=c status=not_found clsid=0 cfd=-1 size=0",
        "type=item_store key=c status=stored cmd=add ttl=0 clsid=1 cfd=-1 size=1",
    ]
    big = b"x" * (2 << 20)
    assert watched.text(b"set big 0 0 %d\r\n%b\r\n" % (len(big), big)) == [
        "type=item_store key=big status=too_large cmd=set ttl=0 clsid=0 cfd=-1 size=0",
        "type=item_get key=big status=not_found clsid=0 cfd=-1 size=0",
    ]


def test_expired_and_flushed_lookups(watched: Watched) -> None:
    watched.text(b"set f 0 0 1\r\n1\r\n")
    watched.clock.now += 1
    watched.text(b"flush_all\r\n")
    watched.clock.now += 1
    watched.text(b"set e 0 10 1\r\n1\r\n")
    watched.clock.now += 11
    assert watched.text(b"get e f\r\n") == [
        "type=item_get key=e status=expired clsid=0 cfd=-1 size=0",
        "type=item_get key=f status=flushed clsid=0 cfd=-1 size=0",
    ]


def test_binary_incr_that_creates_logs_a_second_lookup_and_an_add(watched: Watched) -> None:
    conn = BinaryConnection()
    conn.receive_data(delta(INCR, b"n", 1, initial=5))
    conn.process(watched.executor.execute, 1 << 20)
    assert watched.lines() == [
        "type=item_get key=n status=not_found clsid=0 cfd=-1 size=0",
        "type=item_get key=n status=not_found clsid=0 cfd=-1 size=0",
        "type=item_store key=n status=stored cmd=add ttl=0 clsid=1 cfd=-1 size=1",
    ]


def test_eviction_hook(watched: Watched) -> None:
    hook = eviction_hook(watched.log, 1 << 20)
    item = Item(0, T0 + 50, T0, 7, b"12345", last_access=T0 - 3, bits=FETCHED)
    hook(b"gone", item, T0)
    assert watched.lines() == ["type=eviction key=gone fetch=yes ttl=50 la=3 clsid=1 size=5"]
    watched.log.remove(watched.watcher)
    hook(b"gone", item, T0)  # nobody watches: nothing
    assert not watched.executor.ctx.watching
