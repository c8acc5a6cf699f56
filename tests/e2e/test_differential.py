"""Differential test: the same bytes to memcached 1.6.18 and to petracache, replies compared.

Scripted cases cover the corners (item-size boundary, the 24-token limit, tabs, NUL, ``\\r``,
number-parsing quirks, incr padding, every noreply form, errors and what they do to queued
replies); seeded random traffic (``difftraffic``: valid and malformed commands, pipelined,
split at random bytes) covers their combinations. Replies must be byte-identical once CAS
uniques are replaced by ordinals and the version string by ``X``; every batch also compares
both servers' state (``gets`` of every key). ``stats`` values and timing are excluded.
The scripted cases and some random traffic also go through both servers' unix sockets
(``-s``). Servers started with other memcached flags are compared in
``test_differential_flags``.
"""

from __future__ import annotations

import difflib
import random
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.difftraffic import (
    LARGEST_ITEM_1B_KEY as LARGEST,
    LONG_KEY,
    Batch,
    CasRef,
    Generator,
    Part,
    Peer,
)
from tests.harness import MemcachedProcess, PetracacheProcess, outcome

pytestmark = pytest.mark.integration

RANDOM_SEEDS = (1, 7, 12)
RANDOM_BATCHES = 130  # per seed, 1-25 commands each: about 5,000 commands in all
COMPARED = {"scripted": 0, "random": 0}


@pytest.fixture(scope="module")
def peers(memcached: MemcachedProcess, shared_server: PetracacheProcess) -> Iterator[list[Peer]]:
    pair = [Peer(memcached.port, "memcached"), Peer(shared_server.port, "petracache")]
    reset = Batch([[b"flush_all\r\nstats detail off\r\nstats reset\r\n"]])
    for peer in pair:
        peer.exchange(reset, random.Random(0))
    yield pair
    for peer in pair:
        peer.exchange(reset, random.Random(0))
        peer.close()
    print(f"\ndifferential: {COMPARED} commands compared")


@pytest.fixture(scope="module")
def unix_peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Peer]]:
    """The same pair, each serving on a unix socket only (memcached ``-s``)."""
    # memcached runs as nobody under root: its socket's directory must be writable to it,
    # and a unix socket path must stay under 108 bytes (pytest's tmp paths can be longer).
    root = Path(tempfile.mkdtemp(prefix="pc-unix-"))
    root.chmod(0o777)
    memcached = MemcachedProcess(unix_path=str(root / "mc.sock"))
    server = PetracacheProcess(tmp_path_factory.mktemp("pc-unix"), ["-s", str(root / "pc.sock")])
    with server:
        pair = [Peer(memcached.address, "memcached"), Peer(server.address, "petracache")]
        yield pair
        for peer in pair:
            peer.close()
    memcached.stop()


def compare(peers: list[Peer], commands: list[list[Part]], seed: int = 0) -> None:
    batch = Batch(commands)
    mc, pc = (peer.exchange(batch, random.Random(seed)) for peer in peers)
    assert pc == mc, f"replies differ for {[c[:1] for c in commands]!r}"


def lines(*commands: bytes) -> list[list[Part]]:
    return [[c] for c in commands]


def big(n: int, fill: bytes = b"9") -> bytes:
    return fill * n


