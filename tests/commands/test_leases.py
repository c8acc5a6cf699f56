"""mcrouter's commands without a server: the lease table (with an injected clock, so no test
sleeps) and the sans-I/O parsing and encoding of lease-get, lease-set and metaget."""

from __future__ import annotations

import pytest

from petracache.commands.leases import HOT_MISS, LeaseTable
from petracache.protocol import compose, errors
from petracache.protocol.connection import MemcacheConnection
from petracache.protocol.requests import (
    Delete,
    LeaseGet,
    LeaseSet,
    McrouterMetaget,
    TooLarge,
)
from petracache.protocol.responses import LeaseMiss, MetagetInfo
from petracache.rules.verbs import StoreMode
from tests.storage.engines import Clock


def test_first_miss_gets_a_token_then_hot_misses_until_it_expires() -> None:
    clock = Clock(1000.0)
    table = LeaseTable(clock, ttl=10)
    token = table.acquire(b"k")
    assert token >= 2
    assert table.acquire(b"k") == HOT_MISS
    clock.now += 10
    fresh = table.acquire(b"k")  # the lease lapsed: a new filler may try
    assert fresh not in (HOT_MISS, token)
    assert not table.redeem(b"k", token)


def test_redeem_consumes_and_needs_the_live_token() -> None:
    clock = Clock(1000.0)
    table = LeaseTable(clock, ttl=10)
    token = table.acquire(b"k")
    assert not table.redeem(b"k", token + 1)
    assert not table.redeem(b"other", token)
    assert table.redeem(b"k", token)
    assert not table.redeem(b"k", token)  # consumed
    late = table.acquire(b"k")
    clock.now += 11
    assert not table.redeem(b"k", late)  # expired


def test_invalidate_and_clear() -> None:
    table = LeaseTable(Clock())
    a, b = table.acquire(b"a"), table.acquire(b"b")
    table.invalidate(b"a")
    table.invalidate(b"missing")
    assert not table.redeem(b"a", a)
    table.clear()
    assert not table.redeem(b"b", b)
    assert len(table) == 0


def test_table_is_bounded_dropping_expired_then_oldest() -> None:
    clock = Clock(1000.0)
    table = LeaseTable(clock, ttl=10, max_leases=3)
    table.acquire(b"old")
    clock.now += 20
    first = table.acquire(b"a")
    table.acquire(b"b")
    table.acquire(b"c")  # full: "old" has expired and makes room
    assert len(table) == 3
    table.acquire(b"d")  # full of live leases: the oldest ("a") goes
    assert len(table) == 3
    assert not table.redeem(b"a", first)


def parse(data: bytes) -> list[object]:
    conn = MemcacheConnection(item_size_max=1024 * 1024)
    conn.receive_data(data)
    out: list[object] = []
    while True:
        try:
            request = conn.next_request()
        except errors.ProtocolError as exc:
            out.append(exc.reply)
            continue
        if not isinstance(request, LeaseGet | LeaseSet | McrouterMetaget | TooLarge | Delete):
            break
        out.append(request)
    return out


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (b"lease-get k\r\n", [LeaseGet(b"k")]),
        (b"metaget k\r\n", [McrouterMetaget(b"k")]),
        (
            b"lease-set k 77 5 -1 3\r\nabc\r\n",
            [LeaseSet(b"k", 77, 5, -1, b"abc")],
        ),
        (b"lease-get\r\n", [errors.BadCommandLine.reply]),
        (b"lease-get a b\r\n", [errors.BadCommandLine.reply]),
        (b"metaget " + b"k" * 251 + b"\r\n", [errors.BadCommandLine.reply]),
        (b"lease-set k 77 5 0\r\n", [errors.BadCommandLine.reply]),
        (b"lease-set k x 5 0 1\r\n", [errors.BadCommandLine.reply]),
        (b"lease-set k 1 5 0 -1\r\n", [errors.BadCommandLine.reply]),
        (b"delete k 30\r\n", [Delete(b"k")]),
        (b"delete k 30 noreply\r\n", [Delete(b"k", True)]),
    ],
)
def test_parsing(wire: bytes, expected: list[object]) -> None:
    assert parse(wire) == expected
    assert parse(wire + b"lease-get z\r\n") == [*expected, LeaseGet(b"z")]


def test_oversized_lease_set_is_refused_and_swallowed() -> None:
    data = b"x" * (2 * 1024 * 1024)
    wire = b"lease-set k 9 0 0 %d\r\n%b\r\nmetaget k\r\n" % (len(data), data)
    (too_large, after) = parse(wire)
    assert isinstance(too_large, TooLarge)
    assert (too_large.mode, too_large.key) == (StoreMode.ADD, b"k")
    assert after == McrouterMetaget(b"k")


def test_encoding() -> None:
    assert compose.encode(LeaseMiss(b"k", 1)) == b"LVALUE k 1 0 0\r\n\r\nEND\r\n"
    assert compose.encode(MetagetInfo(b"k", 3, 0)) == (
        b"META k age: 3; exptime: 0; from: unknown\r\nEND\r\n"
    )
