"""petracache as an mcrouter backend: every request shape mcrouter writes, checked against
the reply grammar mcrouter parses (/work/shared/docs/mcrouter-backend-contract.md, read from
mcrouter's AsciiSerialized.cpp and McAsciiParser.rl).

mcrouter is not packaged for Debian, so these tests play mcrouter: they send its exact bytes
over one pipelined connection and read the replies with a strict per-command grammar. Any
plain ``ERROR``, malformed or extra reply, unsolicited byte or closed connection would make
mcrouter mark the backend down (TKO), and fails the test here. Where memcached 1.6 answers
a shape the same way, the reply is also compared with the reference server byte for byte.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.harness import MemcachedProcess, PetracacheProcess, RawClient

pytestmark = pytest.mark.integration

U64_MAX = (1 << 64) - 1
ERROR_LINE = re.compile(rb"(SERVER_ERROR|CLIENT_ERROR) [^\r\n]*\r\n")


@dataclass
class Reply:
    """One parsed reply: ``kind`` is the first word, ``fields`` the rest of its first line."""

    kind: bytes
    fields: list[bytes]
    data: bytes | None = None
    raw: bytes = b""


def _line(client: RawClient) -> bytes:
    line = client.read_line()
    assert line.count(b"\r\n") == 1, line
    return line


def _error_or(line: bytes, allowed: tuple[bytes, ...]) -> Reply:
    """A one-line reply from ``allowed``, or a SERVER_ERROR/CLIENT_ERROR (never ERROR)."""
    word, *rest = line[:-2].split(b" ")
    if word in allowed:
        return Reply(word, rest, raw=line)
    assert ERROR_LINE.fullmatch(line), f"reply mcrouter would TKO on: {line!r}"
    return Reply(word, rest, raw=line)


def _value_block(client: RawClient, line: bytes, nfields: int) -> Reply:
    """``VALUE``/``LVALUE`` line with exactly ``nfields`` numbers, its data, then ``END``."""
    word, key, *numbers = line[:-2].split(b" ")
    assert len(numbers) == nfields, line
    assert all(n.isdigit() for n in numbers), line
    nbytes = int(numbers[2 if word == b"LVALUE" else 1])
    data = client.read_exact(nbytes + 2)
    assert data.endswith(b"\r\n"), data
    end = _line(client)
    assert end == b"END\r\n", end
    return Reply(word, [key, *numbers], data[:-2], raw=line + data + end)


def read_get(client: RawClient, with_cas: bool = False) -> Reply:
    """get/gat (no cas field) or gets/gats (cas field required): one VALUE at most."""
    line = _line(client)
    if line.startswith(b"VALUE "):
        return _value_block(client, line, 3 if with_cas else 2)
    return _error_or(line, (b"END",))


def read_lease_get(client: RawClient) -> Reply:
    """``VALUE k f n`` + END, or ``LVALUE k token f n`` + END; a bare END is invalid."""
    line = _line(client)
    if line.startswith(b"VALUE "):
        return _value_block(client, line, 2)
    if line.startswith(b"LVALUE "):
        return _value_block(client, line, 3)
    return _error_or(line, ())


def read_metaget(client: RawClient) -> Reply:
    line = _line(client)
    if line.startswith(b"META "):
        match = re.fullmatch(
            rb"META (\S+) age: (-?\d+|unknown); exptime: (\d+); from: ([0-9a-fA-F.:]+|unknown)\r\n",
            line,
        )
        assert match, line
        assert _line(client) == b"END\r\n"
        return Reply(b"META", list(match.groups()), raw=line)
    return _error_or(line, (b"END",))


def read_storage(client: RawClient) -> Reply:
    allowed = (b"STORED", b"STALE_STORED", b"NOT_STORED", b"EXISTS", b"NOT_FOUND", b"DELETED")
    return _error_or(_line(client), allowed)


def read_arith(client: RawClient) -> Reply:
    line = _line(client)
    if re.fullmatch(rb"\d+ *\r\n", line):
        return Reply(b"NUMBER", [line[:-2].strip()], raw=line)
    return _error_or(line, (b"NOT_FOUND",))


def read_delete(client: RawClient) -> Reply:
    return _error_or(_line(client), (b"DELETED", b"NOT_FOUND"))


def read_touch(client: RawClient) -> Reply:
    return _error_or(_line(client), (b"TOUCHED", b"NOT_FOUND"))


def read_version(client: RawClient) -> Reply:
    line = _line(client)
    if line.startswith(b"VERSION "):  # mcrouter requires the space
        return Reply(b"VERSION", [line[8:-2]], raw=line)
    return _error_or(line, ())


def read_flush(client: RawClient) -> Reply:
    return _error_or(_line(client), (b"OK",))


Reader = Callable[[RawClient], Reply]


def storage_cmd(cmd: str, key: str, flags: int, exptime: int, data: bytes) -> bytes:
    """mcrouter's storage line: flags printed ``%lu``, exptime ``%d``."""
    return b"%s %s %d %d %d\r\n%s\r\n" % (
        cmd.encode(),
        key.encode(),
        flags,
        exptime,
        len(data),
        data,
    )