SCRIPTED: dict[str, list[list[Part]]] = {
    "item size boundary": lines(
        b"set a 0 0 %d\r\n%s\r\n" % (LARGEST, big(LARGEST)),
        b"set a 0 0 %d\r\n%s\r\n" % (LARGEST + 1, big(LARGEST + 1)),
        b"get a\r\n",
        b"set a 0 0 %d noreply\r\n%s\r\n" % (LARGEST + 1, big(LARGEST + 1)),
        b"set a 1 0 %d\r\n%s\r\n" % (LARGEST - 4, big(LARGEST - 4)),
        b"set a 1 0 %d\r\n%s\r\n" % (LARGEST - 3, big(LARGEST - 3)),
        b"set bb 0 0 %d\r\n%s\r\n" % (LARGEST, big(LARGEST, b"\r\n")[:LARGEST]),
        b"set bb 0 0 %d\r\n%s\r\n" % (LARGEST - 1, big(LARGEST - 1)),
        b"append bb 0 0 1\r\nx\r\n",
        b"prepend bb 0 0 1\r\nx\r\n",
        b"get a bb\r\n",
        b"set c 0 0 2000000\r\n%s\r\nget c\r\n" % big(2_000_000, b"get c\r\n")[:2_000_000],
    ),
    "24-token limit": lines(
        b"set t1 0 0 1\r\n1\r\nset t30 0 0 2\r\n30\r\n",
        b"get " + b" ".join(b"t%d" % i for i in range(1, 31)) + b"\r\n",
        b"gets " + b" ".join(b"t%d" % i for i in range(40, 0, -1)) + b"\r\n",
        b"gat 100 " + b" ".join(b"t%d" % i for i in range(1, 31)) + b"\r\n",
        b"set " + b" ".join(b"x%d" % i for i in range(30)) + b"\r\n",
        b"incr " + b" ".join(b"x%d" % i for i in range(30)) + b"\r\n",
        b"delete " + b" ".join(b"x%d" % i for i in range(24)) + b"\r\n",
        b"touch t1 10 " + b" ".join(b"x%d" % i for i in range(22)) + b"\r\n",
    ),
    "tabs and control bytes in keys": lines(
        b"set k\tx 0 0 1\r\n1\r\n",
        b"get k\tx k\r\n",
        b"set \x01\x7f\xff 0 0 1\r\n2\r\n",
        b"gets \x01\x7f\xff\r\n",
        b"delete k\tx\r\n",
    ),
    "NUL bytes": lines(
        b"set n 0 0 3\r\na\x00b\r\n",
        b"get n\x00zz\r\n",
        b"get n \x00n\r\n",
        b"\x00get n\r\n",
        b"set n\x00x 0 0 1\r\nx\r\n",
        b"set n 0 0 1\x00 9\r\nx\r\n",
        b"incr n 1\r\n",
        b"set n 0 0 3\r\n1\x002\r\nincr n 1\r\nget n\r\n",
    ),
    "carriage returns": lines(
        b"get a\r\r\n",
        b"set r 0 0 1\r\r\nx\r\n",
        b"set r 0 0 1\nx\r\n",
        b"get r\n",
        b"version\r\n\r\n\n\r\r\n",
        b"set r 0 0 1\r\nx\n\r\n",
        b"set r 0 0 2\r\nx\r\r\n",
        b"delete r 0\r\r\n",
        b"delete r noreply\r\r\n",
    ),
    "number parsing quirks": lines(
        b"set q 0 0 1\r\n1\r\n",
        b"set q +5 0 1\r\n1\r\nget q\r\n",
        b"set q -0 -0 -0\r\n\r\nget q\r\n",
        b"set q 4294967296 0 1\r\n1\r\nget q\r\n",
        b"set q 4294967297 0 1\r\n1\r\nget q\r\n",
        b"set q 18446744073709551615 0 1\r\n1\r\nget q\r\n",
        b"set q 18446744073709551616 0 1\r\n1\r\n",
        b"set q -18446744073709551615 0 1\r\n1\r\nget q\r\n",
        b"set q 0 2147483648 1\r\n1\r\nget q\r\n",
        b"set q 0 -2147483649 1\r\n1\r\nget q\r\n",
        b"set q 0 9223372036854775808 1\r\n1\r\n",
        b"set q 0 0 4294967295\r\n1\r\n",
        b"set q 0 0 4294967297\r\n1\r\nget q\r\n",
        b"set q 0 0 2147483646\r\n1\r\n",
        b"set q 0 0 -1\r\n1\r\n",
        b"set q 1x 0 1\r\n1\r\n",
        b"set q 0 1.5 1\r\n1\r\n",
        b"set q 0 0 1x\r\n1\r\n",
        b"set q 0 0 0x1\r\n1\r\n",
        b"set q 0x1 0 1\r\n1\r\n",
        b"set q 007 0 01\r\n1\r\nget q\r\n",
        b"set q 0 0 1\t\r\n1\r\n",
        b"touch q +100\r\ntouch q 1x\r\ntouch q -0\r\n",
        b"incr q +1\r\nincr q 1.5\r\nincr q -0\r\nincr q 18446744073709551616\r\n",
        b"flush_all +0\r\nflush_all 1x\r\n",
        b"set q 0 0 23\r\n18446744073709551615 -x\r\nincr q 1\r\n",  # a '-' after the digits
        b"incr q 18446744073709551615\t-\r\nincr q -18446744073709551615\r\n",
        b"set q 18446744073709551615\t- 0 1\r\n1\r\nset q 4294967296\t- 0 1\r\n1\r\n",
        b"verbosity +1\r\nverbosity 1x\r\nverbosity -1\r\n",
    ),
    "incr and decr": lines(
        b"set i 5 1000 3\r\n100\r\n",
        b"decr i 1\r\ngets i\r\n",
        b"incr i 1\r\nget i\r\n",
        b"incr i 900\r\nget i\r\n",
        # Values of 2**63 and up end in a NUL here: memcached checks them for a '-' with
        # strchr(), which otherwise reads on past the item into whatever memory follows.
        b"set i 0 0 21\r\n18446744073709551615\x00\r\nincr i 1\r\nget i\r\n",
        b"set i 0 0 21\r\n18446744073709551614\x00\r\nincr i 3\r\nget i\r\n",
        b"set i 0 0 2\r\n10\r\ndecr i 11\r\nget i\r\n",
        b"set i 0 0 3\r\n1 2\r\nincr i 1\r\nget i\r\n",
        b"set i 0 0 3\r\n 12\r\nincr i 1\r\nget i\r\n",
        b"set i 0 0 4\r\n12ab\r\nincr i 1\r\n",
        b"set i 0 0 2\r\n-1\r\nincr i 1\r\n",
        b"set i 0 0 0\r\n\r\nincr i 1\r\n",
        b"set i 0 0 21\r\n184467440737095516150\r\nincr i 1\r\n",
        b"set i 0 0 3\r\n0x1\r\nincr i 1\r\n",
        b"incr nokey 1\r\ndecr nokey 1\r\n",
        b"set i 0 0 1\r\n5\r\nincr i 0\r\ngets i\r\n",
        b"incr i 1 noreply\r\ndecr i abc noreply\r\nincr nokey 1 noreply\r\nget i\r\n",
    ),
    "append and prepend keep flags and TTL": lines(
        b"set ap 9 1000 1\r\nb\r\n",
        b"append ap 5 0 1\r\nc\r\n",
        b"prepend ap 7 -1 1\r\na\r\n",
        b"gets ap\r\n",
        b"append nokey 0 0 1\r\nx\r\nprepend nokey 0 0 1\r\nx\r\n",
    ),
    "storage replies": [
        [b"add s 0 0 1\r\n1\r\n"],
        [b"add s 0 0 1\r\n2\r\n"],
        [b"replace s 0 0 1\r\n3\r\n"],
        [b"replace nokey 0 0 1\r\n3\r\n"],
        [b"gets s\r\n"],
        [b"cas s 0 0 1 ", CasRef(b"s", 0), b"\r\n4\r\n"],
        [b"cas s 0 0 1 ", CasRef(b"s", 0), b"\r\n5\r\n"],
        [b"cas s 0 0 1 0\r\n5\r\n"],
        [b"cas nokey 0 0 1 1\r\n5\r\n"],
        [b"gets s\r\n"],
        [b"cas s 0 0 1 ", CasRef(b"s", 0), b" noreply\r\n6\r\ngets s\r\n"],
        [b"cas s 0 0 1 abc\r\n6\r\n"],
        [b"cas s 0 0 1\r\n6\r\n"],
        [b"set s 0 0 1 garbage\r\n7\r\nget s\r\n"],
    ],
    "noreply everywhere": lines(
        b"set nr 0 0 1 noreply\r\n1\r\n",
        b"add nr 0 0 1 noreply\r\n1\r\n",
        b"replace nr 0 0 1 noreply\r\n2\r\n",
        b"append nr 0 0 1 noreply\r\n3\r\n",
        b"prepend nr 0 0 1 noreply\r\n4\r\n",
        b"cas nr 0 0 1 1 noreply\r\n5\r\n",
        b"incr nr 1 noreply\r\n",
        b"decr nr 1 noreply\r\n",
        b"touch nr 100 noreply\r\n",
        b"delete nr noreply\r\n",
        b"delete nr 0 noreply\r\n",
        b"delete nr 5 noreply\r\n",
        b"flush_all noreply\r\n",
        b"flush_all 0 noreply\r\n",
        b"verbosity 1 noreply\r\n",
        b"verbosity noreply\r\n",
        b"cache_memlimit 100 noreply\r\n",
        b"set nr 0 0 -1 noreply\r\nx\r\n",
        b"set nr 0 0 1 noreply\r\nxyz\r\n",
        b"incr nr abc noreply\r\n",
        b"touch nr abc noreply\r\n",
        b"set " + LONG_KEY + b" 0 0 1 noreply\r\nx\r\n",
        b"get nr noreply\r\n",
        b"version noreply\r\n",
        b"stats noreply\r\n",
        b"set nr 0 0 1 NOREPLY\r\nx\r\n",
    ),
    "delete forms": lines(
        b"set d 0 0 1\r\n1\r\ndelete d\r\ndelete d\r\n",
        b"set d 0 0 1\r\n1\r\ndelete d 0\r\ndelete d 0 noreply\r\n",
        b"delete d foo\r\ndelete d noreply 0\r\ndelete d 0 0\r\ndelete d a b c\r\n",
        b"delete d foo noreply\r\ndelete\r\ndelete " + LONG_KEY + b"\r\n",
    ),
    "touch and gat": lines(
        b"set tg 3 0 1\r\n1\r\n",
        b"touch tg 1000\r\ntouch nokey 10\r\ntouch tg abc\r\ntouch tg\r\n",
        b"gat 1000 tg nokey tg\r\ngats 1000 tg\r\n",
        b"gat tg\r\ngat\r\ngat 1000\r\ngat abc tg\r\ngat 1.5 tg\r\ngat 1000 " + LONG_KEY + b"\r\n",
        b"gats -1 tg\r\nget tg\r\n",
        b"set tg 0 0 1\r\n1\r\ntouch tg -1\r\nget tg\r\n",
        b"set tg 0 0 1\r\n1\r\ngat 1000 tg " + LONG_KEY + b"\r\ngats -1 tg " + LONG_KEY + b"\r\n",
        b"get tg\r\n",
    ),
    "long keys": lines(
        b"set " + b"k" * 250 + b" 0 0 1\r\n1\r\nget " + b"k" * 250 + b"\r\n",
        b"set " + LONG_KEY + b" 0 0 1\r\n1\r\n",
        b"get " + LONG_KEY + b"\r\nincr " + LONG_KEY + b" 1\r\ntouch " + LONG_KEY + b" 1\r\n",
        b"delete zz\r\nget " + b"k" * 250 + b" " + LONG_KEY + b"\r\n",
        b"get a\r\ndelete zz\r\nversion\r\nget " + LONG_KEY + b"\r\ndelete zz\r\n",
        b"delete zz\r\n" * 25 + b"gets " + LONG_KEY + b"\r\n",
    ),
    "bad data chunks": lines(
        b"set bd 0 0 1\r\nxy\r\n",
        b"set bd 0 0 1\r\nx\nget bd\r\n",
        b"set bd 0 0 3\r\nabcde\r\n",
        b"set bd 0 0 1\r\n1\r\nset bd 0 0 1\r\nxx\r\nget bd\r\n",
        b"append bd 0 0 1\r\n22\r\nget bd\r\n",
    ),
    "flush_all forms": lines(
        b"set f 0 0 1\r\n1\r\nflush_all\r\nget f\r\n",
        b"set f 0 0 1\r\n1\r\nflush_all 0\r\nset g 0 0 1\r\n2\r\nget f g\r\n",
        b"flush_all -1\r\nget g\r\n",
        b"set f 0 0 1\r\n1\r\nflush_all 1000\r\nget f\r\nflush_all 0\r\nget f\r\n",
        b"set f 0 0 1\r\n1\r\nflush_all 2592001\r\nget f\r\n",
        b"flush_all abc\r\nflush_all 1 2 3\r\nflush_all noreply extra\r\nflush_all 1000 2\r\n",
        b"flush_all\r\n",
    ),
    "version, verbosity, stats subcommands, cache_memlimit": lines(
        b"version\r\nversion foo bar\r\n",
        b"verbosity\r\nverbosity 1\r\nverbosity 0 noreply\r\nverbosity 1 2\r\nverbosity 1 2 3\r\n",
        b"verbosity abc\r\nverbosity 0\r\n",
        b"stats reset\r\nstats nonsense\r\nstats detail\r\nstats detail foo\r\n",
        b"stats detail on\r\nset p:1 0 0 1\r\n1\r\nget p:1 p:2 q:1 nokey\r\ndelete q:9\r\n",
        b"add p:1 0 0 1\r\n1\r\nstats detail dump\r\nstats detail off\r\nget p:1\r\n",
        b"stats detail dump\r\nstats reset\r\nstats detail dump\r\nstats detail on x\r\n",
        b"stats detail off\r\n",
        b"cache_memlimit\r\ncache_memlimit abc\r\ncache_memlimit 1\r\ncache_memlimit 7\r\n",
        b"cache_memlimit 2000000000\r\ncache_memlimit 100 noreply\r\ncache_memlimit 64\r\n",
        b"shutdown\r\nshutdown graceful\r\n",
    ),
    "unknown commands and bad lines": lines(
        b"GET a\r\nSet a 0 0 1\r\n",
        b"\r\n\n   \r\nx\r\nfoo bar baz\r\n",
        b"get\r\ngets\r\nset a 0 0\r\ncas a 0 0 1\r\nincr a\r\ntouch a\r\n",
        b"g" * 300 + b"\r\n",
        b"\xff\xfe\xfd\r\n",
    ),
}


