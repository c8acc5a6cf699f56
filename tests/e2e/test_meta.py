"""The meta protocol end to end: raw sockets against a real petracache process.

Covers what needs a real server and more than one client or a restart: quiet pipelines
closed by ``mn``, stale-while-revalidate between clients, CAS conflicts, counters created on
demand, base64 keys that the classic protocol cannot express, meta state surviving a restart,
and values written by the previous release (format v1) served unchanged.
"""

from __future__ import annotations

import base64
import re

import pytest
import rocksdict

from petracache.storage import codec
from tests.harness import PetracacheProcess, RawClient

pytestmark = pytest.mark.integration


def meta(client: RawClient, data: bytes) -> bytes:
    """Send ``data`` then ``mn``; every reply before ``MN``."""
    client.send(data + b"mn\r\n")
    return client.read_until(b"MN\r\n")[:-4]


def cas_of(reply: bytes) -> int:
    match = re.search(rb" c(\d+)", reply)
    assert match, reply
    return int(match.group(1))


def test_quiet_pipeline_ends_with_mn(shared_server: PetracacheProcess) -> None:
    c = shared_server.client()
    assert meta(c, b"ms qa 1 q\r\nx\r\nms qb 2 q\r\nyy\r\n") == b""  # HD suppressed
    replies = meta(
        c,
        b"mg qa v k q O1\r\n"
        b"mg qzz v k q O2\r\n"  # miss: EN suppressed
        b"mg qb v k q O3\r\n"
        b"md qzz q O4\r\n"  # NF is still sent
        b"md qa q O5\r\n"  # HD suppressed
        b"ms qb 1 q C0\r\nz\r\n"  # EX is still sent
        b"ma qzz q\r\n",  # NF is still sent
    )
    assert replies == (b"VA 1 kqa O1\r\nx\r\nVA 2 kqb O3\r\nyy\r\nNF O4\r\nEX\r\nNF\r\n")
    assert meta(c, b"mg qa v\r\n") == b"EN\r\n"
    assert meta(c, b"mg qa q k\r\nmg qa q k\r\n") == b""
    assert meta(c, b"mg qa q v\r\nmn extra tokens\r\n") == b""  # mn ignores arguments
    assert c.read_line() == b"MN\r\n"
    c.close()


def test_mn_is_a_flush_point(shared_server: PetracacheProcess) -> None:
    """memcached writes the replies queued before an mn even if the connection then dies
    (here: a line over 2048 bytes without a newline); without the mn they are dropped."""
    for fence, expected in ((b"mn\r\n", b"HD\r\nVA 1\r\nx\r\nMN\r\n"), (b"", b"")):
        c = shared_server.client()
        c.send(b"ms fz 1\r\nx\r\nmg fz v\r\n" + fence + b"mg fz v\r\n" + b"x" * 3000)
        assert c.is_closed(wait=5)
        assert c.buf == expected
        c.close()


def test_quiet_errors_are_still_sent(shared_server: PetracacheProcess) -> None:
    c = shared_server.client()
    assert meta(c, b"mg qe q q\r\nms qe 1 q zz\r\nx\r\nma qe q Mx\r\n") == (
        b"CLIENT_ERROR duplicate flag\r\n"
        b"CLIENT_ERROR invalid flag\r\n"
        b"CLIENT_ERROR invalid mode for ma M token\r\n"
    )
    c.close()


def test_stale_while_revalidate_between_clients(shared_server: PetracacheProcess) -> None:
    writer, first, second = (shared_server.client() for _ in range(3))
    assert meta(writer, b"ms swr 5 T300\r\nfresh\r\n") == b"HD\r\n"
    assert meta(writer, b"md swr I T30\r\n") == b"HD\r\n"
    # The first reader gets the stale value and wins the right to recache...
    assert meta(first, b"mg swr v t\r\n") == b"VA 5 t30 X W\r\nfresh\r\n"
    # ...every later reader is told a win was handed out already.
    assert meta(second, b"mg swr v t\r\n") == b"VA 5 t30 Z X\r\nfresh\r\n"
    reply = meta(first, b"mg swr c\r\n")
    assert reply.endswith(b" Z X\r\n")
    # The winner stores with the CAS it saw: the item is fresh again for everyone.
    assert meta(first, b"ms swr 6 C%d\r\nfresh2\r\n" % cas_of(reply)) == b"HD\r\n"
    assert meta(second, b"mg swr v\r\n") == b"VA 6\r\nfresh2\r\n"
    for c in (writer, first, second):
        c.close()


