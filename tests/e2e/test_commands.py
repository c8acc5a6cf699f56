"""Every classic command and error against a real petracache process, over raw sockets.

Transcripts are ``(request bytes, exact reply bytes)`` pairs (Pelikan's style); each request
is followed by a ``version`` fence so its replies can be read exactly. Every transcript is
also replayed as one pipelined packet and byte by byte, and the connection must keep working
after every recoverable error. Tests on ``shared_server`` use their own keys; anything that
flushes gets a fresh ``server``.
"""

from __future__ import annotations

import re
import socket

import pytest

from petracache.protocol.connection import MAX_LINE
from tests.harness import PetracacheProcess, RawClient

pytestmark = pytest.mark.integration

K251 = b"k" * 251
BAD = b"CLIENT_ERROR bad command line format\r\n"
LARGEST = 1048516

Transcript = list[tuple[bytes, bytes]]
TRANSCRIPTS: dict[str, Transcript] = {
    "get and gets, many keys": [
        (b"set g1 1 0 2\r\nv1\r\n", b"STORED\r\n"),
        (b"set g2 2 0 2\r\nv2\r\n", b"STORED\r\n"),
        (b"get g1\r\n", b"VALUE g1 1 2\r\nv1\r\nEND\r\n"),
        (
            b"get g1 nokey g2 g1\r\n",
            b"VALUE g1 1 2\r\nv1\r\nVALUE g2 2 2\r\nv2\r\nVALUE g1 1 2\r\nv1\r\nEND\r\n",
        ),
        (
            b"get " + b" ".join(b"nokey%d" % i for i in range(100)) + b" g2\r\n",
            b"VALUE g2 2 2\r\nv2\r\nEND\r\n",
        ),
        (b"bget g2\r\n", b"VALUE g2 2 2\r\nv2\r\nEND\r\n"),
        (b"get nokey\r\n", b"END\r\n"),
        (b"get\r\n", b"ERROR\r\n"),
        (b"gets\r\n", b"ERROR\r\n"),
        (b"get g1 " + K251 + b"\r\n", BAD),
    ],
    "gat and gats": [
        (b"set ga 3 0 1\r\nx\r\n", b"STORED\r\n"),
        (b"gat 100 ga nokey\r\n", b"VALUE ga 3 1\r\nx\r\nEND\r\n"),
        (b"gat 100\r\n", b"END\r\n"),
        (b"gat\r\n", b"ERROR\r\n"),
        (b"gat abc ga\r\n", b"CLIENT_ERROR invalid exptime argument\r\n"),
        (b"gat 1x ga\r\n", b"CLIENT_ERROR invalid exptime argument\r\n"),
        (b"gat -1 ga\r\n", b"VALUE ga 3 1\r\nx\r\nEND\r\n"),  # returned one last time
        (b"get ga\r\n", b"END\r\n"),
    ],
    "storage commands": [
        (b"set s1 0 0 5\r\nhello\r\n", b"STORED\r\n"),
        (b"add s1 0 0 1\r\nx\r\n", b"NOT_STORED\r\n"),
        (b"add s2 0 0 1\r\nx\r\n", b"STORED\r\n"),
        (b"replace s1 5 0 3\r\nbye\r\n", b"STORED\r\n"),
        (b"replace nokey 0 0 1\r\nx\r\n", b"NOT_STORED\r\n"),
        (b"append s1 0 0 1\r\n!\r\n", b"STORED\r\n"),
        (b"prepend s1 0 0 1\r\n<\r\n", b"STORED\r\n"),
        (b"append nokey 0 0 1\r\nx\r\n", b"NOT_STORED\r\n"),
        (b"prepend nokey 0 0 1\r\nx\r\n", b"NOT_STORED\r\n"),
        (b"get s1\r\n", b"VALUE s1 5 5\r\n<bye!\r\nEND\r\n"),
        (b"cas nokey 0 0 1 1\r\nx\r\n", b"NOT_FOUND\r\n"),
        (b"cas s1 0 0 1 0\r\nx\r\n", b"EXISTS\r\n"),
        (b"set s3 0 0 0\r\n\r\n", b"STORED\r\n"),
        (b"get s3\r\n", b"VALUE s3 0 0\r\n\r\nEND\r\n"),
        (b"set s4 0 0 4\r\na\r\nb\r\n", b"STORED\r\n"),
        (b"get s4\r\n", b"VALUE s4 0 4\r\na\r\nb\r\nEND\r\n"),
        (b"set s5 0 0 1 whatever\r\nx\r\n", b"STORED\r\n"),
    ],
    "delete": [
        (b"set d1 0 0 1\r\nx\r\n", b"STORED\r\n"),
        (b"delete d1\r\n", b"DELETED\r\n"),
        (b"delete d1\r\n", b"NOT_FOUND\r\n"),
        (b"set d1 0 0 1\r\nx\r\n", b"STORED\r\n"),
        (b"delete d1 0\r\n", b"DELETED\r\n"),
        (b"set d1 0 0 1\r\nx\r\n", b"STORED\r\n"),
        (b"delete d1 0 noreply\r\n", b""),
        (b"get d1\r\n", b"END\r\n"),
        (b"delete d1 noreply\r\n", b""),
        (
            b"delete d1 foo\r\n",
            b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
        ),
        (
            b"delete d1 noreply 0\r\n",
            b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
        ),
        (
            b"delete d1 0 0\r\n",
            b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
        ),
        (b"delete d1 a b c\r\n", b"ERROR\r\n"),
        (b"delete\r\n", b"ERROR\r\n"),
        (b"delete " + K251 + b"\r\n", BAD),
    ],
    "incr and decr": [
        (b"set n1 7 1000 2\r\n10\r\n", b"STORED\r\n"),
        (b"incr n1 5\r\n", b"15\r\n"),
        (b"decr n1 6\r\n", b"9\r\n"),
        (b"get n1\r\n", b"VALUE n1 7 2\r\n9 \r\nEND\r\n"),  # padded in place
        (b"incr n1 91\r\n", b"100\r\n"),
        (b"get n1\r\n", b"VALUE n1 7 3\r\n100\r\nEND\r\n"),
        (b"decr n1 1000\r\n", b"0\r\n"),  # stops at 0
        (b"set n2 0 0 20\r\n18446744073709551615\r\n", b"STORED\r\n"),
        (b"incr n2 2\r\n", b"1\r\n"),  # wraps at 2**64
        (b"set n3 0 0 3\r\nabc\r\n", b"STORED\r\n"),
        (b"incr n3 1\r\n", b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"),
        (b"incr nokey 1\r\n", b"NOT_FOUND\r\n"),
        (b"decr nokey 1\r\n", b"NOT_FOUND\r\n"),
        (b"incr n1 abc\r\n", b"CLIENT_ERROR invalid numeric delta argument\r\n"),
        (b"incr n1 -1\r\n", b"CLIENT_ERROR invalid numeric delta argument\r\n"),
        (b"incr n1 18446744073709551616\r\n", b"CLIENT_ERROR invalid numeric delta argument\r\n"),
        (b"incr n1\r\n", b"ERROR\r\n"),
        (b"incr n1 1 noreply\r\n", b""),
        (b"get n1\r\n", b"VALUE n1 7 3\r\n1  \r\nEND\r\n"),
    ],
    "touch": [
        (b"set t1 0 0 1\r\nx\r\n", b"STORED\r\n"),
        (b"touch t1 100\r\n", b"TOUCHED\r\n"),
        (b"touch nokey 100\r\n", b"NOT_FOUND\r\n"),
        (b"touch t1 abc\r\n", b"CLIENT_ERROR invalid exptime argument\r\n"),
        (b"touch t1\r\n", b"ERROR\r\n"),
        (b"touch t1 100 noreply\r\n", b""),
        (b"touch t1 -1\r\n", b"TOUCHED\r\n"),
        (b"get t1\r\n", b"END\r\n"),
    ],
    "version, verbosity, cache_memlimit, shutdown": [
        (b"verbosity 1\r\n", b"OK\r\n"),
        (b"verbosity 1 noreply\r\n", b""),
        (b"verbosity\r\n", b"ERROR\r\n"),
        (b"verbosity abc\r\n", BAD),
        (b"verbosity 0\r\n", b"OK\r\n"),
        (b"cache_memlimit 100\r\n", b"OK\r\n"),  # no disk bound configured: no effect
        (b"cache_memlimit 1\r\n", b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"),
        (b"cache_memlimit abc\r\n", b"ERROR\r\n"),
        (b"shutdown\r\n", b"ERROR: shutdown not enabled\r\n"),
        (b"stats detail on\r\n", b"OK\r\n"),
        (b"stats detail off\r\n", b"OK\r\n"),
        (b"stats detail\r\n", b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"),
        (b"stats nonsense\r\n", b"ERROR\r\n"),
    ],
    "noreply everywhere": [
        (b"set nr 0 0 1 noreply\r\n1\r\n", b""),
        (b"add nr 0 0 1 noreply\r\n2\r\n", b""),
        (b"replace nr 0 0 1 noreply\r\n3\r\n", b""),
        (b"append nr 0 0 1 noreply\r\n4\r\n", b""),
        (b"prepend nr 0 0 1 noreply\r\n5\r\n", b""),
        (b"cas nr 0 0 1 1 noreply\r\n6\r\n", b""),
        (b"incr nr 1 noreply\r\n", b""),
        (b"decr nr 1 noreply\r\n", b""),
        (b"touch nr 100 noreply\r\n", b""),
        (b"get nr\r\n", b"VALUE nr 0 3\r\n534\r\nEND\r\n"),
        (b"delete nr noreply\r\n", b""),
        (b"verbosity 0 noreply\r\n", b""),
        (b"set nr 0 0 -1 noreply\r\n", b""),  # errors are silenced too
        (b"incr nr abc noreply\r\n", b""),
        (b"set nr 0 0 1 noreply\r\nxyz\r\n", b"ERROR\r\n"),  # bad chunk silent; the "" line not
        (b"get nr\r\n", b"END\r\n"),
    ],
    "malformed lines": [
        (b"foo\r\n", b"ERROR\r\n"),
        (b"GET a\r\n", b"ERROR\r\n"),
        (b"\r\n", b"ERROR\r\n"),
        (b"set m 0 0\r\n", b"ERROR\r\n"),
        (b"set m 0 0 1 noreply extra\r\n", b"ERROR\r\n"),
        (b"set m abc 0 1\r\nx\r\n", BAD + b"ERROR\r\n"),  # the data line runs as a command
        (b"set m 0 abc 1\r\nx\r\n", BAD + b"ERROR\r\n"),
        (b"set m 0 0 abc\r\nx\r\n", BAD + b"ERROR\r\n"),
        (b"set m 0 0 -1\r\nx\r\n", BAD + b"ERROR\r\n"),
        (b"set m 0 0 4294967295\r\nx\r\n", BAD + b"ERROR\r\n"),
        (b"set m 0 0 1.5\r\nx\r\n", BAD + b"ERROR\r\n"),
        (b"set " + K251 + b" 0 0 1\r\nx\r\n", BAD + b"ERROR\r\n"),
        (b"set m 0 0 1\r\nxy\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\n"),
        (b"set m 0 0 1\r\nx\nget m\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\n"),
        (b"incr " + K251 + b" 1\r\n", BAD),
        (b"touch " + K251 + b" 1\r\n", BAD),
    ],
}


def _exchange(client: RawClient, request: bytes) -> bytes:
    return client.call(request)


@pytest.mark.parametrize("name", list(TRANSCRIPTS))
def test_transcript(shared_server: PetracacheProcess, name: str) -> None:
    client = shared_server.client()
    try:
        for request, reply in TRANSCRIPTS[name]:
            assert _exchange(client, request) == reply, request
    finally:
        client.close()


@pytest.mark.parametrize("name", ["get and gets, many keys", "storage commands", "incr and decr"])
@pytest.mark.parametrize("mode", ["pipelined", "byte by byte"])
def test_transcript_pipelined_and_split(server: PetracacheProcess, name: str, mode: str) -> None:
    """The whole transcript in one packet, or one byte per packet: the same replies."""
    # A get with a too-long key drops the replies still held (memcached does), so it only
    # appears in the one-request-at-a-time transcripts.
    transcript = [(r, e) for r, e in TRANSCRIPTS[name] if not (r.startswith(b"get") and K251 in r)]
    payload = b"".join(request for request, _ in transcript) + b"version\r\n"
    expected = b"".join(reply for _, reply in transcript)
    client = server.client()
    try:
        if mode == "pipelined":
            client.send(payload)
        else:
            for i in range(len(payload)):
                client.send(payload[i : i + 1])
        got = client.read_until(b"VERSION ")
        assert got[: -len(b"VERSION ")] == expected
    finally:
        client.close()


def test_gets_and_cas(shared_server: PetracacheProcess) -> None:
    client = shared_server.client()
    assert client.call(b"set c1 0 0 1\r\na\r\n") == b"STORED\r\n"
    reply = client.call(b"gets c1\r\n")
    match = re.fullmatch(rb"VALUE c1 0 1 (\d+)\r\na\r\nEND\r\n", reply)
    assert match, reply
    cas = int(match.group(1))
    assert client.call(b"cas c1 0 0 1 %d\r\nb\r\n" % cas) == b"STORED\r\n"
    assert client.call(b"cas c1 0 0 1 %d\r\nc\r\n" % cas) == b"EXISTS\r\n"
    reply = client.call(b"gets c1 c1\r\n")
    new = int(reply.split(b"\r\n")[0].split(b" ")[-1])
    assert new > cas
    assert reply == b"VALUE c1 0 1 %d\r\nb\r\nVALUE c1 0 1 %d\r\nb\r\nEND\r\n" % (new, new)
    assert client.call(b"gats 100 c1\r\n") == b"VALUE c1 0 1 %d\r\nb\r\nEND\r\n" % new
    assert client.call(b"cas c1 0 0 1 %d noreply\r\nd\r\nget c1\r\n" % new) == (
        b"VALUE c1 0 1\r\nd\r\nEND\r\n"
    )
    client.close()


def test_too_large_is_refused_and_its_data_swallowed(shared_server: PetracacheProcess) -> None:
    client = shared_server.client()
    assert client.call(b"set big 0 0 1\r\nx\r\n") == b"STORED\r\n"
    payload = b"get big\r\n" * 2000  # data that would be commands if it were parsed
    n = LARGEST + 1
    data = (payload * (n // len(payload) + 1))[:n]
    reply = client.call(b"set big 0 0 %d\r\n%s\r\n" % (n, data))
    assert reply == b"SERVER_ERROR object too large for cache\r\n"
    assert client.call(b"get big\r\n") == b"END\r\n"  # memcached drops the old value too
    top = LARGEST - 2  # the largest value for a 3-byte key
    assert client.call(b"set big 0 0 %d\r\n%s\r\n" % (top, b"v" * top)) == b"STORED\r\n"
    reply = client.call(b"set big 0 0 %d noreply\r\n%s\r\n" % (5_000_000, b"x" * 5_000_000))
    assert reply == b""
    client.close()


def test_stats_basic_fields(shared_server: PetracacheProcess) -> None:
    client = shared_server.client()
    client.send(b"stats\r\n")
    text = client.read_until(b"END\r\n")
    stats = dict(re.findall(rb"STAT (\S+) ([^\r]*)\r\n", text))
    for field in (b"pid", b"uptime", b"time", b"version", b"curr_connections", b"cmd_get",
                  b"cmd_set", b"get_hits", b"get_misses", b"total_items"):  # fmt: skip
        assert field in stats, field
    assert stats[b"version"].startswith(b"1.6.18")
    assert client.call(b"stats reset\r\n") == b"RESET\r\n"
    client.close()


def test_version(shared_server: PetracacheProcess) -> None:
    client = shared_server.client()
    client.send(b"version\r\nversion extra args\r\n")
    assert client.read_line() == b"VERSION 1.6.18-petracache-0.1.0\r\n"
    assert client.read_line().startswith(b"VERSION 1.6.18")
    client.close()


def test_flush_all_forms(server: PetracacheProcess) -> None:
    client = server.client()
    assert client.call(b"set f 0 0 1\r\n1\r\nflush_all\r\nget f\r\n") == (
        b"STORED\r\nOK\r\nEND\r\n"
    )
    assert client.call(b"set f 0 0 1\r\n1\r\nflush_all 0 noreply\r\nget f\r\n") == (
        b"STORED\r\nEND\r\n"
    )
    assert client.call(b"set f 0 0 1\r\n1\r\nflush_all noreply\r\nget f\r\n") == (
        b"STORED\r\nEND\r\n"
    )
    assert client.call(b"set f 0 0 1\r\n1\r\nflush_all 1000\r\nget f\r\n") == (
        b"STORED\r\nOK\r\nVALUE f 0 1\r\n1\r\nEND\r\n"  # delayed: nothing yet
    )
    assert client.call(b"flush_all 1000 noreply\r\nflush_all abc\r\nflush_all 1 2 3\r\n") == (
        b"CLIENT_ERROR invalid exptime argument\r\nERROR\r\n"
    )
    assert client.call(b"flush_all -1\r\nget f\r\nset f 0 0 1\r\n2\r\nget f\r\n") == (
        b"OK\r\nEND\r\nSTORED\r\nVALUE f 0 1\r\n2\r\nEND\r\n"
    )
    client.close()


def test_quit_flushes_replies_then_closes(shared_server: PetracacheProcess) -> None:
    client = shared_server.client()
    client.send(b"set q 0 0 1\r\n1\r\nget q\r\nquit\r\nget q\r\n")
    assert client.read_until(b"END\r\n") == b"STORED\r\nVALUE q 0 1\r\n1\r\nEND\r\n"
    assert client.is_closed()
    assert client.buf == b""


@pytest.mark.parametrize(
    "payload",
    [
        b"x" * (MAX_LINE + 1),
        b"set k 0 0 1 " + b"x" * 5000,
        b" " * 101 + b"get " + b"k" * 3000,
        b"GET / HTTP/1.1\r\n",
    ],
    ids=["long line", "long set line", "spaces then get", "http"],
)
def test_connection_closes(shared_server: PetracacheProcess, payload: bytes) -> None:
    client = shared_server.client()
    client.send(payload)
    assert client.is_closed(wait=5)
    assert client.buf == b""


def test_long_line_memory_is_bounded(shared_server: PetracacheProcess) -> None:
    """Megabytes of a line without a newline: the server closes, it does not buffer them."""
    sock = socket.create_connection(("127.0.0.1", shared_server.port), timeout=5)
    sent = 0
    try:
        while sent < 64 * 1024 * 1024:
            sock.sendall(b"y" * 65536)
            sent += 65536
        pytest.fail("the server kept reading a 64 MiB line")
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.close()
    assert shared_server.client().call(b"get y\r\n") == b"END\r\n"


def test_long_multiget_line_is_served(shared_server: PetracacheProcess) -> None:
    client = shared_server.client()
    assert client.call(b"set mg1 0 0 1\r\n1\r\n") == b"STORED\r\n"
    keys = b" ".join(b"missing%06d" % i for i in range(20_000)) + b" mg1"
    assert client.call(b"get " + keys + b"\r\n") == b"VALUE mg1 0 1\r\n1\r\nEND\r\n"
    client.close()


def test_connection_survives_every_recoverable_error(shared_server: PetracacheProcess) -> None:
    client = shared_server.client()
    errors = [request for transcript in TRANSCRIPTS.values() for request, _ in transcript]
    for request in errors:
        client.call(request)
        assert client.call(b"set alive 0 0 2\r\nok\r\nget alive\r\n") == (
            b"STORED\r\nVALUE alive 0 2\r\nok\r\nEND\r\n"
        )
    client.close()


def test_many_commands_in_one_packet(shared_server: PetracacheProcess) -> None:
    client = shared_server.client()
    payload = b"".join(b"set p%d 0 0 %d\r\n%d\r\n" % (i, len(b"%d" % i), i) for i in range(500))
    payload += b"get " + b" ".join(b"p%d" % i for i in range(500)) + b"\r\n"
    expected = b"STORED\r\n" * 500
    expected += b"".join(b"VALUE p%d 0 %d\r\n%d\r\n" % (i, len(b"%d" % i), i) for i in range(500))
    assert client.call(payload) == expected + b"END\r\n"
    client.close()
