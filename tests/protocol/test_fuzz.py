"""Fuzzing the sans-I/O parser (``MemcacheConnection``) with hypothesis.

Properties, for random bytes and for valid command streams with random mutations, fed in
random chunks:

1. ``next_request`` only ever returns a request or ``NEED_DATA``, or raises a
   ``ProtocolError`` (then parsing continues) or ``CloseConnection`` (then it stops);
   nothing else escapes, and every call consumes input or asks for more (no livelock).
2. The unconsumed input it holds stays bounded: the multiget line limit or one item plus
   one command line, plus the chunk just received.
3. How the input is split does not matter: chunked and whole-buffer feeding give the same
   sequence of outcomes, as long as no line is longer than ``MAX_LINE`` (memcached too closes
   a connection whose buffered line passes 2048 bytes before its newline has arrived, so
   there the outcome depends on the split by design).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from petracache.protocol import connection
from petracache.protocol.connection import (
    MAX_LINE,
    MAX_MULTIGET_LINE,
    NEED_DATA,
    MemcacheConnection,
)
from petracache.protocol.errors import CloseConnection, ProtocolError
from petracache.protocol.requests import Get

ITEM_SIZE_MAX = 4096  # small, so generated values cross it
BOUND = max(MAX_MULTIGET_LINE, ITEM_SIZE_MAX + MAX_LINE + 2)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = st.sampled_from([b"k", b"key", b"a" * 250, b"a" * 251, b"\xff\x00k", b""])
NUMS = st.sampled_from(
    [
        b"0",
        b"1",
        b"-1",
        b"100",
        b"4294967296",
        b"18446744073709551616",
        b"x",
        b"",
        b"00",
        b"5000",
        b"-0",
        b"4095",
    ]
)
WORDS = st.sampled_from(
    [
        b"get",
        b"gets",
        b"gat",
        b"gats",
        b"set",
        b"add",
        b"replace",
        b"append",
        b"prepend",
        b"cas",
        b"delete",
        b"incr",
        b"decr",
        b"touch",
        b"flush_all",
        b"version",
        b"verbosity",
        b"stats",
        b"quit",
        b"noreply",
        b"mg",
        b"ms",
        b"md",
        b"ma",
        b"mn",
        b"me",
        b"cache_memlimit",
        b"lease-get",
        b"lease-set",
        b"shutdown",
        b"misbehave",
    ]
)


@st.composite
def command(draw: st.DrawFn) -> bytes:
    """A plausible command: a known word, keys and numbers, maybe a data block."""
    name = draw(WORDS)
    args = draw(st.lists(st.one_of(KEYS, NUMS, WORDS), max_size=6))
    line = b" ".join([name, *args]) + draw(st.sampled_from([b"\r\n", b"\n", b"\r\n\r\n"]))
    if name in (b"set", b"add", b"replace", b"append", b"prepend", b"cas", b"ms"):
        size = draw(st.integers(0, 64))
        line = b"%s %s 0 0 %d\r\n" % (name, draw(KEYS), size)
        line += draw(st.binary(min_size=size, max_size=size))
        line += draw(st.sampled_from([b"\r\n", b"\n", b"xx", b""]))
    return line


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A stream of commands, then byte flips, insertions, deletions and cuts."""
    data = bytearray(b"".join(draw(st.lists(command(), min_size=1, max_size=12))))
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete", "cut", "dup"]))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.sampled_from([b"\r", b"\n", b" ", b"\0", b"\r\n", b"99999"]))
        elif action == "delete":
            del data[at]
        elif action == "cut":
            del data[at:]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 40))]
    return bytes(data)


def chunks_of(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in [*points, len(data)]:
        out.append(data[last:p])
        last = p
    return [c for c in out if c]


def short_lines(data: bytes) -> bool:
    return max(len(segment) for segment in data.split(b"\n")) < MAX_LINE


def run(chunks: list[bytes]) -> list[object]:
    """Feed ``chunks`` one at a time; return the outcomes, checking properties 1 and 2."""
    conn = MemcacheConnection(ITEM_SIZE_MAX)
    outcomes: list[object] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        for _ in range(len(chunk) + 2):  # each request consumes >= 1 byte: no livelock
            try:
                request = conn.next_request()
            except CloseConnection:
                outcomes.append("close")
                return outcomes
            except ProtocolError as exc:
                assert exc.reply.endswith(b"\r\n")  # noqa: PT017 (not a raises test)
                outcomes.append((type(exc).__name__, exc.reply, exc.noreply))
                continue
            if request is NEED_DATA:
                break
            outcomes.append(request)
        else:
            raise AssertionError("next_request kept returning without consuming input")
        assert conn.buffered <= BOUND + len(chunk)
    return outcomes


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(0, 1 << 16), max_size=20))
def test_random_bytes(data: bytes, cuts: list[int]) -> None:
    run(chunks_of(data, cuts))


@FUZZ
@given(mutated(), st.lists(st.integers(0, 1 << 16), max_size=20))
def test_mutated_commands_any_split(data: bytes, cuts: list[int]) -> None:
    assume(short_lines(data))
    assert run(chunks_of(data, cuts)) == run([data])


@FUZZ
@given(mutated())
def test_mutated_commands_byte_by_byte(data: bytes) -> None:
    assume(short_lines(data))
    assert run([data[i : i + 1] for i in range(len(data))]) == run([data])


@contextmanager
def line_scan(native: bool) -> Iterator[None]:
    """Run the text reader's line search as the compiled build does (a byte scan up to
    ``_SCAN_MAX``, then ``find``) or as the interpreter does (``find``). Only the pure build
    reads the flag at each call (the compiled one keeps a ``Final`` in C and always scans),
    so this compares the two searches in the pure test pass."""
    saved = connection._NATIVE
    connection._NATIVE = native  # type: ignore[misc]
    try:
        yield
    finally:
        connection._NATIVE = saved  # type: ignore[misc]


@pytest.mark.parametrize("native", [True, False])
def test_lines_of_every_length_around_the_scan_bound(native: bool) -> None:
    # The bound is the scan's edge case: the newline just before, at and after it, and a
    # "\r" on either side of it. 40 KB in one read: every line is searched from inside it.
    keys = [b"k" * n for n in range(1, 2 * connection._SCAN_MAX)]
    data = b"".join(b"get %b%b\n" % (key, b"\r" * (len(key) % 2)) for key in keys)
    with line_scan(native):
        requests = run([b"mn\r\n" + data])
    assert requests[1:] == [Get([key], return_cas=False) for key in keys]


@FUZZ
@given(mutated(), st.lists(st.integers(0, 1 << 16), max_size=20))
def test_the_byte_scan_finds_the_lines_find_finds(data: bytes, cuts: list[int]) -> None:
    assume(short_lines(data))
    with line_scan(native=True):
        scanned = run(chunks_of(data, cuts))
    with line_scan(native=False):
        found = run(chunks_of(data, cuts))
    assert scanned == found


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([b"get ", b"gets ", b"set k 0 0 ", b"", b"   "]), st.integers(1, 64))
def test_long_lines_stay_bounded(prefix: bytes, kib: int) -> None:
    """A line that never ends is refused before it outgrows the bound."""
    chunk = b"k" * 65536
    conn = MemcacheConnection(ITEM_SIZE_MAX)
    conn.receive_data(prefix)
    for _ in range(kib * 1024 // 64 + 20):
        conn.receive_data(chunk)
        try:
            while conn.next_request() is not NEED_DATA:
                pass
        except CloseConnection:
            return
        except ProtocolError:
            continue
        assert conn.buffered <= BOUND + len(chunk)
