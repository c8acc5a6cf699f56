"""The binary protocol's parser, encoder and protocol detection, sans I/O: bytes in, bytes out.

Requests are checked whole and fed one byte at a time; ``process`` runs with a plain
function as executor (no storage), so what is under test is the protocol layer's rules:
what each header turns into, what is refused and how (reply, skip, close), SASL's states,
flush points and the memory bound. Frames are built by ``tests.binframes``, written from
memcached's header layout independently of the parser.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from petracache.protocol import binary_compose
from petracache.protocol.binary import BinaryConnection, Refusal
from petracache.protocol.binary_requests import (
    BinaryRequest,
    BinDelete,
    BinDelta,
    BinFlush,
    BinGet,
    BinNoop,
    BinSasl,
    BinStat,
    BinStatus,
    BinStore,
    BinTooLarge,
)
from petracache.protocol.connection import NEED_DATA, MemcacheConnection
from petracache.protocol.detect import ClientConnection
from petracache.protocol.requests import Request
from petracache.protocol.responses import (
    BinaryReply,
    BinaryStats,
    ErrorReply,
    Response,
    Status,
)
from petracache.rules.verbs import StoreMode
from tests.binframes import Frame, delta, req, split, store, touch

USERS = {b"alice": b"pw"}


def parse_all(data: bytes, users: dict[bytes, bytes] | None = None) -> list[object]:
    conn = BinaryConnection(users=users)
    conn.receive_data(data)
    out = []
    while (item := conn.next_request()) is not NEED_DATA:
        out.append(item)
        if isinstance(item, Refusal) and item.close:
            break  # the connection closes here
    return out


def parse_bytewise(data: bytes, users: dict[bytes, bytes] | None = None) -> list[object]:
    conn = BinaryConnection(users=users)
    out = []
    for i in range(len(data)):
        conn.receive_data(data[i : i + 1])
        while (item := conn.next_request()) is not NEED_DATA:
            out.append(item)
    return out


SX = struct.pack(">II", 7, 100)
CASES: list[tuple[bytes, object]] = [
    (req(0x00, b"k", opaque=5), BinGet(0x00, 5, b"k")),
    (req(0x09, b"k"), BinGet(0x09, 0, b"k", quiet=True)),
    (req(0x0C, b"k"), BinGet(0x0C, 0, b"k", with_key=True)),
    (req(0x0D, b"k"), BinGet(0x0D, 0, b"k", with_key=True, quiet=True)),
    (touch(0x1D, b"k", 9), BinGet(0x1D, 0, b"k", 9)),
    (touch(0x1E, b"k", 9), BinGet(0x1E, 0, b"k", 9, quiet=True)),
    (touch(0x23, b"k", 9), BinGet(0x23, 0, b"k", 9, with_key=True)),
    (touch(0x24, b"k", 9), BinGet(0x24, 0, b"k", 9, with_key=True, quiet=True)),
    (touch(0x1C, b"k", 9), BinGet(0x1C, 0, b"k", 9, with_value=False)),
    (store(0x01, b"k", b"v", 7, 100), BinStore(0x01, 0, StoreMode.SET, b"k", 7, 100, b"v")),
    (store(0x11, b"k", b"", cas=3), BinStore(0x11, 0, StoreMode.SET, b"k", 0, 0, b"", 3, True)),
    (store(0x02, b"k", b"v"), BinStore(0x02, 0, StoreMode.ADD, b"k", 0, 0, b"v")),
    (store(0x13, b"k", b"v"), BinStore(0x13, 0, StoreMode.REPLACE, b"k", 0, 0, b"v", 0, True)),
    (req(0x0E, b"k", value=b"v"), BinStore(0x0E, 0, StoreMode.APPEND, b"k", 0, 0, b"v")),
    (req(0x1A, b"k", value=b"v"), BinStore(0x1A, 0, StoreMode.PREPEND, b"k", 0, 0, b"v", 0, True)),
    (req(0x04, b"k", cas=9), BinDelete(0x04, 0, b"k", 9)),
    (req(0x14, b"k"), BinDelete(0x14, 0, b"k", 0, True)),
    (delta(0x05, b"k", 2, 3, 4), BinDelta(0x05, 0, b"k", True, 2, 3, 4)),
    (delta(0x16, b"k", 2, 3, 4, cas=1), BinDelta(0x16, 0, b"k", False, 2, 3, 4, 1, True)),
    (req(0x08), BinFlush(0x08, 0)),
    (req(0x18, extras=struct.pack(">I", 60)), BinFlush(0x18, 0, 60, True)),
    (req(0x0A, opaque=1), BinNoop(0x0A, 1)),
    (req(0x0B), BinNoop(0x0B, 0)),
    (req(0x07), BinNoop(0x07, 0)),
    (req(0x17), BinNoop(0x17, 0, True)),
    (req(0x10), BinStat(0x10, 0, b"")),
    (req(0x10, b"settings"), BinStat(0x10, 0, b"settings")),
]


@pytest.mark.parametrize(("frame", "expected"), CASES)
def test_requests(frame: bytes, expected: object) -> None:
    assert parse_all(frame) == [expected]
    assert parse_bytewise(frame + frame) == [expected, expected]


def refusal(opcode: int, status: BinStatus, *, close: bool = False, flush: bool = True) -> Refusal:
    return Refusal(binary_compose.error(opcode, 0, status), close, flush)


EINVAL_CLOSE = [
    req(0x00, b"k", b"\0\0\0\0"),  # get with extras
    req(0x00),  # get without a key
    req(0x01, b"k", value=b"v"),  # set without extras
    req(0x0E, b"k", SX, b"v"),  # append with extras
    req(0x04, b"k", b"\0\0\0\0"),  # delete with extras
    req(0x04),  # delete without a key
    req(0x05, b"k", b"\0" * 20, b"v"),  # incr with a value
    req(0x08, b"k"),  # flush with a key
    req(0x08, extras=b"\0\0"),  # flush with 2-byte extras
    req(0x0A, value=b"x"),  # noop with a body
    req(0x0B, b"x"),  # version with a key
    req(0x1C, b"k"),  # touch without extras
    req(0x10, extras=b"\0\0\0\0"),  # stat with extras
    req(0x00, b"k" * 251),  # a key over 250 bytes
    req(0x20, value=b"x"),  # list mechanisms with a body
    req(0x21, value=b"x"),  # auth without a mechanism
]


@pytest.mark.parametrize("frame", EINVAL_CLOSE)
def test_invalid_arguments_close(frame: bytes) -> None:
    assert parse_all(frame)[0] == refusal(frame[1], BinStatus.EINVAL, close=True)


def test_key_longer_than_body_is_an_unknown_command_and_closes() -> None:
    frame = req(0x00, b"abc", bodylen=2)
    assert parse_all(frame)[0] == refusal(0x00, BinStatus.UNKNOWN_COMMAND, close=True)


def test_unknown_opcode_skips_bodylen_after_the_key() -> None:
    """memcached's quirk: the skip starts after the key, so it eats the next bytes too."""
    frame = req(0x50, b"kk", value=b"vv") + b"\xff\xff" + req(0x0A)
    assert parse_all(frame) == [
        refusal(0x50, BinStatus.UNKNOWN_COMMAND, flush=False),
        BinNoop(0x0A, 0),
    ]
    assert parse_all(req(0x50) + req(0x0A)) == [
        refusal(0x50, BinStatus.UNKNOWN_COMMAND),
        BinNoop(0x0A, 0),
    ]