# Every request shape of the contract, in one pipelined script: (bytes, reply grammar).
SCRIPT: list[tuple[bytes, Reader]] = [
    (b"get mc:a\r\n", read_get),
    (storage_cmd("set", "mc:a", U64_MAX, 0, b"hello"), read_storage),
    (storage_cmd("set", "mc:b", 1 << 40, -1, b"gone"), read_storage),
    (storage_cmd("add", "mc:a", 5, 0, b"x"), read_storage),
    (storage_cmd("add", "mc:c", 0, 3600, b"10"), read_storage),
    (storage_cmd("replace", "mc:a", 7, 0, b"hi"), read_storage),
    (storage_cmd("replace", "mc:none", 7, 0, b"hi"), read_storage),
    (storage_cmd("append", "mc:a", 0, 0, b"!"), read_storage),
    (storage_cmd("prepend", "mc:a", 0, 0, b"<"), read_storage),
    (storage_cmd("append", "mc:none", 0, 0, b"!"), read_storage),
    (b"get mc:a\r\n", read_get),
    (b"get mc:b\r\n", read_get),
    (b"gets mc:a\r\n", lambda c: read_get(c, with_cas=True)),
    (b"gets mc:none\r\n", lambda c: read_get(c, with_cas=True)),
    (b"cas mc:a 0 0 1 1\r\nZ\r\n", read_storage),
    (b"cas mc:none 0 0 1 1\r\nZ\r\n", read_storage),
    (b"gat 3600 mc:a\r\n", read_get),
    (b"gats 3600 mc:a\r\n", lambda c: read_get(c, with_cas=True)),
    (b"gat -1 mc:c\r\n", read_get),
    (b"get mc:c\r\n", read_get),
    (storage_cmd("set", "mc:n", 0, 0, b"5"), read_storage),
    (b"incr mc:n %d\r\n" % U64_MAX, read_arith),
    (b"decr mc:n %d\r\n" % U64_MAX, read_arith),
    (b"incr mc:none 1\r\n", read_arith),
    (b"incr mc:a 1\r\n", read_arith),
    (b"touch mc:n 4294967295\r\n", read_touch),
    (b"get mc:n\r\n", read_get),
    (b"touch mc:none 100\r\n", read_touch),
    (b"delete mc:a\r\n", read_delete),
    (storage_cmd("set", "mc:d", 0, 0, b"d"), read_storage),
    (b"delete mc:d 5\r\n", read_delete),
    (b"get mc:d\r\n", read_get),
    (b"delete mc:d -1\r\n", read_delete),
    (b"lease-get mc:l\r\n", read_lease_get),
    (b"lease-get mc:l\r\n", read_lease_get),
    (b"lease-set mc:l 12345 0 0 1\r\nL\r\n", read_storage),
    (b"metaget mc:l\r\n", read_metaget),
    (storage_cmd("set", "mc:m", 3, 3600, b"meta"), read_storage),
    (b"metaget mc:m\r\n", read_metaget),
    (b"lease-get mc:m\r\n", read_lease_get),
    (b"version\r\n", read_version),
    (b"flush_all 0\r\n", read_flush),
    (b"flush_all 2\r\n", read_flush),
    (b"flush_all\r\n", read_flush),
    (b"get mc:m\r\n", read_get),
]


