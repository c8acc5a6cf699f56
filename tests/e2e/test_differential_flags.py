"""Differential tests for memcached's flags: memcached 1.6.18 and petracache started with the
same flag, the same bytes to both, replies compared.

* ``-C`` (no CAS): classic, meta and binary commands that show or compare CAS uniques, and
  seeded random classic traffic (its ``cas`` commands use the uniques ``gets`` showed: 0).
* ``-B ascii``: binary frames read as text lines; ``-B binary``: text closes the connection.
* ``-R 2``: where replies are dropped when a connection closes (the flush points move) and
  ``conn_yields`` after the same pipelines.
* ``-S``: SASL PLAIN and a text client, against memcached -S over a Cyrus sasldb holding the
  same user as petracache's ``MEMCACHED_SASL_PWDB`` file (skipped without ``saslpasswd2``);
  ``-Y`` with ``-B ascii``: a binary client meets the text authentication.
* ``stats settings`` shows each flag as memcached does.
"""

from __future__ import annotations

import contextlib
import random
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.binframes import (
    ADD,
    APPEND,
    DELETE,
    GETK,
    INCR,
    NOOP,
    SASL_AUTH,
    SASL_LIST,
    SET,
    STAT,
    VERSION,
    BinClient,
    Frame,
    delta,
    req,
    store,
)
from tests.e2e.difftraffic import Batch, Generator, Peer
from tests.e2e.sasl import sasl_conf
from tests.harness import (
    Address,
    MemcachedProcess,
    PetracacheProcess,
    RawClient,
    connect,
    outcome,
)

pytestmark = pytest.mark.integration

CLOSED = Frame(-1, -1, b"", b"", b"<closed>", 0, 0)


class Pair:
    """memcached and petracache started with the same flags."""

    def __init__(self, workdir: Path, flags: list[str], env: dict[str, str] | None = None):
        self.memcached = MemcachedProcess(flags)
        self.server = PetracacheProcess(workdir, flags, env=env).start()

    @property
    def addresses(self) -> list[Address]:
        return [self.memcached.address, self.server.address]

    def stop(self) -> None:
        self.server.stop()
        self.memcached.stop()


def text_replies(pair: Pair, commands: list[bytes]) -> list[bytes]:
    """Each command on one connection per server, then all of them pipelined on another;
    the normalised replies (CAS ordinals, version X) of both servers."""
    out: list[bytes] = []
    for address in pair.addresses:
        peer = Peer(address, str(address))
        single = [peer.exchange(Batch([[c]]), random.Random(0)) for c in commands]
        piped = Peer(address, str(address)).exchange(
            Batch([[c] for c in commands]), random.Random(0)
        )
        out.append(b"|".join([*single, piped]))
    return out


def binary_replies(pair: Pair, frames: bytes) -> list[list[Frame]]:
    out: list[list[Frame]] = []
    for address in pair.addresses:
        client = BinClient(address)
        got = client.normalised(client.exchange(frames))
        out.append(got + ([CLOSED] if client.closed else []))
        client.close()
    return out


def settings_of(address: Address, names: tuple[str, ...]) -> dict[str, str]:
    client = RawClient(address)
    raw = client.call(b"stats settings\r\n").decode()
    client.close()
    rows = dict(line.split(" ", 2)[1:] for line in raw.splitlines() if line.startswith("STAT "))
    return {name: rows.get(name, "<missing>") for name in names}


# -- -C --------------------------------------------------------------------------------------

