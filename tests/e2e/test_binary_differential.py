"""Binary-protocol differential test: the same frames to memcached 1.6.18 and to petracache.

Reply frames must be identical field by field (magic, opcode, status, extras, key, value,
opaque) once CAS uniques are numbered in order of first appearance and the version string
is replaced by ``X`` (``tests.binframes.BinClient.normalised``). Scripted cases cover the
corners (quiet forms, CAS on every command, incr creation and wrap, the item-size boundary,
what each protocol error does to the connection, memcached's swallow after an unknown
command); seeded random traffic, cut at random bytes into separate sends, covers their
combinations, and after each batch a ``getk`` of every key compares both servers' state.
``stat`` values are not compared (they differ by nature), only its error replies.
"""

from __future__ import annotations

import random
import re
import struct
from collections.abc import Callable, Iterator

import pytest

from tests.binframes import (
    ADD,
    ADDQ,
    APPEND,
    APPENDQ,
    DECR,
    DECRQ,
    DELETE,
    DELETEQ,
    FLUSH,
    FLUSHQ,
    GAT,
    GATK,
    GATKQ,
    GATQ,
    GET,
    GETK,
    GETKQ,
    GETQ,
    INCR,
    INCRQ,
    NOOP,
    PREPEND,
    PREPENDQ,
    QUIT,
    QUITQ,
    REPLACE,
    REPLACEQ,
    SASL_AUTH,
    SASL_LIST,
    SET,
    SETQ,
    STAT,
    TOUCH,
    VERBOSITY,
    VERSION,
    BinClient,
    Frame,
    delta,
    req,
    store,
    touch,
)
from tests.e2e.difftraffic import LARGEST_ITEM_1B_KEY as LARGEST
from tests.harness import MemcachedProcess, PetracacheProcess

pytestmark = pytest.mark.integration

RANDOM_SEEDS = (3, 11, 29)
RANDOM_BATCHES = 120  # per seed, 1-25 frames each
COMPARED = {"scripted": 0, "random": 0}
PAST = 31 * 86400  # an absolute exptime in 1970: already expired
# A case: bytes, or a function of the connection's last CAS seen (to send a matching CAS).
Case = bytes | Callable[[int], bytes]


@pytest.fixture(scope="module")
def ports(memcached: MemcachedProcess, shared_server: PetracacheProcess) -> Iterator[list[int]]:
    yield [memcached.port, shared_server.port]
    print(f"\nbinary differential: {COMPARED} frames compared")


def run(ports: list[int], steps: list[Case], cuts_seed: int | None = None) -> list[list[Frame]]:
    """Send each step to both servers on fresh connections (flushed first); the replies."""
    replies = []
    for port in ports:
        client = BinClient(port)
        client.exchange(req(FLUSH))
        client.ordinals.clear()
        got: list[Frame] = []
        for step in steps:
            data = step(client.last_cas) if callable(step) else step
            rnd = random.Random(cuts_seed) if cuts_seed is not None else None
            cuts = sorted(rnd.sample(range(1, len(data)), min(3, len(data) - 1))) if rnd else None
            got += client.normalised(client.exchange(data, cuts))
            if client.closed:
                got.append(Frame(-1, -1, b"", b"", b"<closed>", 0, 0))
                break
        client.close()
        replies.append(got)
    return replies


def last(opcode: int, key: bytes, value: bytes = b"v") -> Callable[[int], bytes]:
    """A store with the CAS of the last reply that carried one."""
    return lambda cas: store(opcode, key, value, cas=cas)