def run_script(client: RawClient, script: list[tuple[bytes, Reader]]) -> list[Reply]:
    """Send the whole script pipelined, then read exactly one reply per request, in order."""
    client.send(b"".join(request for request, _ in script))
    replies = [reader(client) for _, reader in script]
    assert client.buf == b"", f"unsolicited bytes: {client.buf!r}"
    assert not client.is_closed(wait=0.3), "the server closed the connection"
    assert client.buf == b"", f"unsolicited bytes: {client.buf!r}"
    return replies


def test_every_mcrouter_shape_gets_one_wellformed_reply(server: PetracacheProcess) -> None:
    client = server.client()
    assert not client.is_closed(wait=0.2)
    assert client.buf == b"", "the server spoke first"
    replies = run_script(client, SCRIPT)
    by_request = {request: reply for (request, _), reply in zip(SCRIPT, replies, strict=True)}
    kinds = [reply.kind for reply in replies]
    assert b"ERROR" not in kinds
    # 64-bit flags as mcrouter prints them: stored, truncated to 32 bits like memcached.
    assert replies[1].kind == b"STORED"
    assert replies[10].kind == b"VALUE"
    assert replies[10].fields[1] == b"7"  # replace set 7; append/prepend keep it
    assert replies[10].data == b"<hi!"
    assert replies[11].kind == b"END"  # set with exptime -1: already expired
    assert by_request[b"gat -1 mc:c\r\n"].kind == b"VALUE"
    assert by_request[b"get mc:c\r\n"].kind == b"END"
    assert by_request[b"touch mc:n 4294967295\r\n"].kind == b"TOUCHED"
    assert by_request[b"get mc:n\r\n"].kind == b"END"  # -1 printed unsigned: expired
    assert by_request[b"delete mc:d 5\r\n"].kind == b"DELETED"
    assert by_request[b"get mc:d\r\n"].kind == b"END"
    # a negative hold time keeps memcached's usage error (a CLIENT_ERROR: no TKO)
    assert by_request[b"delete mc:d -1\r\n"].kind == b"CLIENT_ERROR"
    assert by_request[b"lease-set mc:l 12345 0 0 1\r\nL\r\n"].kind == b"NOT_STORED"
    assert by_request[b"metaget mc:l\r\n"].kind == b"END"
    meta = by_request[b"metaget mc:m\r\n"]
    assert meta.kind == b"META"
    assert meta.fields[0] == b"mc:m"
    assert int(meta.fields[2]) > time.time()  # absolute expiry, ~1 h ahead
    assert by_request[b"lease-get mc:m\r\n"].kind == b"VALUE"
    assert replies[-1].kind == b"END"  # flushed
    # still serving on the same connection
    assert run_script(client, [(b"version\r\n", read_version)])[0].kind == b"VERSION"


# Shapes where memcached 1.6 and petracache must agree byte for byte (everything except
# delete with a non-zero time, mcrouter's own commands, which memcached answers ERROR, and
# the version text).
SAME_AS_MEMCACHED = [
    (request, reader)
    for request, reader in SCRIPT
    if not request.startswith((b"lease-", b"metaget", b"delete mc:d ", b"get mc:d", b"version"))
]


def test_shapes_memcached_handles_match_memcached(
    server: PetracacheProcess, memcached: MemcachedProcess
) -> None:
    script = [(b"flush_all\r\n", read_flush), *SAME_AS_MEMCACHED]
    ours = [reply.raw for reply in run_script(server.client(), script)]
    theirs = [reply.raw for reply in run_script(memcached.client(), script)]
    # the cas unique differs between servers; compare the gets lines without it
    scrub = re.compile(rb"^(VALUE \S+ \d+ \d+) \d+\r\n", re.M)
    assert [scrub.sub(rb"\1 CAS\r\n", r) for r in ours] == [
        scrub.sub(rb"\1 CAS\r\n", r) for r in theirs
    ]


