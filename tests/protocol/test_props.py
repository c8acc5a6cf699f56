"""Hypothesis properties of the text parser (sans I/O).

1. Any stream of valid commands, split at any byte boundaries, parses to exactly the
   commands it was built from (so pipelining and TCP segmentation never change meaning).
2. Any bytes at all, split anywhere, yield only requests, ``ProtocolError`` or
   ``CloseConnection``: never another exception, and the parser always terminates.

``test_fuzz.py`` adds mutated-command and memory-bound properties.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings, strategies as st

from petracache.protocol.connection import MemcacheConnection
from petracache.protocol.requests import (
    Arithmetic,
    Delete,
    FlushAll,
    Get,
    Request,
    Store,
    Touch,
    Verbosity,
    Version,
)
from petracache.rules.verbs import StoreMode
from tests.protocol.text_outcomes import outcomes

PROPS = settings(max_examples=200, deadline=None)
KEY_BYTES = [b for b in range(1, 256) if b not in b" \r\n"]
keys = st.lists(st.sampled_from(KEY_BYTES), min_size=1, max_size=250).map(bytes)
flags = st.integers(0, 2**32 - 1)
exptimes = st.integers(-(2**31), 2**31 - 1)
u64 = st.integers(0, 2**64 - 1)
noreply = st.booleans()


def _nr(flag: bool) -> bytes:
    return b" noreply" if flag else b""


@st.composite
def commands(draw: st.DrawFn) -> tuple[bytes, Request]:
    """One valid command: its wire bytes and the request it must parse to."""
    kind = draw(st.sampled_from(["get", "gat", "store", "cas", "delete", "arith", "other"]))
    if kind == "get":
        ks = draw(st.lists(keys, min_size=1, max_size=30))
        cas = draw(st.booleans())
        return b"%s %s\r\n" % (b"gets" if cas else b"get", b" ".join(ks)), Get(ks, cas)
    if kind == "gat":
        ks = draw(st.lists(keys, min_size=1, max_size=5))
        t = draw(exptimes)
        return b"gat %d %s\r\n" % (t, b" ".join(ks)), Get(ks, False, t)
    key, nr = draw(keys), draw(noreply)
    if kind in ("store", "cas"):
        mode = StoreMode.CAS if kind == "cas" else draw(st.sampled_from(list(StoreMode)[:5]))
        f, t, data = draw(flags), draw(exptimes), draw(st.binary(max_size=200))
        unique = draw(u64) if kind == "cas" else 0
        cas_token = b" %d" % unique if kind == "cas" else b""
        line = b"%s %s %d %d %d%s%s\r\n" % (
            mode.value.encode(), key, f, t, len(data), cas_token, _nr(nr)
        )  # fmt: skip
        return line + data + b"\r\n", Store(mode, key, f, t, data, unique, nr)
    if kind == "delete":
        return b"delete %s%s\r\n" % (key, _nr(nr)), Delete(key, nr)
    if kind == "arith":
        incr, delta = draw(st.booleans()), draw(u64)
        verb = b"incr" if incr else b"decr"
        return b"%s %s %d%s\r\n" % (verb, key, delta, _nr(nr)), Arithmetic(key, delta, incr, nr)
    which = draw(st.sampled_from(["touch", "flush", "version", "verbosity"]))
    t = draw(exptimes)
    if which == "touch":
        return b"touch %s %d%s\r\n" % (key, t, _nr(nr)), Touch(key, t, nr)
    if which == "flush":
        return b"flush_all %d%s\r\n" % (t, _nr(nr)), FlushAll(t, nr)
    if which == "version":
        return b"version\r\n", Version()
    level = draw(st.integers(0, 2**32 - 1))
    return b"verbosity %d%s\r\n" % (level, _nr(nr)), Verbosity(level, nr)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@PROPS
@given(st.lists(commands(), min_size=1, max_size=20), st.lists(st.integers(0, 10**6)))
def test_valid_stream_parses_the_same_however_split(
    stream: list[tuple[bytes, Request]], cuts: list[int]
) -> None:
    data = b"".join(wire for wire, _ in stream)
    expected = [request for _, request in stream]
    assert outcomes(MemcacheConnection(), _split(data, cuts)) == expected
    assert outcomes(MemcacheConnection(), [data]) == expected


@PROPS
@given(st.lists(commands(), min_size=1, max_size=5))
def test_valid_stream_byte_by_byte(stream: list[tuple[bytes, Request]]) -> None:
    data = b"".join(wire for wire, _ in stream)
    chunks = [data[i : i + 1] for i in range(len(data))]
    assert outcomes(MemcacheConnection(), chunks) == [request for _, request in stream]


@PROPS
@given(st.binary(max_size=3000), st.lists(st.integers(0, 10**6), max_size=20))
def test_random_bytes_never_raise_anything_else(data: bytes, cuts: list[int]) -> None:
    """``outcomes`` only catches ProtocolError/CloseConnection: anything else fails here."""
    for outcome in outcomes(MemcacheConnection(item_size_max=2048), _split(data, cuts)):
        assert isinstance(outcome, tuple) or outcome.__class__.__module__.endswith("requests")