SX = struct.pack(">II", 0, 0)
SCRIPTED: dict[str, list[Case]] = {
    "get forms, hit and miss": [
        store(SET, b"a", b"alpha", 42),
        req(GET, b"a", opaque=1) + req(GETK, b"a", opaque=2),
        req(GETQ, b"a") + req(GETKQ, b"a") + req(GETQ, b"zz") + req(GETKQ, b"zz"),
        req(GET, b"zz", opaque=7) + req(GETK, b"zz", opaque=8),
    ],
    "quiet stores answer only errors": [
        store(SETQ, b"q1", b"1") + store(SETQ, b"q2", b"2") + store(ADDQ, b"q1", b"x"),
        store(REPLACEQ, b"nope", b"x") + store(REPLACEQ, b"q1", b"r"),
        req(APPENDQ, b"q2", value=b"+") + req(PREPENDQ, b"q2", value=b"-"),
        req(APPENDQ, b"nope", value=b"+") + req(GET, b"q1") + req(GET, b"q2"),
        req(DELETEQ, b"q1") + req(DELETEQ, b"q1"),
    ],
    "store verbs": [
        store(ADD, b"s", b"1", 5, opaque=9) + store(ADD, b"s", b"2"),
        store(REPLACE, b"s", b"3") + store(REPLACE, b"t", b"3"),
        req(APPEND, b"s", value=b"ap") + req(PREPEND, b"s", value=b"pre"),
        req(APPEND, b"t", value=b"x") + req(PREPEND, b"t", value=b"x"),
        req(GETK, b"s") + store(SET, b"e", b"") + req(GET, b"e"),
    ],
    "cas on every store": [
        store(SET, b"c", b"1"),
        store(SET, b"c", b"2", cas=987654321) + store(SET, b"missing", b"2", cas=5),
        last(SET, b"c", b"3"),
        last(ADD, b"c", b"4"),
        last(REPLACE, b"c", b"5"),
        store(ADD, b"c", b"6", cas=1) + store(REPLACE, b"nope", b"6", cas=1),
        lambda cas: req(APPEND, b"c", value=b"A", cas=cas),
        req(APPEND, b"c", value=b"B", cas=123456789) + req(GET, b"c"),
        last(SETQ, b"c", b"7"),
        req(GET, b"c") + store(SETQ, b"c", b"8", cas=3),
    ],
    "delete with cas": [
        store(SET, b"d", b"1"),
        req(DELETE, b"d", cas=99999999) + req(DELETEQ, b"d", cas=99999999),
        lambda cas: req(DELETE, b"d", cas=cas),
        req(DELETE, b"d") + req(DELETEQ, b"d") + store(SET, b"d", b"2") + req(DELETEQ, b"d"),
        req(GET, b"d"),
    ],
    "incr and decr": [
        delta(INCR, b"n", 1, 10, 0) + delta(INCR, b"n", 5, 10, 0),
        delta(DECR, b"n", 100) + delta(DECR, b"m", 1, 7, 0xFFFFFFFF),
        delta(INCR, b"m", 1, 2**64 - 1, 0) + delta(INCR, b"m", 2),
        store(SET, b"w", b"100") + delta(DECR, b"w", 91) + req(GET, b"w"),
        store(SET, b"x", b"abc") + delta(INCR, b"x", 1) + delta(INCRQ, b"x", 1),
        delta(INCRQ, b"n", 1) + delta(DECRQ, b"n", 1) + delta(DECRQ, b"zz", 1, 0, 0xFFFFFFFF),
        delta(INCR, b"n", 1, cas=424242),
        lambda cas: delta(INCR, b"n", 1, cas=cas),
        store(SET, b"big", b"18446744073709551615") + delta(INCR, b"big", 1),
        store(SET, b"lead", b" 12") + delta(INCR, b"lead", 1) + store(SET, b"sp", b"12 "),
        delta(INCR, b"sp", 1) + delta(INCR, b"new", 3, 5, 100) + req(GETK, b"new"),
        delta(INCR, b"k" * 250, 1, 1, 0),
    ],
    "touch and gat": [
        store(SET, b"t", b"tv", 7),
        touch(TOUCH, b"t", 100) + touch(GAT, b"t", 100) + touch(GATK, b"t", 0),
        touch(GATQ, b"t", 100) + touch(GATKQ, b"t", 100) + touch(GATQ, b"zz", 1),
        touch(GATKQ, b"zz", 1) + touch(TOUCH, b"zz", 1) + touch(GAT, b"zz", 1),
        touch(GATK, b"zz", 1) + touch(TOUCH, b"t", PAST) + req(GET, b"t"),
    ],
    "expiry given as absolute times": [
        store(SET, b"p", b"1", 0, PAST) + req(GET, b"p"),
        store(SET, b"f", b"1", 0, 0xFFFFFFFF) + req(GET, b"f"),
        delta(INCR, b"pi", 1, 3, PAST) + req(GET, b"pi"),
    ],
    "flush forms": [
        store(SET, b"a", b"1") + req(FLUSH) + req(GET, b"a"),
        store(SET, b"a", b"1") + req(FLUSHQ) + req(GETQ, b"a"),
        store(SET, b"a", b"1") + req(FLUSH, extras=struct.pack(">I", 0)) + req(GET, b"a"),
        req(FLUSH, extras=b"\0\0\0\0\0"),
    ],
    "version noop quit": [req(VERSION) + req(NOOP, opaque=3) + req(QUIT, opaque=4)],
    "quitq closes silently": [store(SETQ, b"a", b"1") + req(QUITQ) + req(NOOP)],
    "quit after pending replies": [req(GET, b"miss") + store(SET, b"a", b"v") + req(QUIT)],
    "stat errors and empty groups": [
        req(STAT, b"bogus") + req(STAT, b"reset") + req(STAT, b"detail on"),
        req(STAT, b"detail off") + req(STAT, b"detail x") + req(STAT, b"detailfoo"),
        req(STAT, b"reset-please") + req(STAT, extras=b"\0\0\0\0"),
    ],
    "stat detail dump": [
        req(STAT, b"detail on") + store(SET, b"pre:a", b"1") + req(GET, b"pre:a"),
        req(GET, b"pre:b") + req(DELETE, b"pre:a") + req(STAT, b"detail dump"),
        req(STAT, b"detail off"),
    ],
    "item size boundary": [
        store(SET, b"a", b"9" * LARGEST) + req(GET, b"a"),
        store(SET, b"a", b"9" * (LARGEST + 1)) + req(GET, b"a"),
        store(SET, b"a", b"1") + store(SETQ, b"a", b"9" * (LARGEST + 1)) + req(GET, b"a"),
        store(ADD, b"b", b"9" * 2_000_000) + req(APPEND, b"b", value=b"9" * 2_000_000),
        store(SET, b"b", b"9" * (LARGEST - 1)) + req(APPEND, b"b", value=b"99") + req(GET, b"b"),
        store(SET, b"c", b"x", 1) + store(SET, b"c", b"9" * (LARGEST - 3), 1) + req(GET, b"c"),
    ],
    "keys: binary bytes and the 250 limit": [
        store(SET, b"sp ace\r\n\0", b"v") + req(GETK, b"sp ace\r\n\0"),
        store(SET, b"k" * 250, b"v") + req(GETK, b"k" * 250),
        req(GET, b"k" * 251) + req(NOOP),
    ],
    "unknown command swallows bodylen after the key": [
        req(0x50) + req(NOOP, opaque=1),
        req(0x50, value=b"vvvv") + req(NOOP, opaque=2),
        req(0x50, b"kk", value=b"vvvv") + req(NOOP, opaque=3) + req(NOOP, opaque=4),
    ],
    "verbosity is unknown in 1.6.18": [req(VERBOSITY, extras=b"\0\0\0\1") + req(NOOP)],
    "sasl without sasl configured": [
        req(SASL_LIST) + req(SASL_AUTH, b"PLAIN", value=b"\0u\0p") + req(NOOP),
    ],
    "invalid magic closes, dropping unflushed replies": [
        req(GETK, b"miss") + store(SET, b"a", b"1") + b"\x81" + b"\0" * 23,
    ],
    "invalid magic after a flush point": [req(GET, b"zz") + req(NOOP) + b"GET a\r\n" + b"\0" * 20],
    "key longer than the body": [req(GET, b"abc", bodylen=2) + req(NOOP)],
    "bad extras closes": [req(GET, b"a", extras=b"\0\0\0\0") + req(NOOP)],
    "set without extras closes": [req(SET, b"a", value=b"v") + req(NOOP)],
    "delete with extras closes": [req(DELETE, b"a", extras=b"\0\0\0\0")],
    "incr with a value closes": [req(INCR, b"a", struct.pack(">QQI", 1, 0, 0), b"x")],
    "noop with a body closes": [req(NOOP, value=b"x")],
    "get without a key closes": [req(GET)],
    "touch without a key closes": [req(TOUCH, extras=b"\0\0\0\0")],
    "append with extras closes": [req(APPEND, b"a", SX, b"v")],
    "touch body beyond its key is the next request": [
        store(SET, b"t", b"v"),
        req(TOUCH, b"t", struct.pack(">I", 0), bodylen=5 + 24) + req(NOOP, opaque=5),
        req(STAT, b"bogus", bodylen=5 + 24) + req(NOOP, opaque=6),
    ],
    "version with a key closes": [req(VERSION, b"x")],
    "many quiet requests then noop": [
        b"".join(store(SETQ, b"k%d" % i, b"v%d" % i) for i in range(60))
        + b"".join(req(GETKQ, b"k%d" % i) for i in range(0, 60, 7))
        + req(NOOP),
    ],
}


