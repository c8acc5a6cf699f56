"""Per-item meta state (format v2) on a real RocksDB with an injected clock.

Runs meta requests through the meta command handlers against a real ``Engine`` so time can move
without sleeping: last-access times, the once-per-60-s access update, the fetched bit, stale
and win flags, TTL flags, and reading values written in format v1. Write counts come from
the engine's commit counter (every RocksDB write bumps it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from petracache.commands.context import Context
from petracache.commands.executor import HANDLERS
from petracache.commands.stats import ServerInfo
from petracache.observability.counters import Counters
from petracache.protocol import compose
from petracache.protocol.connection import NEED_DATA, MemcacheConnection
from petracache.storage import codec, items
from petracache.storage.engine import Engine, StoreMode
from tests.storage.engines import T0, Clock, delta, open_engine, store


def run(engine: Engine, line: bytes) -> bytes:
    """Parse one meta command (with its data block, if any) and execute it."""
    conn = MemcacheConnection()
    conn.receive_data(line)
    request = conn.next_request()
    assert request is not NEED_DATA
    info = ServerInfo(max_connections=1, item_size_max=engine.item_size_max)
    return compose.encode(HANDLERS[type(request)](Context(engine, Counters(), info), request))


def writes(engine: Engine) -> int:
    return engine.sequence.writes


@pytest.fixture
def uncached(tmp_path: Path, clock: Clock) -> Iterator[Engine]:
    """An engine without hot items and key sizes, so every fetch record is a RocksDB write,
    which these tests count (the hot items and the key sizes keep the records in memory
    instead: tests/storage/test_hot.py)."""
    eng = open_engine(tmp_path / "db", clock, hot_cache_size=0, exact_item_count=False)
    yield eng
    eng.close()


def test_get_records_a_fetch_once_then_at_most_every_60_seconds(
    uncached: Engine, clock: Clock
) -> None:
    engine = uncached
    store(engine, StoreMode.SET, b"k", 0, 0, b"v")
    before = writes(engine)
    engine.fetch(b"k")  # first fetch: sets the fetched bit (one write)
    assert writes(engine) == before + 1
    for _ in range(5):
        engine.fetch(b"k")
    clock.now += 60
    engine.fetch(b"k")
    assert writes(engine) == before + 1, "a hot item must not be rewritten on every read"
    clock.now += 1  # access time now older than 60 s: one more write
    engine.fetch(b"k")
    engine.fetch(b"k")
    assert writes(engine) == before + 2


def test_fetch_keeps_cas_deadline_and_data(engine: Engine, clock: Clock) -> None:
    _result, cas = store(engine, StoreMode.SET, b"k", 7, 100, b"v")
    clock.now += 61
    item = engine.fetch(b"k")
    assert item is not None
    assert (item.cas, item.deadline, item.flags, item.data) == (cas, T0 + 100, 7, b"v")
    assert item.bits & items.FETCHED
    assert item.last_access == T0 + 61


def test_hit_and_last_access_flags(engine: Engine, clock: Clock) -> None:
    run(engine, b"ms k 2\r\nhi\r\n")
    assert run(engine, b"mg k h l\r\n") == b"HD h0 l0\r\n"
    clock.now += 30
    assert run(engine, b"mg k h l\r\n") == b"HD h1 l30\r\n"
    clock.now += 31  # 61 s since the last recorded access: this fetch moves it
    assert run(engine, b"mg k h l\r\n") == b"HD h1 l61\r\n"
    assert run(engine, b"mg k l\r\n") == b"HD l0\r\n"


def test_classic_get_counts_as_a_fetch(engine: Engine) -> None:
    run(engine, b"ms k 2\r\nhi\r\n")
    engine.fetch(b"k")
    assert run(engine, b"mg k h\r\n") == b"HD h1\r\n"


def test_no_update_flag_leaves_state_alone(uncached: Engine) -> None:
    engine = uncached
    run(engine, b"ms k 2\r\nhi\r\n")
    before = writes(engine)
    assert run(engine, b"mg k h u\r\n") == b"HD h0\r\n"
    assert run(engine, b"mg k h u v\r\n") == b"VA 2 h0\r\nhi\r\n"
    assert writes(engine) == before


def test_ttl_flags_and_touch(engine: Engine, clock: Clock) -> None:
    run(engine, b"ms k 2 T100\r\nhi\r\n")
    clock.now += 10
    assert run(engine, b"mg k t T30 c\r\n").startswith(b"HD t90 c")
    assert run(engine, b"mg k t\r\n") == b"HD t30\r\n"
    clock.now += 30
    assert run(engine, b"mg k t\r\n") == b"EN\r\n"


def test_stale_while_revalidate(engine: Engine) -> None:
    run(engine, b"ms k 2 T100\r\nhi\r\n")
    assert run(engine, b"md k I T30\r\n") == b"HD\r\n"
    assert run(engine, b"mg k t v\r\n") == b"VA 2 t30 X W\r\nhi\r\n"
    assert run(engine, b"mg k t v\r\n") == b"VA 2 t30 Z X\r\nhi\r\n"
    assert run(engine, b"ms k 2\r\nok\r\n") == b"HD\r\n"
    assert run(engine, b"mg k v\r\n") == b"VA 2\r\nok\r\n"


def test_gat_keeps_stale_state(engine: Engine) -> None:
    run(engine, b"ms k 2\r\nhi\r\n")
    run(engine, b"md k I\r\n")
    engine.touch(b"k", 100)
    assert run(engine, b"mg k t\r\n") == b"HD t100 X W\r\n"


def test_in_place_incr_keeps_state_and_a_longer_number_does_not(engine: Engine) -> None:
    run(engine, b"ms n 1\r\n1\r\n")
    run(engine, b"md n I\r\n")
    assert delta(engine, b"n", 1, True) == 2
    assert run(engine, b"mg n v\r\n") == b"VA 1 X W\r\n2\r\n"
    assert delta(engine, b"n", 100, True) == 102
    assert run(engine, b"mg n v\r\n") == b"VA 3\r\n102\r\n"


def test_recache_win(engine: Engine, clock: Clock) -> None:
    run(engine, b"ms k 2 T10\r\nhi\r\n")
    assert run(engine, b"mg k R30 t\r\n") == b"HD t10 W\r\n"
    assert run(engine, b"mg k R30 t\r\n") == b"HD t10 Z\r\n"
    run(engine, b"ms k 2 T100\r\nhi\r\n")
    assert run(engine, b"mg k R30 t\r\n") == b"HD t100\r\n"


def test_vivify(engine: Engine) -> None:
    reply = run(engine, b"mg k N30 t c v\r\n")
    assert reply.startswith(b"VA 0 t30 c")
    assert reply.endswith(b" W\r\n\r\n")
    assert run(engine, b"mg k N30 t v\r\n") == b"VA 0 t30 Z\r\n\r\n"
    assert run(engine, b"ms k 2\r\nhi\r\n") == b"HD\r\n"
    assert run(engine, b"mg k N30 v\r\n") == b"VA 2\r\nhi\r\n"


def test_explicit_cas(engine: Engine) -> None:
    assert run(engine, b"ms k 2 E500 c\r\nhi\r\n") == b"HD c500\r\n"
    assert run(engine, b"mg k c\r\n") == b"HD c500\r\n"
    assert run(engine, b"md k I E600\r\n") == b"HD\r\n"
    assert run(engine, b"mg k c\r\n") == b"HD c600 X W\r\n"
    assert run(engine, b"ms n 1 E700\r\n5\r\n") == b"HD\r\n"
    assert run(engine, b"ma n E800 c v\r\n") == b"VA 1 c800\r\n6\r\n"
    assert run(engine, b"mg missing N0 E900 c\r\n") == b"HD c900 W\r\n"


def test_md_drop_value_keeps_an_empty_item(engine: Engine) -> None:
    run(engine, b"ms k 5 F3 E42\r\nhello\r\n")
    assert run(engine, b"md k x F9 T0\r\n") == b"HD\r\n"
    assert run(engine, b"mg k v f c\r\n") == b"VA 0 f9 c42\r\n\r\n"


def test_ms_size_and_append_vivify(engine: Engine) -> None:
    assert run(engine, b"ms k 2 MA N30 s\r\nhi\r\n") == b"HD s2\r\n"
    assert run(engine, b"ms k 3 MA s\r\nyou\r\n") == b"HD s5\r\n"
    assert run(engine, b"mg k v t\r\n") == b"VA 5 t30\r\nhiyou\r\n"
    assert run(engine, b"ms other 2 MA s\r\nhi\r\n") == b"NS s2\r\n"


def test_me_reports_this_store(engine: Engine, clock: Clock) -> None:
    run(engine, b"ms foo 2 T100\r\nhi\r\n")
    clock.now += 5
    assert run(engine, b"me foo\r\n") == (
        b"ME foo exp=-95 la=5 cas=%d fetch=no cls=1 size=64\r\n" % engine.current_cas
    )
    engine.fetch(b"foo")
    assert b" fetch=yes " in run(engine, b"me foo\r\n")
    assert run(engine, b"me nope\r\n") == b"EN\r\n"


def test_version_1_values_are_still_served(engine: Engine, clock: Clock) -> None:
    raw = codec.HEADER_V1.pack(codec.FORMAT_V1, 5, T0 + 100, T0 - 10, 77) + b"legacy"
    engine.db.items.put(b"old", raw)
    item = engine.fetch(b"old")
    assert item is not None
    assert (item.flags, item.deadline, item.cas, item.data) == (5, T0 + 100, 77, b"legacy")
    assert run(engine, b"mg old v f c t h\r\n") == b"VA 6 f5 c77 t100 h1\r\nlegacy\r\n"
    engine.writer.write_hints()  # the fetch record, kept with the hot item, reaches RocksDB
    stored = engine.db.items.get(b"old")
    assert stored is not None
    assert stored[0] == codec.FORMAT_V2, "the fetch record rewrote it in the current format"