def test_invalid_magic() -> None:
    [close] = parse_all(b"\x81" + b"\0" * 23)
    assert isinstance(close, Refusal)
    assert (close.reply, close.close) == (b"", True)


def test_too_large_value_is_skipped_as_it_arrives() -> None:
    conn = BinaryConnection(item_size_max=1024)
    conn.receive_data(store(0x01, b"k", b"x" * 2000) + req(0x0A))
    assert conn.next_request() == BinTooLarge(0x01, 0, StoreMode.SET, b"k")
    assert conn.next_request() == BinNoop(0x0A, 0)
    conn = BinaryConnection(item_size_max=1024)
    conn.receive_data(req(0x01, b"k", SX, bodylen=2**32 - 1))
    assert conn.next_request() == BinTooLarge(0x01, 0, StoreMode.SET, b"k")
    for _ in range(100):
        conn.receive_data(b"\0" * 65536)
        assert conn.next_request() is NEED_DATA
        assert conn.buffered == 0  # skipped, never buffered


def test_sasl_without_users_is_unknown() -> None:
    frames = req(0x20) + req(0x21, b"PLAIN", value=b"\0a\0b") + req(0x0A)
    assert parse_all(frames) == [
        refusal(0x20, BinStatus.UNKNOWN_COMMAND),
        refusal(0x21, BinStatus.UNKNOWN_COMMAND, flush=False),
        BinNoop(0x0A, 0),
    ]