@pytest.mark.parametrize("name", list(SCRIPTED))
def test_scripted(ports: list[int], name: str) -> None:
    mc, pc = run(ports, SCRIPTED[name])
    assert pc == mc
    COMPARED["scripted"] += len(mc)


@pytest.mark.parametrize("name", ["get forms, hit and miss", "cas on every store", "incr and decr"])
def test_scripted_cut_into_pieces(ports: list[int], name: str) -> None:
    """The same cases with every step split at random bytes (headers cut included)."""
    mc, pc = run(ports, SCRIPTED[name], cuts_seed=5)
    assert pc == mc


# -- random traffic ------------------------------------------------------------------------

KEYS = [b"r%d" % i for i in range(8)] + [b"n%d" % i for i in range(4)]
VALUES = [b"", b"0", b"7", b"12", b"18446744073709551615", b"abc", b"x" * 300, b" 5"]
EXPTIMES = [0, 0, 0, 1000, PAST, 0xFFFFFFFF]


def random_frame(rnd: random.Random, cas: int) -> bytes:
    """One request: mostly valid, some with CAS (bogus or the last seen)."""
    key = rnd.choice(KEYS)
    pick = rnd.random()
    with_cas = rnd.choice([0, 0, 0, 1, cas])
    if pick < 0.3:
        op = rnd.choice([SET, SETQ, ADD, ADDQ, REPLACE, REPLACEQ])
        return store(
            op,
            key,
            rnd.choice(VALUES),
            rnd.choice([0, 1, 2**32 - 1]),
            rnd.choice(EXPTIMES),
            opaque=rnd.randrange(2**32),
            cas=with_cas,
        )
    if pick < 0.55:
        op = rnd.choice([GET, GETQ, GETK, GETKQ])
        return req(op, key, opaque=rnd.randrange(2**32))
    if pick < 0.7:
        op = rnd.choice([INCR, INCRQ, DECR, DECRQ])
        return delta(
            op,
            key,
            rnd.choice([0, 1, 5, 2**64 - 1]),
            rnd.choice([0, 3, 2**64 - 1]),
            rnd.choice(EXPTIMES),
            cas=with_cas,
        )
    if pick < 0.78:
        op = rnd.choice([APPEND, APPENDQ, PREPEND, PREPENDQ])
        return req(op, key, value=rnd.choice(VALUES), cas=with_cas)
    if pick < 0.86:
        return req(rnd.choice([DELETE, DELETEQ]), key, cas=with_cas)
    if pick < 0.94:
        op = rnd.choice([TOUCH, GAT, GATQ, GATK, GATKQ])
        return touch(op, key, rnd.choice([0, 1000, 0xFFFFFFFF]))
    if pick < 0.97:
        return req(rnd.choice([NOOP, VERSION]), opaque=rnd.randrange(2**32))
    return req(rnd.choice([0x50, 0x1F, 0x99]), opaque=7)  # unknown, no body