NO_CAS_TEXT = [
    b"set a 0 0 1\r\n1\r\n",
    b"gets a\r\n",
    b"gats 100 a zz\r\n",
    b"cas a 0 0 1 0\r\n2\r\n",
    b"cas a 0 0 1 1\r\n3\r\n",
    b"cas zz 0 0 1 5\r\nx\r\n",
    b"mg a c v\r\n",
    b"ms a 1 C0\r\n5\r\n",
    b"ms a 1 C77 c\r\n6\r\n",
    b"ms a 1 c\r\n7\r\n",
    b"ms a 1 MA C9 c\r\n8\r\n",
    b"ms nope 1 C5\r\nx\r\n",
    b"ms a 1 I C3\r\n9\r\n",
    b"mg a c v s\r\n",
    b"ma n N0 J5 c v\r\n",
    b"ma n C3 c\r\n",
    b"ma n C0 c v\r\n",
    b"md a C5\r\n",
    b"mg a c\r\n",
    b"md a C0 q\r\nmn\r\n",
    b"mg a v\r\n",
    b"add b 0 0 1\r\nb\r\n",
    b"append b 0 0 1\r\nc\r\n",
    b"incr n 1\r\n",
    b"gets b n\r\n",
    b"mg b c k s v\r\n",
    b"md b I T30 c\r\n",
    b"mg b c v\r\n",
    b"me b\r\n",
    b"set big 0 0 1048500\r\n" + b"b" * 1048500 + b"\r\n",
    b"set big 0 0 1048517\r\n" + b"b" * 1048517 + b"\r\n",
    b"set big 0 0 1048518\r\n" + b"b" * 1048518 + b"\r\n",
    b"append big 0 0 8\r\n12345678\r\n",
    b"me big\r\n",
    b"stats reset\r\n",
]

NO_CAS_BINARY = (
    store(SET, b"x", b"1", opaque=1)
    + store(SET, b"x", b"2", cas=5, opaque=2)
    + store(SET, b"x", b"3", cas=0, opaque=3)
    + store(ADD, b"x", b"4", cas=7, opaque=4)
    + req(APPEND, b"x", value=b"5", cas=9, opaque=5)
    + req(GETK, b"x", opaque=6)
    + delta(INCR, b"ctr", 1, 10, opaque=7)
    + delta(INCR, b"ctr", 1, cas=3, opaque=8)
    + delta(INCR, b"ctr", 1, opaque=9)
    + req(DELETE, b"x", cas=4, opaque=10)
    + req(DELETE, b"x", opaque=11)
    + req(GETK, b"x", opaque=12)
)


@pytest.fixture(scope="module")
def no_cas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    pair = Pair(tmp_path_factory.mktemp("no-cas"), ["-C"])
    yield pair
    pair.stop()


def test_no_cas_text_and_meta(no_cas: Pair) -> None:
    mc, pc = text_replies(no_cas, NO_CAS_TEXT)
    assert pc == mc
    assert b"VALUE a 0 1 C" in pc  # gets showed a CAS (0, as an ordinal)


def test_no_cas_binary(no_cas: Pair) -> None:
    mc, pc = binary_replies(no_cas, NO_CAS_BINARY)
    assert pc == mc
    assert all(frame.cas == 0 for frame in pc)


def test_no_cas_random_traffic(no_cas: Pair) -> None:
    generator = Generator(28)
    sizes = random.Random(28)
    peers = [Peer(address, str(address)) for address in no_cas.addresses]
    for index in range(80):
        batch = generator.batch(sizes.randint(1, 20))
        if any(
            b"flush_all" in part for c in batch.commands for part in c if isinstance(part, bytes)
        ):
            continue  # memcached -C flushes the rest of the second too: a deliberate difference
        mc, pc = (peer.exchange(batch, random.Random(index)) for peer in peers)
        assert pc == mc, f"batch {index}: {[c[:1] for c in batch.commands]!r}"


# -- -B --------------------------------------------------------------------------------------

BINARY_FRAMES = (
    req(VERSION) + store(SET, b"bk", b"v") + req(GETK, b"bk") + req(NOOP) + b"version\r\n"
)


def test_binding_protocol_ascii(tmp_path: Path) -> None:
    """-B ascii: a binary request is read as text (its bytes up to a newline are a line)."""
    pair = Pair(tmp_path, ["-B", "ascii"])
    try:
        for payload in (BINARY_FRAMES, req(NOOP) + b"get bk\r\n", b"set t 0 0 1\r\nv\r\n"):
            mc, pc = (outcome(address, payload, wait=0.5) for address in pair.addresses)
            assert pc == mc, payload
        for address in pair.addresses:
            assert settings_of(address, ("binding_protocol",)) == {"binding_protocol": "ascii"}
    finally:
        pair.stop()


