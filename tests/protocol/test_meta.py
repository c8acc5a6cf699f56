"""Table-driven tests of the meta command parser (``protocol.meta``) through ``MemcacheConnection``.

Sans I/O: each case is fed whole and one byte at a time, and must give the same request
objects or error lines. Expected errors were captured from memcached 1.6.18 (the
end-to-end differential test sends the same lines to it); ``E`` and md ``x`` follow newer
memcached. Also covers memcached's base64 key decoder quirks.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from petracache.protocol import errors
from petracache.protocol.connection import NEED_DATA, MemcacheConnection
from petracache.protocol.meta import b64decode_key, b64encode_key
from petracache.protocol.meta_requests import (
    MetaArithmetic,
    MetaDebug,
    MetaDelete,
    MetaGet,
    MetaNoop,
    MetaRejected,
    MetaSet,
)
from petracache.protocol.requests import TooLarge
from petracache.rules.verbs import StoreMode

ERROR = ("error", b"ERROR\r\n")
BAD = ("error", b"CLIENT_ERROR bad command line format\r\n")
BAD_TOKEN = ("error", b"CLIENT_ERROR bad token in command line format\r\n")
DUP = ("error", b"CLIENT_ERROR duplicate flag\r\n")
INVALID = ("error", b"CLIENT_ERROR invalid flag\r\n")
INVALID_OR_DUP = ("error", b"CLIENT_ERROR invalid or duplicate flag\r\n")
DECODE = ("error", b"CLIENT_ERROR error decoding key\r\n")
OPAQUE = ("error", b"CLIENT_ERROR opaque token too long\r\n")
CHUNK = ("error", b"CLIENT_ERROR bad data chunk\r\n")
K250 = b"k" * 250
O32 = b"O" + b"1" * 31  # the longest opaque token
O33 = b"O" + b"1" * 32


def rejected(line: bytes, swallow: int) -> MetaRejected:
    return MetaRejected(line, swallow)


def outcomes(chunks: Iterable[bytes]) -> list[object]:
    conn = MemcacheConnection()
    out: list[object] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        while True:
            try:
                request = conn.next_request()
            except errors.ProtocolError as exc:
                # meta errors are never suppressed: a quiet error would read as noreply
                out.append(("error", exc.reply) if not exc.noreply else ("quiet", exc.reply))
                continue
            if request is NEED_DATA:
                break
            out.append(request)
    return out


def ms(key: bytes, data: bytes, tokens: tuple[bytes, ...] = (), **kw: object) -> MetaSet:
    return MetaSet(key, kw.pop("binary", False), tokens, data, **kw)  # type: ignore[arg-type]


CASES: list[tuple[bytes, list[object]]] = [
    # dispatch: two-byte commands starting with m
    (b"mn\r\n", [MetaNoop()]),
    (b"mn any thing\r\n", [MetaNoop()]),
    (b"mz foo\r\n", [ERROR]),
    (b"mgg foo\r\n", [ERROR]),
    (b"MG foo\r\n", [ERROR]),
    (b"mg\r\n", [ERROR]),
    (b"ms\r\n", [ERROR]),
    (b"md\r\n", [ERROR]),
    (b"ma\r\n", [ERROR]),
    # mg
    (b"mg foo\r\n", [MetaGet(b"foo", False, ())]),
    (
        b"mg foo v k c t s f h l O9 q u\r\n",
        [
            MetaGet(
                b"foo",
                False,
                (b"v", b"k", b"c", b"t", b"s", b"f", b"h", b"l", b"O9", b"q", b"u"),
                value=True,
                quiet=True,
                no_update=True,
            )
        ],
    ),
    (
        b"mg foo T30 N-1 R5 E77\r\n",
        [
            MetaGet(
                b"foo",
                False,
                (b"T30", b"N-1", b"R5", b"E77"),
                ttl=30,
                vivify=-1,
                recache=5,
                new_cas=77,
            )
        ],
    ),
    (b"mg Zm9v b k\r\n", [MetaGet(b"foo", True, (b"b", b"k"))]),
    (b"mg " + K250 + b" v\r\n", [MetaGet(K250, False, (b"v",), value=True)]),
    (b"mg " + K250 + b"k v\r\n", [BAD]),
    (b"mg foo v v\r\n", [DUP]),
    (b"mg foo \x7fx\r\n", [DUP]),
    (b"mg foo S\r\n", [INVALID]),
    (b"mg foo Tx\r\n", [BAD_TOKEN]),
    (b"mg foo Tx z\r\n", [INVALID]),  # an unknown flag stops the pre-parse at once
    (b"mg foo Tx Nx Cx\r\n", [BAD_TOKEN]),
    (b"mg foo k b\r\n", [DECODE]),
    (
        b"mg foo " + b" ".join(b"%d" % i for i in range(18)) + b"\r\n",
        [("error", b"CLIENT_ERROR options flags are too long\r\n")],
    ),
    (b"mg foo " + b" ".join(b"%d" % i for i in range(17)) + b"\r\n", [INVALID]),
    (b"mg foo " + O33 + b"\r\n", [MetaGet(b"foo", False, (O33,))]),  # checked at execution
    # ms: the data block, then errors and what they swallow
    (b"ms foo 2\r\nhi\r\n", [ms(b"foo", b"hi")]),
    (
        b"ms foo 2 T30 F5 C9 E10 I q k c O1 MA N7\r\nhi\r\n",
        [
            ms(
                b"foo",
                b"hi",
                (b"T30", b"F5", b"C9", b"E10", b"I", b"q", b"k", b"c", b"O1", b"MA", b"N7"),
                client_flags=5,
                ttl=30,
                mode="A",
                compare_cas=9,
                new_cas=10,
                invalidate=True,
                quiet=True,
                vivify=7,
            )
        ],
    ),
    (b"ms Zm9v 0 b\r\n\r\n", [ms(b"foo", b"", (b"b",), binary=True)]),
    (b"ms foo 2 F4294967296\r\nhi\r\n", [ms(b"foo", b"hi", (b"F4294967296",))]),
    (b"ms foo\r\n", [BAD]),
    (b"ms foo x\r\nhi\r\n", [BAD, ERROR]),  # before the length is known: nothing swallowed
    (b"ms foo -1\r\nhi\r\n", [BAD, ERROR]),
    # The longest data block whose length plus CRLF fits an int (memcached 1.6.18 refuses
    # vlen > INT_MAX - 2 before anything else, and swallows the largest as too large).
    (b"ms foo 2147483645\r\n", [TooLarge(StoreMode.SET, b"foo", 2147483647, False)]),
    (b"ms foo 2147483646\r\nhi\r\n", [BAD, ERROR]),
    (b"ms " + K250 + b"k 2\r\nhi\r\n", [BAD, ERROR]),
    (
        b"ms foo 2 " + b" ".join(b"%d" % i for i in range(17)) + b"\r\nhi\r\n",
        [("error", b"CLIENT_ERROR options flags too long\r\n"), ERROR],
    ),
    (b"ms foo 2 MX\r\nhi\r\n", [rejected(b"CLIENT_ERROR invalid mode for ms M token\r\n", 4)]),
    (b"ms foo 2 Ms\r\nhi\r\n", [rejected(b"CLIENT_ERROR invalid mode for ms M token\r\n", 4)]),
    (b"ms foo 2 MSS\r\nhi\r\n", [rejected(b"CLIENT_ERROR incorrect length for M token\r\n", 4)]),
    (b"ms foo 2 Fx\r\nhi\r\n", [rejected(BAD[1], 4)]),
    (b"ms foo 2 Tx Fx\r\nhi\r\n", [rejected(BAD_TOKEN[1], 4)]),  # F keeps the earlier error
    (b"ms foo 2 q q\r\nhi\r\n", [rejected(DUP[1], 4)]),
    (b"ms foo 2 zz\r\nhi\r\n", [rejected(INVALID[1], 4)]),
    (b"ms foo 2 b\r\nhi\r\n", [rejected(DECODE[1], 4)]),
    (b"ms foo 2 " + O33 + b"\r\nhi\r\n", [rejected(OPAQUE[1], 4)]),
    (
        b"ms foo 2 " + O33 + b" MX\r\nhi\r\n",
        [rejected(b"CLIENT_ERROR invalid mode for ms M token\r\n", 4)],
    ),
    (b"ms foo 2 " + O32 + b"\r\nhi\r\n", [ms(b"foo", b"hi", (O32,))]),
    (b"ms foo 2\r\nabc\r\n", [CHUNK, ERROR]),
    (b"ms foo 2 q\r\nabc\r\n", [CHUNK, ERROR]),
    (b"ms a 1048517\r\n", [TooLarge(StoreMode.SET, b"a", 1048519, False)]),
    # md
    (b"md foo\r\n", [MetaDelete(b"foo", False, ())]),
    (
        b"md Zm9v b q C5 E6 I T30 k O1 x F3\r\n",
        [
            MetaDelete(
                b"foo",
                True,
                (b"b", b"q", b"C5", b"E6", b"I", b"T30", b"k", b"O1", b"x", b"F3"),
                compare_cas=5,
                new_cas=6,
                invalidate=True,
                ttl=30,
                client_flags=3,
                drop_value=True,
                quiet=True,
            )
        ],
    ),
    (b"md foo q q\r\n", [INVALID_OR_DUP]),
    (b"md foo z\r\n", [INVALID_OR_DUP]),
    (b"md foo Tx I\r\n", [INVALID_OR_DUP]),
    (b"md foo b\r\n", [INVALID_OR_DUP]),
    (b"md foo " + O33 + b"\r\n", [OPAQUE]),
    (
        b"md foo " + b" ".join(b"%d" % i for i in range(18)) + b"\r\n",
        [("error", b"CLIENT_ERROR options flags too long\r\n")],
    ),
    # ma
    (b"ma foo\r\n", [MetaArithmetic(b"foo", False, ())]),
    (
        b"ma foo MD D5 J7 N0 T9 C1 E2 q v\r\n",
        [
            MetaArithmetic(
                b"foo",
                False,
                (b"MD", b"D5", b"J7", b"N0", b"T9", b"C1", b"E2", b"q", b"v"),
                incr=False,
                delta=5,
                initial=7,
                vivify=0,
                ttl=9,
                compare_cas=1,
                new_cas=2,
                quiet=True,
                value=True,
            )
        ],
    ),
    (b"ma foo M-\r\n", [MetaArithmetic(b"foo", False, (b"M-",), incr=False)]),
    (b"ma foo M+\r\n", [MetaArithmetic(b"foo", False, (b"M+",))]),
    (b"ma foo Mx\r\n", [("error", b"CLIENT_ERROR invalid mode for ma M token\r\n")]),
    (b"ma foo MII\r\n", [INVALID_OR_DUP]),
    (b"ma foo D-1\r\n", [INVALID_OR_DUP]),
    (b"ma foo Jx N0\r\n", [INVALID_OR_DUP]),
    (b"ma foo D18446744073709551616\r\n", [INVALID_OR_DUP]),
    # me
    (b"me foo\r\n", [MetaDebug(b"foo")]),
    (b"me Zm9v b\r\n", [MetaDebug(b"foo")]),
    (b"me foo c\r\n", [MetaDebug(b"foo")]),
    (b"me\r\n", [BAD]),
    (b"me foo b\r\n", [BAD]),
    (b"me " + K250 + b"k\r\n", [BAD]),
    # pipelines keep going after errors
    (b"mg a v\r\nmg a v v\r\nmn\r\n", [MetaGet(b"a", False, (b"v",), value=True), DUP, MetaNoop()]),
]


@pytest.mark.parametrize(("data", "expected"), CASES, ids=[repr(c[0][:40]) for c in CASES])
def test_whole(data: bytes, expected: list[object]) -> None:
    assert outcomes([data]) == expected


@pytest.mark.parametrize(("data", "expected"), CASES, ids=[repr(c[0][:40]) for c in CASES])
def test_byte_by_byte(data: bytes, expected: list[object]) -> None:
    assert outcomes(data[i : i + 1] for i in range(len(data))) == expected


def test_rejected_ms_swallows_exactly_its_data() -> None:
    assert outcomes([b"ms foo 3 zz\r\nabc\r\nmn\r\n"]) == [
        rejected(INVALID[1], 5),
        MetaNoop(),
    ]


def test_too_large_ms_swallows_its_data() -> None:
    data = b"x" * 2_000_000
    assert outcomes([b"ms a 2000000 q\r\n", data, b"\r\nmn\r\n"]) == [
        TooLarge(StoreMode.SET, b"a", 2_000_002, False),
        MetaNoop(),
    ]


B64_CASES = [
    (b"Zm9v", b"foo"),
    (b"Zm9vYg==", b"foob"),
    (b"Zm9vYmE=", b"fooba"),
    (b"Zm9v!", b"foo"),  # bytes outside the alphabet are skipped
    (b"Zm9vYg", None),  # unpadded: 6 symbols is not a multiple of 4
    (b"Zm9v=", None),
    (b"Zm9", None),
    (b"!!!!", None),
    (b"====", None),
    (b"A===", None),
    (b"", None),
    (b"Zm9vYg==Zm9v", b"foob"),  # decoding stops after the padded quad
]


@pytest.mark.parametrize(("text", "decoded"), B64_CASES)
def test_base64_key_decoding_matches_memcached(text: bytes, decoded: bytes | None) -> None:
    assert b64decode_key(text) == decoded


def test_base64_round_trip() -> None:
    for key in (b"\x00", b"\xff\xfe", b"binary\x00key", bytes(range(200))):
        assert b64decode_key(b64encode_key(key)) == key