def snapshot() -> bytes:
    return b"".join(req(GETK, key) for key in KEYS)


def unpadded(frames: list[Frame]) -> list[Frame]:
    """Values without incr/decr's space padding (runs of spaces as one, none at the end):
    memcached pads a shrunk number in place only when no unsent reply still holds the item
    (a get earlier in the same read), which depends on how TCP cut the batch, and append
    carries the padding along (a deliberate difference, compatibility.md)."""
    return [f._replace(value=re.sub(b" +", b" ", f.value).rstrip(b" ")) for f in frames]


@pytest.mark.parametrize("seed", RANDOM_SEEDS)
def test_random_traffic(ports: list[int], seed: int) -> None:
    rnd = random.Random(seed)
    clients = [BinClient(port) for port in ports]
    for client in clients:
        client.exchange(req(FLUSH))
    for _ in range(RANDOM_BATCHES):
        size = rnd.randint(1, 25)
        state = rnd.getstate()
        replies = []
        for client in clients:
            rnd.setstate(state)  # the same frames for both, each with its own last CAS
            data = b"".join(random_frame(rnd, client.last_cas) for _ in range(size))
            cuts = sorted(rnd.sample(range(1, len(data)), min(rnd.randint(0, 4), len(data) - 1)))
            replies.append(unpadded(client.normalised(client.exchange(data, cuts))))
        assert replies[1] == replies[0]
        states = [unpadded(client.normalised(client.exchange(snapshot()))) for client in clients]
        assert states[1] == states[0]
        COMPARED["random"] += size
    for client in clients:
        client.close()