def test_binding_protocol_binary(tmp_path: Path) -> None:
    """-B binary: text waits for a header's 24 bytes, then closes; binary is served."""
    pair = Pair(tmp_path, ["-B", "binary"])
    try:
        for payload in (b"version\r\n", b"get a\r\n"):
            mc, pc = (outcome(address, payload, wait=0.5) for address in pair.addresses)
            assert pc == mc == (b"", False), payload
        for frames in (b"version\r\nget a b c d e f\r\n", BINARY_FRAMES, req(STAT, b"settings")):
            mc_frames, pc_frames = binary_replies(pair, frames)
            if frames == req(STAT, b"settings"):  # values differ; the binding protocol does not
                settings = [{f.key: f.value for f in got} for got in (mc_frames, pc_frames)]
                assert settings[0][b"binding_protocol"] == settings[1][b"binding_protocol"]
                assert settings[1][b"binding_protocol"] == b"binary"
            else:
                assert pc_frames == mc_frames, frames
    finally:
        pair.stop()


# -- -R --------------------------------------------------------------------------------------

LONG = b"x" * 3000


# conn_yields counts the requests past reqs_per_event and the final write of a read that
# used up its share exactly (memcached's drive_machine); these pipelines show each case.
YIELDING = [
    b"set a 0 0 1 noreply\r\n1\r\n" * 2,
    b"set a 0 0 1 noreply\r\n1\r\n" * 4,
    b"set a 0 0 1\r\n1\r\n",
    b"get a\r\n" * 2,
    b"get a\r\nset a 0 0 1\r\n1\r\n",
    b"set a 0 0 1\r\n1\r\nget a\r\n",
    b"bogus\r\n" * 2,
    b"set y 0 0 1 noreply\r\n1\r\n" * 9 + b"get y\r\n" * 4 + b"mn\r\n",
    b"mn\r\n" * 7 + b"delete zz\r\n" * 3,
    req(NOOP) * 2,
    store(SET, b"b", b"v") * 4,
    req(GETK, b"b") * 5 + req(NOOP),
]


def yields_of(address: Address, payload: bytes) -> int:
    """How much ``conn_yields`` grew while ``payload`` was answered (sent in one write)."""

    def now(client: RawClient) -> int:
        client.send(b"stats\r\n")
        rows = client.read_until(b"END\r\n").decode().splitlines()
        return int(next(r for r in rows if "conn_yields" in r).split()[2])

    watcher = RawClient(address)
    before = now(watcher)
    with connect(address) as sock:
        sock.sendall(payload)
        sock.settimeout(0.3)
        with contextlib.suppress(TimeoutError):
            while sock.recv(65536):
                pass
    after = now(watcher)
    watcher.close()
    return after - before


def test_reqs_per_event_moves_the_flush_points(tmp_path: Path) -> None:
    pair = Pair(tmp_path, ["-R", "2"])
    try:
        for count in (1, 2, 3, 4, 5, 6, 7, 9):
            payload = b"delete zz\r\n" * count + LONG
            mc, pc = (outcome(address, payload) for address in pair.addresses)
            assert pc == mc, count
        for address in pair.addresses:
            assert settings_of(address, ("reqs_per_event",)) == {"reqs_per_event": "2"}
        for payload in YIELDING:
            mc_yields, pc_yields = (yields_of(address, payload) for address in pair.addresses)
            assert pc_yields == mc_yields, payload
    finally:
        pair.stop()


# -- -S --------------------------------------------------------------------------------------

USER, PASSWORD = "carol", "pa55"
SASL_TEXT = [b"version\r\n", b"get a b c d e f g h i j\r\n"]
SASL_FRAMES = [
    req(SASL_LIST),
    req(GETK, b"k") + req(NOOP),
    req(SASL_AUTH, b"PLAIN", value=b"\0carol\0wrong") + req(NOOP),
    req(SASL_AUTH, b"PLAIN", value=b"\0carol\0pa55") + store(SET, b"k", b"v") + req(GETK, b"k"),
]


@pytest.fixture(scope="module")
def sasl_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with sasl_conf(USER, PASSWORD) as root:
        pwdb = root / "pwdb"
        pwdb.write_text(f"{USER}:{PASSWORD}\n")
        pair = Pair(tmp_path_factory.mktemp("sasl"), ["-S"], env={"MEMCACHED_SASL_PWDB": str(pwdb)})
    yield pair
    pair.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_sasl_binary_only(sasl_pair: Pair) -> None:
    for frames in SASL_FRAMES:
        mc, pc = binary_replies(sasl_pair, frames)
        assert pc == mc, frames
    for payload in SASL_TEXT:  # a text client: waits for 24 bytes, then is closed
        mc_out, pc_out = (outcome(address, payload, wait=0.5) for address in sasl_pair.addresses)
        assert pc_out == mc_out, payload
    client = BinClient(sasl_pair.server.port)
    replies = client.exchange(
        req(SASL_AUTH, b"PLAIN", value=b"\0carol\0pa55") + req(STAT, b"settings")
    )
    settings = {f.key: f.value for f in replies if f.opcode == STAT}
    assert settings[b"auth_enabled_sasl"] == b"yes"
    assert settings[b"binding_protocol"] == b"binary"
    client.close()


