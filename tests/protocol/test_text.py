"""Table-driven tests of the classic text parser (``MemcacheConnection``), sans I/O.

Every case is fed twice: as one buffer, and one byte at a time (h11's test_io style). Both
must give exactly the expected outcomes: request objects, protocol errors with memcached's
reply line (and whether ``noreply`` hides it), or a close. Expected replies were captured
from memcached 1.6.18 (the end-to-end differential test checks the same lines against it).
"""

from __future__ import annotations

import pytest

from petracache.protocol import errors
from petracache.protocol.admin import Admin
from petracache.protocol.connection import MAX_LINE, NEED_DATA, MemcacheConnection
from petracache.protocol.requests import (
    Arithmetic,
    CacheMemlimit,
    Delete,
    FlushAll,
    Get,
    LeaseSet,
    Quit,
    Stats,
    Store,
    TooLarge,
    Touch,
    Verbosity,
    Version,
)
from petracache.protocol.text import StoreHeader, parse_line
from petracache.rules.verbs import StoreMode
from tests.protocol.text_outcomes import CLOSE, outcomes

SET, ADD, REP = StoreMode.SET, StoreMode.ADD, StoreMode.REPLACE
APP, PRE, CAS = StoreMode.APPEND, StoreMode.PREPEND, StoreMode.CAS
ERROR = ("error", b"ERROR\r\n", False)
BAD = ("error", b"CLIENT_ERROR bad command line format\r\n", False)
BAD_QUIET = ("error", b"CLIENT_ERROR bad command line format\r\n", True)
CHUNK = ("error", b"CLIENT_ERROR bad data chunk\r\n", False)
EXPTIME = ("error", b"CLIENT_ERROR invalid exptime argument\r\n", False)
DELTA = ("error", b"CLIENT_ERROR invalid numeric delta argument\r\n", False)
DEL_USAGE = (
    "error",
    b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
    False,
)
K250 = b"k" * 250
K251 = b"k" * 251
LARGEST = 1048516  # 1-byte key, flags 0, -I 1m