def test_flush_delay_extras(ports: list[int]) -> None:
    """A flush with a delay answers like an immediate one and leaves the items for now."""
    steps: list[Case] = [
        store(SET, b"a", b"1") + req(FLUSH, extras=struct.pack(">I", 1000)) + req(GET, b"a"),
        req(FLUSHQ, extras=struct.pack(">I", 1000)) + req(GET, b"a") + req(FLUSH),
    ]
    mc, pc = run(ports, steps)
    assert pc == mc


def test_stat_general_has_memcacheds_shape(ports: list[int]) -> None:
    """``stat`` without a key: one packet per statistic then the empty terminator; the
    names petracache shares with memcached come in memcached's order."""
    names = []
    for port in ports:
        client = BinClient(port)
        frames = client.exchange(req(STAT, opaque=77))
        client.close()
        assert frames[-1] == Frame(STAT, 0, b"", b"", b"", 77, 0)
        assert all(f.opcode == STAT and f.opaque == 77 and f.status == 0 for f in frames)
        names.append([f.key for f in frames[:-1]])
    mc, pc = names
    shared = [n for n in mc if n in pc]
    assert [n for n in pc if n in shared] == shared
    assert {b"pid", b"uptime", b"version", b"cmd_get", b"get_hits", b"curr_items"} <= set(pc)


def test_stat_items_slabs_sizes_match_memcacheds_packets(server: PetracacheProcess) -> None:
    """``stat items``/``slabs``/``sizes`` over binary: the same statistic names, in the
    same order, as memcached 1.6.18 sends for one small item (both servers fresh, so
    memcached has used slab class 1 only); the figures that mean the same here match
    (the item count, the active classes), and sizes_enable/_disable end without a
    terminator in both."""
    fresh = MemcachedProcess()
    try:
        replies = []
        for port in (fresh.port, server.port):
            client = BinClient(port)
            client.exchange(store(SET, b"k", b"value"))
            replies.append(
                {
                    group: client.exchange(req(STAT, group, opaque=9))
                    for group in (b"items", b"slabs", b"sizes", b"sizes_disable")
                }
            )
            client.close()
    finally:
        fresh.stop()
    mc, pc = replies
    for group in (b"items", b"slabs", b"sizes"):
        assert pc[group][-1] == mc[group][-1] == Frame(STAT, 0, b"", b"", b"", 9, 0)
        assert [f.key for f in pc[group]] == [f.key for f in mc[group]], group
        assert all(f.opcode == STAT and f.opaque == 9 and f.status == 0 for f in pc[group])
    assert pc[b"sizes"] == mc[b"sizes"]
    assert pc[b"sizes_disable"] == mc[b"sizes_disable"]  # one packet, no terminator
    mc_items = {f.key: f.value for f in mc[b"items"]}
    pc_items = {f.key: f.value for f in pc[b"items"]}
    assert pc_items[b"items:1:number"] == mc_items[b"items:1:number"] == b"1"
    mc_slabs = {f.key: f.value for f in mc[b"slabs"]}
    pc_slabs = {f.key: f.value for f in pc[b"slabs"]}
    for name in (b"active_slabs", b"1:used_chunks", b"1:cmd_set", b"1:get_hits"):
        assert pc_slabs[name] == mc_slabs[name], name