def sasl(opcode: int, status: BinStatus, body: bytes = b"", counted: bool = True) -> BinSasl:
    return BinSasl(opcode, 0, status, body, counted)


def test_sasl_plain() -> None:
    conn = BinaryConnection(users=USERS)
    assert not conn.authenticated
    conn.receive_data(req(0x0B) + req(0x20))
    assert conn.next_request() == BinNoop(0x0B, 0)  # version needs no authentication
    assert conn.next_request() == sasl(0x20, BinStatus.SUCCESS, b"PLAIN", False)
    for data, ok in [
        (b"\0alice\0wrong", False),
        (b"\0bob\0pw", False),
        (b"bob\0alice\0pw", False),
        (b"alicepw", False),
        (b"alice\0alice\0pw", True),
        (b"\0alice\0pw", True),
    ]:
        conn.receive_data(req(0x21, b"PLAIN", value=data))
        expected = (
            sasl(0x21, BinStatus.SUCCESS, b"Authenticated")
            if ok
            else sasl(0x21, BinStatus.AUTH_ERROR)
        )
        assert conn.next_request() == expected
        assert conn.authenticated is ok
    conn.receive_data(req(0x22, b"PLAIN", value=b"\0alice\0pw"))  # a step after success
    assert conn.next_request() == sasl(0x22, BinStatus.AUTH_ERROR)
    assert not conn.authenticated


def test_sasl_continue_then_step() -> None:
    conn = BinaryConnection(users=USERS)
    conn.receive_data(req(0x21, b"PLAIN") + req(0x22, b"PLAIN", value=b"\0alice\0pw"))
    assert conn.next_request() == sasl(0x21, BinStatus.AUTH_CONTINUE, counted=False)
    assert conn.next_request() == sasl(0x22, BinStatus.SUCCESS, b"Authenticated")
    conn.receive_data(req(0x21, b"CRAM-MD5", value=b"x"))
    assert conn.next_request() == sasl(0x21, BinStatus.AUTH_ERROR)


def test_sasl_refusals() -> None:
    conn = BinaryConnection(item_size_max=1024, users=USERS)
    conn.receive_data(req(0x21, b"M" * 33, value=b"abc") + req(0x21, b"PLAIN", value=b"x" * 2000))
    assert conn.next_request() == refusal(0x21, BinStatus.EINVAL, flush=False)
    assert conn.next_request() == refusal(0x21, BinStatus.ENOMEM, flush=False)
    conn.receive_data(req(0x00, b"k"))
    assert conn.next_request() == refusal(0x00, BinStatus.AUTH_ERROR, close=True)


# -- process ---------------------------------------------------------------------------------


def execute(request: Request) -> Response:
    """A hit for every get, success for everything else, a miss for key ``miss``."""
    if isinstance(request, BinGet):
        if request.key == b"miss":
            key = request.key if request.with_key else b""
            return BinaryReply(request.opcode, request.opaque, 1, key=key, quiet=request.quiet)
        return BinaryReply(request.opcode, request.opaque, cas=1, extras=b"\0\0\0\0", value=b"v")
    if isinstance(request, BinStat):
        return BinaryStats(request.opcode, request.opaque, [(b"a", b"1")])
    if isinstance(request, BinTooLarge):
        return BinaryReply(request.opcode, request.opaque, BinStatus.E2BIG)
    assert isinstance(request, BinaryRequest)
    return BinaryReply(request.opcode, request.opaque, quiet=getattr(request, "quiet", False))