@pytest.mark.parametrize("name", list(SCRIPTED))
def test_scripted(peers: list[Peer], name: str) -> None:
    commands = SCRIPTED[name]
    for command in commands:
        compare(peers, [command])
    compare(peers, commands)  # and all of them pipelined in one go
    COMPARED["scripted"] += 2 * len(commands)


@pytest.mark.parametrize("seed", RANDOM_SEEDS)
def test_random_traffic(peers: list[Peer], seed: int) -> None:
    generator = Generator(seed)
    sizes = random.Random(seed)
    mismatches = []
    for index in range(RANDOM_BATCHES):
        batch = generator.batch(sizes.randint(1, 25))
        mc, pc = (peer.exchange(batch, random.Random(index)) for peer in peers)
        if mc != pc:
            mismatches.append((index, batch.commands, mc, pc))
            break  # the servers' states may now differ: later batches prove nothing
    COMPARED["random"] += generator.count
    assert not mismatches, _explain(*mismatches[0])
    assert generator.count > RANDOM_BATCHES * 5


def test_scripted_over_unix_sockets(unix_peers: list[Peer]) -> None:
    """Every scripted case through memcached -s and petracache -s, command by command (a
    unix socket buffers far less than loopback TCP: the pipelined megabyte cases would fill
    both directions while the client is still sending, with either server)."""
    for commands in SCRIPTED.values():
        for command in commands:
            compare(unix_peers, [command])
        COMPARED["scripted"] += len(commands)