# -- stats settings --------------------------------------------------------------------------

SETTINGS = ("evictions", "cas_enabled", "reqs_per_event", "binding_protocol", "umask")


def test_stats_settings_show_the_flags(tmp_path: Path) -> None:
    pair = Pair(tmp_path, ["-C", "-M", "-R", "7", "-B", "ascii", "-a", "0750", "-m", "64"])
    try:
        mc, pc = (settings_of(address, SETTINGS) for address in pair.addresses)
        assert (
            pc
            == mc
            == {
                "evictions": "off",
                "cas_enabled": "no",
                "reqs_per_event": "7",
                "binding_protocol": "ascii",
                "umask": "750",
            }
        )
    finally:
        pair.stop()


def test_stats_settings_of_a_unix_socket(tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="pc-unix-"))
    root.chmod(0o777)
    memcached = MemcachedProcess(["-a", "0755"], unix_path=str(root / "mc.sock"))
    server = PetracacheProcess(tmp_path, ["-s", str(root / "pc.sock"), "-a", "0755"])
    try:
        with server:
            names = ("domain_socket", "umask", "tcpport", "inter")
            mc = settings_of(memcached.address, names)
            pc = settings_of(server.address, names)
            assert mc["domain_socket"] == str(root / "mc.sock")
            assert pc["domain_socket"] == str(root / "pc.sock")
            assert {k: pc[k] for k in names[1:]} == {k: mc[k] for k in names[1:]}
            for sock_path in (root / "mc.sock", root / "pc.sock"):
                assert sock_path.stat().st_mode & 0o777 == 0o755
            # stats conns: the listener and the asking connection, as memcached lists them
            rows = []
            for address in (memcached.address, server.address):
                client = RawClient(address)
                raw = client.call(b"stats conns\r\n").decode("latin-1")
                client.close()
                rows.append(
                    [
                        line.split(" ", 2)[1].split(":", 1)[1] + " " + line.split(" ", 2)[2]
                        for line in raw.splitlines()
                        if line.startswith("STAT ")
                    ]
                )
            mc_rows, pc_rows = (
                [
                    re.sub(
                        r"secs_since_last_cmd \d+",
                        "secs_since_last_cmd N",
                        r.replace(str(root / "mc.sock"), "S").replace(str(root / "pc.sock"), "S"),
                    )
                    for r in rs
                ]
                for rs in rows
            )
            # memcached prints a listening unix socket's path from a sockaddr too short for
            # it (26 bytes, then whatever memory follows): only the shape of that row counts.
            assert pc_rows[0] == "addr unix:S"
            assert mc_rows[0].startswith("addr unix:")
            assert pc_rows[1:] == mc_rows[1:]
            assert "state conn_parse_cmd" in pc_rows
    finally:
        memcached.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_ascii_authentication_with_binding_ascii(short_root: Path) -> None:
    """-Y with -B ascii: a binary client meets the text authentication, as in memcached
    (without -B, petracache lets a binary client authenticate with SASL instead)."""
    users = short_root / "users"
    users.write_text("dave:s3cret\n")
    users.chmod(0o644)
    pair = Pair(short_root / "pc", ["-Y", str(users), "-B", "ascii"])
    try:
        for payload in (
            req(NOOP),
            req(NOOP) + b"\r\nget a\r\n",
            b"set x 0 0 11\r\ndave s3cret\r\n" + req(NOOP) + b"\r\n",
        ):
            mc, pc = (outcome(address, payload, wait=0.5) for address in pair.addresses)
            assert pc == mc, payload
    finally:
        pair.stop()


@pytest.fixture
def short_root() -> Iterator[Path]:
    """A directory memcached (nobody, under root) can read."""
    root = Path(tempfile.mkdtemp(prefix="pc-auth-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)