def process(data: bytes, limit: int = 1 << 20) -> tuple[list[tuple[int, int]], bool, bool, int]:
    conn = BinaryConnection(item_size_max=1024)
    conn.receive_data(data)
    batch = conn.process(execute, limit)
    frames, rest = split(batch.data)
    assert rest == b""
    return [(f.opcode, f.status) for f in frames], batch.close, batch.more, batch.errors


def test_process_answers_in_order_and_quiet_successes_are_silent() -> None:
    frames = store(0x11, b"k", b"v") + req(0x09, b"miss") + req(0x09, b"k") + req(0x0A)
    assert process(frames) == ([(0x09, 0), (0x0A, 0)], False, False, 0)
    assert process(req(0x10))[0] == [(0x10, 0), (0x10, 0)]


def test_quit_closes_after_its_reply_and_quitq_silently() -> None:
    assert process(req(0x00, b"k") + req(0x07) + req(0x0A)) == ([(0, 0), (7, 0)], True, False, 0)
    assert process(req(0x17) + req(0x0A)) == ([], True, False, 0)


def test_errors_close_after_the_replies_before_them() -> None:
    assert process(req(0x00, b"k") + req(0x00)) == ([(0, 0), (0, 4)], True, False, 1)


def test_invalid_magic_drops_replies_held_since_the_last_flush_point() -> None:
    bad = b"\x00" * 24
    assert process(req(0x00, b"k") + bad) == ([], True, False, 1)
    assert process(req(0x00, b"k") + req(0x0A) + req(0x00, b"k") + bad)[0] == [(0, 0), (10, 0)]
    # an error reply that skipped no body is a flush point; a getk miss and a skip are not
    assert process(req(0x00, b"miss") + bad)[0] == [(0, 1)]
    assert process(req(0x0C, b"miss") + bad)[0] == []
    assert process(store(0x01, b"k", b"x" * 2000) + bad)[0] == []
    assert process(req(0x50) + bad)[0] == [(0x50, 0x81)]


def test_many_requests_flush_every_twenty() -> None:
    frames = b"".join(req(0x00, b"k") for _ in range(25)) + b"\x00" * 24
    assert len(process(frames)[0]) == 21


def test_write_limit_stops_and_resumes() -> None:
    conn = BinaryConnection()
    conn.receive_data(b"".join(req(0x00, b"k") for _ in range(10)))
    first = conn.process(execute, 100)
    assert first.more
    rest = conn.process(execute, 1 << 20)
    assert not rest.more
    assert len(split(first.data + rest.data)[0]) == 10


def test_storage_failures_answer_out_of_memory() -> None:
    conn = BinaryConnection()
    conn.receive_data(req(0x00, b"k", opaque=4))
    batch = conn.process(lambda r: ErrorReply(b"SERVER_ERROR disk full\r\n"), 1 << 20)
    assert split(batch.data)[0] == [Frame(0x00, 0x82, b"", b"", b"Out of memory", 4, 0)]


def test_unknown_and_too_large_replies() -> None:
    frames = req(0x50, b"k", value=b"x") + b"\0" + store(0x01, b"k", b"x" * 2000) + req(0x0A)
    assert process(frames) == ([(0x50, 0x81), (0x01, 0x03), (0x0A, 0)], False, False, 1)


# -- encoding --------------------------------------------------------------------------------