def test_random_traffic_over_unix_sockets(unix_peers: list[Peer]) -> None:
    generator = Generator(RANDOM_SEEDS[0] + 100)
    sizes = random.Random(5)
    for index in range(RANDOM_BATCHES // 2):
        batch = generator.batch(sizes.randint(1, 25))
        mc, pc = (peer.exchange(batch, random.Random(index)) for peer in unix_peers)
        assert mc == pc, _explain(index, batch.commands, mc, pc)
    COMPARED["random"] += generator.count


def _explain(index: int, commands: list[list[Part]], mc: bytes, pc: bytes) -> str:
    """A readable account of a mismatch: the batch (shortened) and a diff of the replies."""
    sent = [repr(b"".join(p for p in c if isinstance(p, bytes))[:120]) for c in commands]
    diff = difflib.unified_diff(
        [repr(line[:120]) for line in mc.split(b"\r\n")],
        [repr(line[:120]) for line in pc.split(b"\r\n")],
        "memcached",
        "petracache",
        lineterm="",
    )
    return f"batch {index}:\n" + "\n".join(sent) + "\n" + "\n".join(diff)


LONG = b"x" * 3000
CLOSING = {
    "long line": LONG,
    "long line after replies": b"get a\r\ndelete zz\r\n" + LONG,
    "long line after a set": b"set cl 0 0 1\r\n1\r\n" + LONG,
    "long line after 25 commands": b"delete zz\r\n" * 25 + LONG,
    "long line after 45 commands": b"delete zz\r\n" * 45 + LONG,
    "101 spaces then get": b" " * 101 + b"get " + LONG,
    "quit": b"delete zz\r\nquit\r\nget a\r\n",
    "quit with arguments": b"quit now\r\nget a\r\n",
    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "long get line": b"get " + b" ".join(b"k%d" % i for i in range(600)) + b"\r\n",
    "long line with its newline": b"set " + LONG + b"\r\nversion\r\n",
}


def _version_x(outcome: tuple[bytes, bool]) -> tuple[bytes, bool]:
    return re.sub(rb"VERSION [^\r]*\r\n", b"VERSION X\r\n", outcome[0]), outcome[1]


@pytest.mark.parametrize("name", list(CLOSING))
def test_closing_behaviour(
    memcached: MemcachedProcess, shared_server: PetracacheProcess, name: str
) -> None:
    payload = CLOSING[name]
    mc = outcome(memcached.port, payload)
    pc = outcome(shared_server.port, payload)
    assert _version_x(pc) == _version_x(mc)
    COMPARED["scripted"] += 1