def test_recache_token_goes_to_one_client(shared_server: PetracacheProcess) -> None:
    a, b = shared_server.client(), shared_server.client()
    meta(a, b"ms rc 1 T20\r\nx\r\n")
    assert meta(a, b"mg rc R60 v\r\n") == b"VA 1 W\r\nx\r\n"
    assert meta(b, b"mg rc R60 v\r\n") == b"VA 1 Z\r\nx\r\n"
    a.close()
    b.close()


def test_cas_conflicts(shared_server: PetracacheProcess) -> None:
    a, b = shared_server.client(), shared_server.client()
    cas = cas_of(meta(a, b"ms cc 1 c\r\n1\r\n"))
    assert meta(b, b"ms cc 1 C%d c\r\n2\r\n" % cas) == b"HD c%d\r\n" % (cas + 1)
    assert meta(a, b"ms cc 1 C%d c\r\n3\r\n" % cas) == b"EX c0\r\n"
    assert meta(a, b"md cc C%d\r\n" % cas) == b"EX\r\n"
    assert meta(a, b"ma cc C%d\r\n" % cas) == b"EX\r\n"
    assert meta(a, b"ms nocc 1 C5 c\r\n1\r\n") == b"NF c0\r\n"
    assert meta(a, b"mg cc v\r\n") == b"VA 1\r\n2\r\n"
    # A stale write (I with an older CAS) is accepted and marks the item stale.
    assert meta(a, b"ms cc 1 C%d I\r\n4\r\n" % cas) == b"HD\r\n"
    assert meta(b, b"mg cc v\r\n") == b"VA 1 X W\r\n4\r\n"
    a.close()
    b.close()