def test_encode_reply_forms() -> None:
    ok = binary_compose.encode_reply(BinaryReply(1, 9, cas=5, extras=b"e", key=b"k", value=b"v"))
    assert ok == struct.pack(">BBHBBHIIQ", 0x81, 1, 1, 1, 0, 0, 3, 9, 5) + b"ekv"
    miss = binary_compose.encode_reply(BinaryReply(0, 0, 1, cas=5))
    assert split(miss)[0][0].value == b"Not found"
    assert split(miss)[0][0].cas == 0
    keyed = binary_compose.encode_reply(BinaryReply(0x0C, 0, 1, key=b"k"))
    assert split(keyed)[0][0][1:5] == (1, b"", b"k", b"")
    assert binary_compose.encode_reply(BinaryReply(1, 0, quiet=True)) == b""
    more = binary_compose.encode_reply(BinaryReply(0x21, 0, BinStatus.AUTH_CONTINUE))
    assert split(more)[0][0].value == b""
    stats = binary_compose.encode_stats(BinaryStats(0x10, 3, [(b"a", b"1")]))
    assert [(f.key, f.value, f.opaque) for f in split(stats)[0]] == [(b"a", b"1", 3), (b"", b"", 3)]


# -- detection -------------------------------------------------------------------------------


def protocol_of(conn: ClientConnection) -> object:
    return conn.protocol


def test_detection_by_first_byte() -> None:
    conn = ClientConnection()
    assert conn.process(execute, 100).data == b""
    assert (conn.streaming, conn.buffered) == (False, 0)
    conn.receive_data(b"")
    assert protocol_of(conn) is None  # EOF before any byte decides nothing
    conn.receive_data(req(0x0A)[:10])
    assert isinstance(conn.protocol, BinaryConnection)
    assert conn.buffered == 10
    conn.receive_data(req(0x0A)[10:])
    assert split(conn.process(execute, 100).data)[0][0].opcode == 0x0A
    text = ClientConnection()
    text.receive_data(b"version\r\n")
    assert isinstance(text.protocol, MemcacheConnection)
    assert text.process(lambda r: Status.OK, 100).data == b"OK\r\n"


def test_binding_protocol_fixes_the_protocol() -> None:
    """memcached -B: ascii reads the magic byte as text, binary reads text as a header."""
    ascii_only = ClientConnection(binding="ascii")
    ascii_only.receive_data(req(0x0A))
    assert isinstance(ascii_only.protocol, MemcacheConnection)
    binary_only = ClientConnection(binding="binary")
    binary_only.receive_data(b"version\r\n")
    assert isinstance(binary_only.protocol, BinaryConnection)
    assert binary_only.process(execute, 100) == (b"", False, False, 0, 0)  # needs 24 bytes
    binary_only.receive_data(b"x" * 20)
    assert binary_only.process(execute, 100).close  # no magic byte: closed, no reply


def test_binary_yields_at_reqs_per_event() -> None:
    conn = ClientConnection(reqs_per_event=2)
    conn.receive_data(req(0x0A) * 2 + req(0x0B) * 2)  # noop noop version version
    assert conn.process(execute, 1 << 20).yields == 2  # the 3rd, and the final write


# -- properties ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.booleans())
def test_any_bytes_after_the_magic_yield_requests_or_refusals(body: bytes, auth: bool) -> None:
    """Never an exception; buffered input bounded by the longest header, extras and key."""
    conn = BinaryConnection(item_size_max=1024, users=USERS if auth else None)
    conn.receive_data(b"\x80" + body)
    for _ in range(len(body) + 2):
        item = conn.next_request()
        if item is NEED_DATA:
            break
        assert isinstance(item, (Refusal, BinaryRequest))
        if isinstance(item, Refusal) and item.close:
            break
    assert conn.buffered <= 24 + 255 + 65535 + 1024


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([c[0] for c in CASES]), min_size=1, max_size=8), st.data())
def test_pipelines_cut_anywhere_parse_alike(frames: list[bytes], data: st.DataObject) -> None:
    payload = b"".join(frames)
    cut = data.draw(st.integers(0, len(payload)))
    conn = BinaryConnection()
    out = []
    for piece in (payload[:cut], payload[cut:]):
        conn.receive_data(piece)
        while (item := conn.next_request()) is not NEED_DATA:
            out.append(item)
    assert out == parse_all(payload)