def test_delete_forms(server: PetracacheProcess, memcached: MemcachedProcess) -> None:
    """``delete k <n>`` (mcrouter) deletes; memcached's own forms stay byte-identical."""
    exact = [
        storage_cmd("set", "dk", 0, 0, b"v"),
        b"delete dk 0\r\n",
        b"delete dk 0\r\n",
        b"delete dk foo\r\n",
        b"delete dk noreply 0\r\n",
        b"delete dk 0 0\r\n",
        b"delete dk 0 noreply\r\n",
        b"delete dk a b c\r\n",
    ]
    ours = server.client().call(b"".join(exact))
    assert ours == memcached.client().call(b"".join(exact))
    client = server.client()
    out = client.call(storage_cmd("set", "dk", 0, 0, b"v") + b"delete dk 30\r\nget dk\r\n")
    assert out == b"STORED\r\nDELETED\r\nEND\r\n"
    out = client.call(storage_cmd("set", "dk", 0, 0, b"v") + b"delete dk 9 noreply\r\nget dk\r\n")
    assert out == b"STORED\r\nEND\r\n"


def lease_get(client: RawClient, key: bytes) -> Reply:
    client.send(b"lease-get %b\r\n" % key)
    return read_lease_get(client)


def lease_set(client: RawClient, key: bytes, token: int, data: bytes, flags: int = 0) -> bytes:
    client.send(b"lease-set %b %d %d 0 %d\r\n%b\r\n" % (key, token, flags, len(data), data))
    return read_storage(client).kind


def test_lease_cycle(server: PetracacheProcess) -> None:
    filler, other = server.client(), server.client()
    miss = lease_get(filler, b"lk")
    assert miss.kind == b"LVALUE"
    key, token, flags, nbytes = miss.fields
    assert (key, flags, nbytes, miss.data) == (b"lk", b"0", b"0", b"")
    token_value = int(token)
    assert token_value >= 2
    hot = lease_get(other, b"lk")  # someone else is filling: hot miss, token 1
    assert (hot.kind, hot.fields[1]) == (b"LVALUE", b"1")
    assert lease_set(other, b"lk", token_value + 1, b"wrong") == b"NOT_STORED"
    assert lease_set(filler, b"lk", token_value, b"filled", flags=9) == b"STORED"
    hit = lease_get(other, b"lk")
    assert (hit.kind, hit.fields, hit.data) == (b"VALUE", [b"lk", b"9", b"6"], b"filled")
    assert lease_set(filler, b"lk", token_value, b"again") == b"NOT_STORED"  # consumed


def test_delete_invalidates_a_lease(server: PetracacheProcess) -> None:
    client = server.client()
    token = int(lease_get(client, b"lz").fields[1])
    assert client.call(b"delete lz\r\n") == b"NOT_FOUND\r\n"
    assert lease_set(client, b"lz", token, b"stale") == b"NOT_STORED"
    assert client.call(b"get lz\r\n") == b"END\r\n"
    # a plain set that lands after the lease-get is newer and wins over the lease-set
    token = int(lease_get(client, b"lz").fields[1])
    assert client.call(storage_cmd("set", "lz", 0, 0, b"fresh")) == b"STORED\r\n"
    assert lease_set(client, b"lz", token, b"stale") == b"NOT_STORED"
    assert client.call(b"get lz\r\n") == b"VALUE lz 0 5\r\nfresh\r\nEND\r\n"


def test_version_probe_answers_during_heavy_writes(server: PetracacheProcess) -> None:
    """mcrouter's health probe shares the data path: it must be answered, well-formed and in
    order, while other connections write as fast as they can."""
    stop = threading.Event()
    errors: list[BaseException] = []
    value = b"w" * 65536

    def writer(n: int) -> None:
        try:
            client = server.client(timeout=30)
            batch = b"".join(storage_cmd("set", f"load:{n}:{i}", 0, 0, value) for i in range(32))
            while not stop.is_set():
                client.send(batch)
                for _ in range(32):
                    assert client.read_line() == b"STORED\r\n"
            client.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        probe = server.client(timeout=30)
        for _ in range(20):
            probe.send(b"version\r\n")
            assert read_version(probe).kind == b"VERSION"
            time.sleep(0.02)
        assert probe.buf == b""
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not errors, errors