CASES: list[tuple[bytes, list[object]]] = [
    # retrieval
    (b"get a\r\n", [Get([b"a"], False)]),
    (b"get a b  c\r\n", [Get([b"a", b"b", b"c"], False)]),
    (b"gets a\n", [Get([b"a"], True)]),
    (b"bget a\r\n", [Get([b"a"], False)]),
    (b"get a a\r\n", [Get([b"a", b"a"], False)]),
    (b"get\r\n", [ERROR]),
    (b"gets \r\n", [ERROR]),
    (b"get " + K250 + b"\r\n", [Get([K250], False)]),
    (b"get a " + K251 + b"\r\n", [BAD]),
    (b"gat 100 a b\r\n", [Get([b"a", b"b"], False, 100)]),
    (b"gats -1 a\r\n", [Get([b"a"], True, -1)]),
    (b"gat 100\r\n", [Get([], False, 100)]),
    (b"gat\r\n", [ERROR]),
    (b"gat abc a\r\n", [EXPTIME]),
    (b"gat 1x a\r\n", [EXPTIME]),
    (
        b"get " + b" ".join(b"k%d" % i for i in range(30)) + b"\r\n",
        [Get([b"k%d" % i for i in range(30)], False)],
    ),
    (b"get a\tb\r\n", [Get([b"a\tb"], False)]),
    (b"get a\x00b c\r\n", [Get([b"a"], False)]),  # C strings end at NUL
    (b"get a\r\r\n", [Get([b"a\r"], False)]),  # only one \r is dropped
    (b"  get   a  \r\n", [Get([b"a"], False)]),
    # storage
    (b"set k 5 100 3\r\nabc\r\n", [Store(SET, b"k", 5, 100, b"abc")]),
    (b"set k 0 0 0\r\n\r\n", [Store(SET, b"k", 0, 0, b"")]),
    (b"set k 0 0 4\r\na\r\nb\r\n", [Store(SET, b"k", 0, 0, b"a\r\nb")]),
    (b"add k 0 0 1 noreply\r\nx\r\n", [Store(ADD, b"k", 0, 0, b"x", 0, True)]),
    (b"replace k 0 0 1 garbage\r\nx\r\n", [Store(REP, b"k", 0, 0, b"x")]),
    (b"append k 0 0 1\r\nx\r\n", [Store(APP, b"k", 0, 0, b"x")]),
    (b"prepend k 0 0 1\nx\r\n", [Store(PRE, b"k", 0, 0, b"x")]),
    (b"cas k 0 0 1 99\r\nx\r\n", [Store(CAS, b"k", 0, 0, b"x", 99)]),
    (b"cas k 0 0 1 99 noreply\r\nx\r\n", [Store(CAS, b"k", 0, 0, b"x", 99, True)]),
    (b"cas k 0 0 1\r\nx\r\n", [ERROR, ERROR]),
    (b"set k 0 0\r\n", [ERROR]),
    (b"set k 0 0 1 noreply extra\r\nx\r\n", [ERROR, ERROR]),
    (b"set k +5 -0 +1\r\nx\r\n", [Store(SET, b"k", 5, 0, b"x")]),
    (b"set k 4294967296 0 1\r\nx\r\n", [Store(SET, b"k", 0, 0, b"x")]),
    (b"set k 4294967297 0 1\r\nx\r\n", [Store(SET, b"k", 1, 0, b"x")]),
    (b"set k 18446744073709551615 0 1\r\nx\r\n", [Store(SET, b"k", 0xFFFFFFFF, 0, b"x")]),
    (b"set k 18446744073709551616 0 1\r\nx\r\n", [BAD, ERROR]),
    (b"set k -1 0 1\r\nx\r\n", [BAD, ERROR]),
    (b"set k 1x 0 1\r\nx\r\n", [BAD, ERROR]),
    (b"set k 1.5 0 1\r\nx\r\n", [BAD, ERROR]),
    (b"set k 0 2147483648 1\r\nx\r\n", [Store(SET, b"k", 0, -(1 << 31), b"x")]),
    (b"set k 0 abc 1\r\nx\r\n", [BAD, ERROR]),
    (b"set k 0 0 -1\r\nx\r\n", [BAD, ERROR]),
    (b"set k 0 0 4294967295\r\nx\r\n", [BAD, ERROR]),
    (b"set k 0 0 4294967297\r\nx\r\n", [Store(SET, b"k", 0, 0, b"x")]),  # wraps to 1
    (b"set k 0 0 2147483646\r\nx\r\n", [BAD, ERROR]),
    (b"set k 0 0 1\t\r\nx\r\n", [Store(SET, b"k", 0, 0, b"x")]),
    (b"set k 0 0 1\r\r\nx\r\n", [Store(SET, b"k", 0, 0, b"x")]),
    (b"set k 0 0 -1 noreply\r\nx\r\n", [BAD_QUIET, ERROR]),
    (b"set " + K251 + b" 0 0 1\r\nx\r\n", [BAD, ERROR]),
    (b"set " + K250 + b" 0 0 1\r\nx\r\n", [Store(SET, K250, 0, 0, b"x")]),
    (b"set k\tx 0 0 1\r\nx\r\n", [Store(SET, b"k\tx", 0, 0, b"x")]),
    (b"set k\x00 0 0 1\r\nx\r\n", [ERROR, ERROR]),
    # bad data chunks: exactly n + 2 bytes are taken, parsing resumes after them
    (b"set k 0 0 1\r\nxy\r\n", [CHUNK, ERROR]),
    (b"set k 0 0 1\r\nx\nget k\r\n", [CHUNK, ERROR]),
    (b"set k 0 0 1 noreply\r\nxyz\r\n", [("error", CHUNK[1], True), ERROR]),
    # too large: the data is swallowed, never parsed
    (
        b"set a 0 0 %d\r\n" % (LARGEST + 1) + b"x" * (LARGEST + 1) + b"\r\nget a\r\n",
        [TooLarge(SET, b"a", LARGEST + 3), Get([b"a"], False)],
    ),
    (
        b"set a 1 0 %d noreply\r\n" % (LARGEST - 3) + b"\r\n" * ((LARGEST - 1) // 2) + b"\r",
        [TooLarge(SET, b"a", LARGEST - 1, True)],
    ),  # data that looks like lines: still swallowed
    # delete
    (b"delete k\r\n", [Delete(b"k")]),
    (b"delete k noreply\r\n", [Delete(b"k", True)]),
    (b"delete k 0\r\n", [Delete(b"k")]),
    (b"delete k 0 noreply\r\n", [Delete(b"k", True)]),
    (b"delete k foo\r\n", [DEL_USAGE]),
    (b"delete k noreply 0\r\n", [DEL_USAGE]),
    (b"delete k 0 0\r\n", [DEL_USAGE]),
    (b"delete k 0\r\r\n", [DEL_USAGE]),
    (b"delete k a b c\r\n", [ERROR]),
    (b"delete\r\n", [ERROR]),
    (b"delete " + K251 + b"\r\n", [BAD]),
    # incr / decr
    (b"incr n 5\r\n", [Arithmetic(b"n", 5, True)]),
    (b"decr n 18446744073709551615 noreply\r\n", [Arithmetic(b"n", (1 << 64) - 1, False, True)]),
    (b"incr n 18446744073709551616\r\n", [DELTA]),
    (b"incr n -1\r\n", [DELTA]),
    (b"incr n abc noreply\r\n", [("error", DELTA[1], True)]),
    (b"incr n +3\r\n", [Arithmetic(b"n", 3, True)]),
    (b"incr n -18446744073709551615\r\n", [Arithmetic(b"n", 1, True)]),
    (b"incr n 18446744073709551615\t-\r\n", [DELTA]),  # strchr finds the '-'
    (b"incr n 9223372036854775807\t-\r\n", [Arithmetic(b"n", 2**63 - 1, True)]),
    (b"incr n\r\n", [ERROR]),
    # touch
    (b"touch k 10\r\n", [Touch(b"k", 10)]),
    (b"touch k -1 noreply\r\n", [Touch(b"k", -1, True)]),
    (b"touch k abc\r\n", [EXPTIME]),
    (b"touch k\r\n", [ERROR]),
    # flush_all
    (b"flush_all\r\n", [FlushAll(0)]),
    (b"flush_all 10\r\n", [FlushAll(10)]),
    (b"flush_all -1\r\n", [FlushAll(-1)]),
    (b"flush_all noreply\r\n", [FlushAll(0, True)]),
    (b"flush_all 5 noreply\r\n", [FlushAll(5, True)]),
    (b"flush_all abc\r\n", [FlushAll(None)]),
    (b"flush_all noreply extra\r\n", [FlushAll(None)]),  # the command layer answers
    (b"flush_all 1 2 3\r\n", [ERROR]),
    # the rest
    (b"version\r\n", [Version()]),
    (b"version foo bar\r\n", [Version()]),
    (b"verbosity 1\r\n", [Verbosity(1)]),
    (b"verbosity 1 noreply\r\n", [Verbosity(1, True)]),
    (b"verbosity noreply\r\n", [("error", BAD[1], True)]),
    (b"verbosity abc\r\n", [BAD]),
    (b"verbosity\r\n", [ERROR]),
    (b"verbosity 1 2 3\r\n", [ERROR]),
    (b"stats\r\n", [Stats([])]),
    (b"stats detail on\r\n", [Stats([b"detail", b"on"])]),
    (b"cache_memlimit 100\r\n", [CacheMemlimit(100)]),
    (b"cache_memlimit abc\r\n", [ERROR]),
    (b"cache_memlimit\r\n", [ERROR]),
    (b"quit\r\n", [Quit()]),
    (b"shutdown\r\n", [Admin(b"shutdown", [])]),
    (b"shutdown graceful\r\n", [Admin(b"shutdown", [b"graceful"])]),
    (b"slabs automove 1 noreply\r\n", [Admin(b"slabs", [b"automove", b"1", b"noreply"], True)]),
    (b"slabs reassign 1 2 noreply\r\n", [Admin(b"slabs", [b"reassign", b"1", b"2", b"noreply"])]),
    (b"lru mode flat noreply\r\n", [Admin(b"lru", [b"mode", b"flat", b"noreply"], True)]),
    (b"lru\r\n", [ERROR]),
    (b"watch noreply\r\n", [Admin(b"watch", [b"noreply"], True)]),
    (b"GET a\r\n", [ERROR]),
    (b"\r\n", [ERROR]),
    (b"\n", [ERROR]),
    (b"   \r\n", [ERROR]),
    (b"x\r\n", [ERROR]),
    (b"GET / HTTP/1.1\r\n", [CLOSE]),
    (b"get a\r\nget b\r\nversion\r\n", [Get([b"a"], False), Get([b"b"], False), Version()]),
]


@pytest.mark.parametrize(("data", "expected"), CASES, ids=[repr(c[0][:40]) for c in CASES])
def test_whole(data: bytes, expected: list[object]) -> None:
    assert outcomes(MemcacheConnection(), [data]) == expected


@pytest.mark.parametrize(("data", "expected"), CASES, ids=[repr(c[0][:40]) for c in CASES])
def test_byte_by_byte(data: bytes, expected: list[object]) -> None:
    if len(data) > 100_000:  # the 1 MiB cases: a few big chunks (byte loops take seconds)
        chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    else:
        chunks = [data[i : i + 1] for i in range(len(data))]
    assert outcomes(MemcacheConnection(), chunks) == expected


def test_largest_item_is_accepted() -> None:
    data = b"set a 0 0 %d\r\n" % LARGEST + b"v" * LARGEST + b"\r\n"
    (request,) = outcomes(MemcacheConnection(), [data])
    assert isinstance(request, Store)
    assert len(request.data) == LARGEST


def test_long_line_without_newline_closes() -> None:
    conn = MemcacheConnection()
    assert outcomes(conn, [b"set k 0 0 1 " + b"x" * MAX_LINE]) == [CLOSE]


def test_long_line_arriving_whole_is_parsed() -> None:
    """memcached only closes when 2048 bytes are buffered *without* a newline."""
    assert outcomes(MemcacheConnection(), [b"x" * 3000 + b"\r\n"]) == [ERROR]


def test_long_get_line_is_allowed() -> None:
    keys = [b"key%05d" % i for i in range(500)]
    line = b"get " + b" ".join(keys) + b"\r\n"
    chunks = [line[i : i + 100] for i in range(0, len(line), 100)]
    assert outcomes(MemcacheConnection(), chunks) == [Get(keys, False)]


def test_long_line_after_101_spaces_closes() -> None:
    assert outcomes(MemcacheConnection(), [b" " * 101 + b"get " + b"k" * 3000]) == [CLOSE]


def test_buffer_stays_bounded_while_swallowing() -> None:
    """A too-large value is dropped as it arrives: memory is one read, not the value."""
    conn = MemcacheConnection()
    conn.receive_data(b"set a 0 0 5000000\r\n")
    assert isinstance(conn.next_request(), TooLarge)
    for _ in range(76):
        conn.receive_data(b"x" * 65536)
        assert conn.next_request() is NEED_DATA
        assert conn.buffered <= 65536
    conn.receive_data(b"x" * (5000002 - 76 * 65536) + b"version\r\n")
    assert conn.next_request() == Version()


def test_get_with_long_key_discards_unsent_replies() -> None:
    """memcached drops the replies it still holds when a get has a too-long key."""
    conn = MemcacheConnection()
    conn.receive_data(b"get " + K251 + b"\r\ndelete " + K251 + b"\r\n")
    with pytest.raises(errors.ProtocolError) as get_error:
        conn.next_request()
    with pytest.raises(errors.ProtocolError) as delete_error:
        conn.next_request()
    assert get_error.value.discard_unsent
    assert not delete_error.value.discard_unsent


def test_send_respects_noreply() -> None:
    from petracache.protocol.responses import Status

    conn = MemcacheConnection()
    assert conn.send(Delete(b"k", True), Status.DELETED) == b""
    assert conn.send(Delete(b"k"), Status.DELETED) == b"DELETED\r\n"


def test_a_store_header_completes_into_its_request() -> None:
    """The header, not the connection, decides what its data block completes."""
    header = parse_line(b"cas k 5 60 2 99 noreply", 1 << 20)
    assert header == StoreHeader(StoreMode.CAS, b"k", 5, 60, 2, 99, True)
    assert isinstance(header, StoreHeader)
    assert header.complete(b"ab") == Store(StoreMode.CAS, b"k", 5, 60, b"ab", 99, True)
    lease = parse_line(b"lease-set k 7 5 60 2", 1 << 20)
    assert isinstance(lease, StoreHeader)
    assert lease.complete(b"ab") == LeaseSet(b"k", 7, 5, 60, b"ab")


def test_reads_are_kept_as_they_come_or_copied() -> None:
    """A bytes read becomes the buffer; a bytearray read is copied (the caller may reuse it);
    a read's leftover waits in a buffer of its own that later reads are appended to."""
    conn = MemcacheConnection()
    data = bytearray(b"get a\r\nget")
    conn.receive_data(data)
    assert conn.next_request() == Get([b"a"], False)
    assert conn.next_request() is NEED_DATA
    data[:] = b"XXXXXXXXXX"
    conn.receive_data(b" b")
    conn.receive_data(bytearray(b"\r\nset c 0 0 1\r\n"))
    assert conn.next_request() == Get([b"b"], False)
    assert conn.next_request() is NEED_DATA
    conn.receive_data(b"x\r\n")
    assert conn.next_request() == Store(SET, b"c", 0, 0, b"x")
    assert data == b"XXXXXXXXXX"
    assert conn.buffered == 0