def test_ma_auto_create(shared_server: PetracacheProcess) -> None:
    c = shared_server.client()
    assert meta(c, b"ma ctr v\r\n") == b"NF\r\n"
    assert meta(c, b"ma ctr N0 J10 v t\r\n") == b"VA 2 t-1\r\n10\r\n"  # initial, no delta
    assert meta(c, b"ma ctr v\r\n") == b"VA 2\r\n11\r\n"
    assert meta(c, b"ma ctr MD D20 v\r\n") == b"VA 1\r\n0\r\n"
    assert meta(c, b"mg ctr v s\r\n") == b"VA 2 s2\r\n0 \r\n"  # decr pads in place
    assert meta(c, b"ma ctr2 N90 q\r\n") == b"HD\r\n"  # quiet, but creation is reported
    assert meta(c, b"ma ctr2 q\r\nmg ctr2 v t\r\n") == b"VA 1 t90\r\n1\r\n"
    assert meta(c, b"ms txt 3\r\nabc\r\nma txt\r\n") == (
        b"HD\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    )
    c.close()


def test_base64_keys(shared_server: PetracacheProcess) -> None:
    c = shared_server.client()
    key = b"bin key\r\nwith spaces\x00"
    enc = base64.b64encode(key)
    assert meta(c, b"ms %b 3 b\r\nraw\r\n" % enc) == b"HD\r\n"
    assert meta(c, b"mg %b b k v\r\n" % enc) == b"VA 3 k%b b\r\nraw\r\n" % enc
    assert meta(c, b"me %b b\r\n" % enc).startswith(b"ME %b exp=-1 " % enc)
    # A key stored with b is echoed base64-encoded even when looked up in plain text.
    assert meta(c, b"ms Zm9v 2 b\r\nhi\r\n") == b"HD\r\n"
    assert meta(c, b"mg foo k v\r\n") == b"VA 2 kZm9v b\r\nhi\r\n"
    c.send(b"get foo\r\n")
    assert c.read_until(b"END\r\n") == b"VALUE foo 0 2\r\nhi\r\nEND\r\n"
    assert meta(c, b"mg Zm9v= b v\r\n") == b"CLIENT_ERROR error decoding key\r\n"
    assert meta(c, b"md %b b q\r\nmg %b b v\r\n" % (enc, enc)) == b"EN\r\n"
    c.close()


def test_errors_like_memcached(shared_server: PetracacheProcess) -> None:
    c = shared_server.client()
    long_key = b"k" * 251
    assert meta(c, b"mg %b v\r\n" % long_key) == b"CLIENT_ERROR bad command line format\r\n"
    assert meta(c, b"mg e O%b\r\n" % (b"1" * 32)) == b"CLIENT_ERROR opaque token too long\r\n"
    assert meta(c, b"ms e 2 T1 " + b"k " * 17 + b"\r\nhi\r\n") == (
        b"CLIENT_ERROR options flags too long\r\nERROR\r\n"
    )
    assert meta(c, b"ms e 2\r\nhiX\r\n") == b"CLIENT_ERROR bad data chunk\r\nERROR\r\n"
    big = b"x" * 2_000_000
    assert meta(c, b"ms e 2000000 q\r\n%b\r\n" % big) == (
        b"SERVER_ERROR object too large for cache\r\n"
    )
    assert meta(c, b"mx e\r\n") == b"ERROR\r\n"
    c.close()


def test_meta_state_survives_a_restart(server: PetracacheProcess) -> None:
    c = server.client()
    assert meta(c, b"ms pk 2 T0\r\nhi\r\nmd pk I\r\nms Zm9v 1 b\r\nx\r\nmg Zm9v b v\r\n") == (
        b"HD\r\nHD\r\nHD\r\nVA 1\r\nx\r\n"
    )
    c.close()
    server.restart()
    c = server.client()
    assert meta(c, b"mg pk v\r\n") == b"VA 2 X W\r\nhi\r\n"
    assert meta(c, b"mg pk v h\r\n") == b"VA 2 h1 Z X\r\nhi\r\n"
    assert meta(c, b"mg foo k h\r\n") == b"HD kZm9v b h1\r\n"
    c.close()


def test_version_1_values_from_the_previous_release(server: PetracacheProcess) -> None:
    """A value written in format v1 (rocksdict, server stopped) is served unchanged."""
    server.stop()
    path = str(server.db_path)
    options = rocksdict.Options(raw_mode=True)
    families = {
        name: rocksdict.Options(raw_mode=True) for name in rocksdict.Rdict.list_cf(path, options)
    }
    db = rocksdict.Rdict(path, options, column_families=families)
    db.put(b"legacy", codec.HEADER_V1.pack(codec.FORMAT_V1, 42, 0, 1_000_000_000, 7) + b"old data")
    db.put(b"legacy2", codec.HEADER_V1.pack(codec.FORMAT_V1, 0, 0, 1_000_000_000, 8) + b"5")
    db.close()
    del db
    server.start()
    c = server.client()
    c.send(b"gets legacy\r\n")
    assert c.read_until(b"END\r\n") == b"VALUE legacy 42 8 7\r\nold data\r\nEND\r\n"
    assert meta(c, b"mg legacy v f c t h\r\n") == b"VA 8 f42 c7 t-1 h1\r\nold data\r\n"
    assert meta(c, b"ma legacy2 v\r\n") == b"VA 1\r\n6\r\n"
    assert meta(c, b"md legacy\r\nmg legacy v\r\n") == b"HD\r\nEN\r\n"
    c.close()


def test_fetch_record_is_a_hint_that_a_crash_may_forget(server: PetracacheProcess) -> None:
    """A read's fetch record skips the WAL: after kill -9 the item is intact, unfetched."""
    client = server.client()
    assert meta(client, b"ms hint 5 T0 F7\r\nvalue\r\n") == b"HD\r\n"
    assert client.call(b"get hint\r\n") == b"VALUE hint 7 5\r\nvalue\r\nEND\r\n"
    assert meta(client, b"mg hint h\r\n") == b"HD h1\r\n"
    client.close()
    server.kill()
    server.start()
    client = server.client()
    # The WAL-logged store survived; the un-logged fetch record did not (h0).
    assert meta(client, b"mg hint h f v\r\n") == b"VA 5 h0 f7\r\nvalue\r\n"
    assert meta(client, b"mg hint h\r\n") == b"HD h1\r\n"
