"""``parse_line``'s fast path against the general reader (``parse_general``).

The fast path may only take a line whose outcome it can prove, and other lines without NUL
reuse its split as their tokens, so on every line, the fast path's spellings and their near
misses alike (extra spaces, tabs, ``\\r``, NUL, signs,
leading zeros, long digit runs, long keys, ``noreply`` in the wrong place, other verbs),
``parse_line`` must return what ``parse_general`` returns (an equal object of the same
class) or raise what it raises (the same class, reply and ``noreply``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from petracache.protocol import errors
from petracache.protocol.requests import Get, Request
from petracache.protocol.text import StoreHeader, parse_general, parse_line
from petracache.rules.verbs import StoreMode

Parser = Callable[[bytes, int], Request | StoreHeader]
SIZES = (64, 1 << 20)  # a tiny -I makes item_size_ok refuse some plain sets

# Half the draws are the fast path's own spelling, so most lines are at most a field away.
VERBS = st.one_of(
    st.sampled_from([b"get", b"set"]),
    st.sampled_from(
        [b"gets", b"sets", b"GET", b"ge", b"add", b"get\t", b"set\r", b"", b"mg", b"ms", b"m"]
    ),
    st.sampled_from([b"delete", b"incr", b"touch", b"gat", b"mn", b"md", b"version", b"lru"]),
)
SEPARATORS = st.one_of(st.just(b" "), st.sampled_from([b"  ", b"\t", b"\0", b"", b" \0"]))
KEYS = st.one_of(
    st.sampled_from([b"k", b"key:0000012345", b"a" * 250, b"a" * 251, b"k\r", b"k\t", b""]),
    st.binary(max_size=12),
)
NUMBERS = st.one_of(
    st.sampled_from(
        [
            b"0",
            b"00",
            b"5",
            b"-1",
            b"+1",
            b"-0",
            b"999999999",
            b"1000000000",
            b"0000000001",
            b"2147483647",
            b"2147483648",
            b"4294967296",
            b"18446744073709551616",
            b"1x",
            b"1\r",
            b"",
            b"noreply",
        ]
    ),
    st.integers(min_value=0, max_value=10**12).map(lambda n: b"%d" % n),
)
TAILS = st.sampled_from([[], [b"noreply"], [b"noreply", b"x"], [b"x"], [b""], [b"NOREPLY"]])


def outcome(parse: Parser, line: bytes, item_size_max: int) -> tuple[object, ...]:
    """What ``parse`` makes of ``line``, comparable across the two parsers."""
    try:
        parsed = parse(line, item_size_max)
    except errors.ProtocolError as exc:
        return ("error", type(exc), exc.reply, exc.noreply, exc.discard_unsent, exc.partial)
    except errors.CloseConnection:
        return ("close",)
    return ("parsed", type(parsed), parsed)


def assert_same(line: bytes) -> None:
    for size in SIZES:
        assert outcome(parse_line, line, size) == outcome(parse_general, line, size), line


@st.composite
def near_misses(draw: st.DrawFn) -> bytes:
    """A get or set line, or something one or two edits away from one."""
    verb = draw(VERBS)
    fields = [draw(KEYS)]
    if draw(st.booleans()):  # set-shaped: three numbers
        fields += [draw(NUMBERS) for _ in range(3)]
    fields += draw(TAILS)
    line = verb
    for field in fields:
        line += draw(SEPARATORS) + field
    return line


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_misses())
def test_fast_path_agrees_on_near_misses(line: bytes) -> None:
    assert_same(line)


WIDE_NUMBERS = st.one_of(
    NUMBERS,
    st.integers(min_value=-(2**65), max_value=2**65).map(lambda n: b"%d" % n),
    st.integers(min_value=0, max_value=2**33).map(lambda n: b"%011d" % n),
)


@settings(max_examples=1000, deadline=None)
@given(KEYS, WIDE_NUMBERS, WIDE_NUMBERS, WIDE_NUMBERS, st.booleans())
def test_fast_path_agrees_on_set_fields(
    key: bytes, flags: bytes, exptime: bytes, nbytes: bytes, noreply: bool
) -> None:
    """Single-spaced set lines: only the fields vary (numbers around 2**31, 2**32, 2**64)."""
    assert_same(b"set %b %b %b %b%b" % (key, flags, exptime, nbytes, b" noreply" * noreply))


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=40))
def test_fast_path_agrees_on_random_lines(tail: bytes) -> None:
    assert_same(b"get " + tail)
    assert_same(b"set " + tail)
    assert_same(tail)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"get k", Get([b"k"], False)),
        (b"get " + b"a" * 250, Get([b"a" * 250], False)),
        (b"set k 1 2 3", StoreHeader(StoreMode.SET, b"k", 1, 2, 3, 0, False)),
        (b"set k 0 0 5 noreply", StoreHeader(StoreMode.SET, b"k", 0, 0, 5, 0, True)),
        (
            b"set k 999999999 999999999 0",
            StoreHeader(StoreMode.SET, b"k", 999999999, 999999999, 0, 0, False),
        ),
    ],
)
def test_fast_path_shapes(line: bytes, expected: object) -> None:
    """The shapes the fast path takes, with the values the general reader gives them."""
    assert parse_line(line, 1 << 20) == expected
    assert_same(line)


@pytest.mark.parametrize(
    "line",
    [
        b"get " + b"a" * 251,  # BadGetKey
        b"get k\0x",  # cut at the NUL
        b"get  k",  # empty token dropped
        b"set k 0 0 5 noreply extra",
        b"set k 0 0 noreply",
        b"set k -1 0 5",
        b"set k 0 -1 5",  # a negative exptime is valid, not plain
        b"set k 0 0 2147483647",  # too large for the item: TooLarge
        b"set k 4294967296 0 5",  # flags wrap
        b"set k 0 0 1048517",  # one byte over -I 1m with a one-byte key
        b"set " + b"a" * 251 + b" 0 0 1",
    ],
)
def test_fast_path_declines(line: bytes) -> None:
    """Lines near the fast path's shapes: whatever they give, both parsers give it."""
    assert_same(line)
