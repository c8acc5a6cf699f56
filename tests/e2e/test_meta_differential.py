"""Differential test of the meta protocol: the same bytes to memcached 1.6.18 and petracache.

Scripted cases pin the corners (every flag 1.6.18 knows, reply flag order, quiet mode,
stale/win, vivify, base64 keys, every error and what it swallows); seeded random batches of
meta and classic commands, sent in random fragments, cover their combinations. After each
batch both servers' state is probed (``mg ... u``, which changes nothing) and every batch
ends with a miss on a reserved key (a unique reply, unlike ``MN``). Replies must be
byte-identical once normalised:

* CAS uniques (``c<n>``, ``cas=<n>``, ``gets``) become ordinals in order of appearance;
* remaining-TTL and last-access numbers (``t<n>``, ``l<n>``, ``exp=``, ``la=``) become ``#``
  (memcached's clock may tick between the two servers; ``t-1``/``exp=-1`` are kept). Exact
  values are checked with a controlled clock in tests/storage/test_meta_state.py.

Left out because 1.6.18 predates them (petracache follows newer memcached): the ``E`` flag,
md ``x``, ms ``s`` and ``N``. Absolute CAS values in ``C`` are only ever 0 or one a server
reported itself (``CasRef``), because the two servers' CAS counters differ in magnitude.
"""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest

import pytest

from tests.harness import FencedClient, MemcachedProcess, PetracacheProcess

pytestmark = pytest.mark.integration

SEEDS = (3, 11, 29)
BATCHES = 120  # per seed, 1-12 commands each
# Ends every batch; unique (no generated command uses this key or opaque), unlike MN.
FENCE = b"mg __fence k Oend\r\n"
FENCE_REPLY = b"EN k__fence Oend\r\n"

PLAIN_KEYS = [b"a", b"b", b"n", b"k:1", b"\xc3\xa9", b"foo", b"L" * 250]
BINARY_KEYS = [b"foo", b"a", b"bin\x00\r\n key"]  # sent base64-encoded with the b flag
KEYS = PLAIN_KEYS + [k for k in BINARY_KEYS if k not in PLAIN_KEYS]
DATA_ALPHABET = b"xyz0123456789 "
OPAQUES = [b"O1", b"Oabc", b"O" + b"9" * 31, b"O" + b"9" * 32]
TTLS = [b"0", b"1000", b"-1", b"2592001"]
# R values far from every TTL used, so a clock tick between the servers cannot flip a win.
RECACHE = [b"R30", b"R2000", b"R0", b"R-1"]
COUNTERS = [b"0", b"1", b"99", b"100", b"18446744073709551615", b"12ab", b" 1", b""]


@dataclass(frozen=True)
class CasRef:
    """The CAS unique this connection last saw for ``key`` (per server); 0 if none."""

    key: bytes


Part = bytes | CasRef

_META_LINE = re.compile(rb"^(HD|VA|EN|NF|NS|EX|ME)( |\r|$)")
_VALUE_LINE = re.compile(rb"^VALUE (\S+) (\d+) (\d+)(?: (\d+))?$")


class Peer(FencedClient):
    """One connection to one server: renders ``CasRef``s and normalises replies."""

    def __init__(self, port: int, name: str) -> None:
        super().__init__(port, name)
        self.seen: dict[bytes, int] = {}

    def render(self, parts: list[Part]) -> bytes:
        return b"".join(
            b"%d" % self.seen.get(p.key, 0) if isinstance(p, CasRef) else p for p in parts
        )

    def exchange(self, commands: list[list[Part]], rng: random.Random, cuts: int) -> bytes:
        payload = b"".join(self.render(c) for c in commands) + FENCE
        self.send_in_pieces(payload, sorted(rng.randrange(len(payload)) for _ in range(cuts)))
        return self.normalise(self.read_to_fence(FENCE_REPLY))

    def _ordinal(self, cas: int) -> bytes:
        return b"%d" % self.ordinal(cas)

    def normalise(self, raw: bytes) -> bytes:
        out: list[bytes] = []
        pos = 0
        while pos < len(raw):
            end = raw.find(b"\r\n", pos)
            if end < 0:
                out.append(raw[pos:])
                break
            line, pos = raw[pos:end], end + 2
            value = _VALUE_LINE.match(line)
            if value:
                nbytes = int(value.group(3))
                if value.group(4):
                    cas = int(value.group(4))
                    self.seen[value.group(1)] = cas
                    line = line[: value.start(4)] + b"C" + self._ordinal(cas)
                out.append(line + b"\r\n" + raw[pos : pos + nbytes + 2])
                pos += nbytes + 2
                continue
            if _META_LINE.match(line):
                line = self._normalise_meta(line)
                if line.startswith(b"VA "):
                    nbytes = int(line.split(b" ")[1])
                    out.append(line + b"\r\n" + raw[pos : pos + nbytes + 2])
                    pos += nbytes + 2
                    continue
            out.append(line + b"\r\n")
        return b"".join(out)

    def _normalise_meta(self, line: bytes) -> bytes:
        tokens = line.split(b" ")
        key = cas = None
        for i, tok in enumerate(tokens):
            if i == 0:
                continue
            if tokens[0] == b"ME":
                name, eq, number = tok.partition(b"=")
                if eq and name == b"cas":
                    tokens[i] = b"cas=" + self._ordinal(int(number))
                elif eq and name in (b"exp", b"la") and number != b"-1":
                    tokens[i] = name + b"=#"
                continue
            if tok[:1] == b"c" and tok[1:].isdigit():
                cas = int(tok[1:])
                if cas:
                    tokens[i] = b"c" + self._ordinal(cas)
            elif tok[:1] in (b"t", b"l") and tok[1:].isdigit():
                tokens[i] = tok[:1] + b"#"
            elif tok[:1] == b"k":
                key = tok[1:]
                if i + 1 < len(tokens) and tokens[i + 1] == b"b":
                    key = base64.b64decode(key)
        if key is not None and cas:
            self.seen[key] = cas
        return b" ".join(tokens)


@pytest.fixture(scope="module")
def peers(memcached: MemcachedProcess, shared_server: PetracacheProcess) -> Iterator[list[Peer]]:
    pair = [Peer(memcached.port, "memcached"), Peer(shared_server.port, "petracache")]
    for peer in pair:
        peer.exchange([[b"flush_all\r\n"]], random.Random(0), 0)
    yield pair
    for peer in pair:
        peer.close()


def compare(
    peers: list[Peer], commands: list[list[Part]], rng_seed: int = 0, cuts: int = 0
) -> None:
    mc, pc = (p.exchange(commands, random.Random(rng_seed), cuts) for p in peers)
    if pc != mc:
        sent = b"".join(peers[0].render(c) for c in commands)
        mc_lines, pc_lines = mc.split(b"\r\n"), pc.split(b"\r\n")
        pairs = enumerate(zip_longest(mc_lines, pc_lines))
        at = next(i for i, (a, b) in pairs if a != b)
        pytest.fail(
            f"replies differ at line {at}:\n  memcached:  {mc_lines[at - 2 : at + 2]!r}\n"
            f"  petracache: {pc_lines[at - 2 : at + 2]!r}\nsent: {sent[:3000]!r}"
        )


def probe() -> list[list[Part]]:
    """Read every key's full state without changing it (u: no fetch recorded)."""
    cmds: list[list[Part]] = [[b"mg %b v f c k s t h l u\r\n" % k] for k in PLAIN_KEYS]
    cmds += [[b"mg %b b v f c k s t h u\r\n" % base64.b64encode(k)] for k in BINARY_KEYS]
    return cmds


def lines(*commands: bytes) -> list[list[Part]]:
    return [[c] for c in commands]


O33 = b"O" + b"1" * 32
SCRIPTED: dict[str, list[list[Part]]] = {
    "mg flags and order": lines(
        b"ms g1 2 T0 F3\r\nhi\r\n",
        b"mg g1 s v f c k t h l O123 q\r\n",
        b"mg g1 h l k\r\n",
        b"mg g1 O1 k c f s v\r\n",
        b"mg g1\r\n",
        b"mg g1 t T30 t\r\n",
        b"mg g1 T1000 t\r\n",
        b"mg g1 t\r\n",
        b"mg missing k O1 s v\r\n",
        b"mg missing q k\r\n",
        b"mg missing v\r\n",
        b"mg g1 u h\r\n",
        b"me g1\r\n",
        b"me missing\r\n",
    ),
    "mg errors": lines(
        b"mg\r\n",
        b"mg g2 v v\r\n",
        b"mg g2 S\r\n",
        b"mg g2 \x80\r\n",
        b"mg g2 Tx v\r\n",
        b"mg g2 Nx v\r\n",
        b"mg g2 Rx v\r\n",
        b"mg g2 Tx z\r\n",
        b"mg g2 k b\r\n",
        b"mg " + b"k" * 251 + b" v\r\n",
        b"mg g2 " + b" ".join(b"%d" % i for i in range(18)) + b"\r\n",
        b"mg g2 " + b" ".join(b"%d" % i for i in range(17)) + b"\r\n",
        b"mg g2 " + O33 + b" v\r\n",
        b"ms g2 1\r\nx\r\n",
        b"mg g2 T50 " + O33 + b" v\r\n",
        b"mg g2 t\r\n",
        b"mg g2 " + O33 + b" T1 v\r\n",
        b"mg g2 t\r\n",
        b"mgx g2\r\n",
        b"mz g2\r\n",
    ),
    "vivify, recache, stale": lines(
        b"mg v1 N30 s v f t h l k O9 c\r\n",
        b"mg v1 N30 s v f t h l k O9 c\r\n",
        b"mg v1 R31 v t\r\n",
        b"md v1 I\r\n",
        b"mg v1 v t\r\n",
        b"mg v1 v t\r\n",
        b"md v1 I T0\r\n",
        b"mg v1 v t c\r\n",
        b"ms v1 2 T100\r\nhi\r\n",
        b"mg v1 v c R30\r\n",
        b"ms v1 2 T10\r\nhi\r\n",
        b"mg v1 R30 v t\r\n",
        b"mg v1 R30 v t\r\n",
        b"mg v2 N-1 v\r\n",
        b"mg v2 v\r\n",
        b"mg v3 t N30 t v\r\n",
        b"mg v4 k " + O33 + b" N30\r\n",
        b"mg v4 t v\r\n",
        b"ms v5 1\r\n1\r\n",
        b"md v5 I\r\n",
        b"ma v5\r\n",
        b"mg v5 v c\r\n",
        b"mg v5 v c\r\n",
        b"ms v5 2 I\r\nhi\r\n",
        b"mg v5 v\r\n",
    ),
    "ms modes and CAS": lines(
        b"ms a1 2 c T100\r\nhi\r\n",
        b"ms a1 2 C0 c\r\nhi\r\n",
        b"ms a1 2 C0 c I\r\nxx\r\n",
        b"mg a1 v t\r\n",
        b"ms a2 2 C1 c\r\nhi\r\n",
        b"ms a2 2 C1 c ME\r\nhi\r\n",
        b"ms a2 2 c MA\r\nhi\r\n",
        b"ms a2 2 C0 c MA k O1 q\r\nhi\r\n",
        b"ms a2 2 c ME k O1 q\r\nhi\r\n",
        b"ms a2 2 c MR F5 T3000 k\r\nhi\r\n",
        b"mg a2 v f t\r\n",
        b"ms a2 2 c MP F7 T50\r\nab\r\n",
        b"mg a2 v f t\r\n",
        b"ms a3 2 MR\r\nhi\r\n",
        b"ms a3 2 MA\r\nhi\r\n",
        b"ms a3 2 MP\r\nhi\r\n",
        b"ms a3 2 MS q\r\nhi\r\n",
        b"ms a3 0\r\n\r\n",
        b"mg a3 v s\r\n",
        b"ms a3 2 F4294967296\r\nab\r\n",
        b"mg a3 f v\r\n",
        b"ms a3 2 T-1\r\nhi\r\n",
        b"mg a3 v\r\n",
    ),
    "ms CAS by reference": [
        [b"ms r1 1 c k\r\n1\r\n"],
        [b"ms r1 1 c k C", CasRef(b"r1"), b"\r\n2\r\n"],
        [b"ms r1 1 c C", CasRef(b"r1"), b"\r\n3\r\n"],
        [b"ms r1 1 c k MA C", CasRef(b"r1"), b"\r\n4\r\n"],
        [b"md r1 C", CasRef(b"r1"), b" k\r\n"],
        [b"mg r1 v c k\r\n"],
        [b"md r1 q C", CasRef(b"r1"), b"\r\n"],
        [b"mg r1 v\r\n"],
    ],
    "ms errors and swallowing": lines(
        b"ms e1\r\n",
        b"ms e1 x\r\nab\r\n",
        b"ms e1 -1\r\nab\r\n",
        b"ms e1 2 MX\r\nab\r\n",
        b"ms e1 2 MSS\r\nab\r\n",
        b"ms e1 2 Ms\r\nab\r\n",
        b"ms e1 2 Fx\r\nab\r\n",
        b"ms e1 2 F-1\r\nab\r\n",
        b"ms e1 2 Tx\r\nab\r\n",
        b"ms e1 2 Cx\r\nab\r\n",
        b"ms e1 2 Tx Fx\r\nab\r\n",
        b"ms e1 2 " + O33 + b"\r\nab\r\n",
        b"ms e1 2 O" + b"1" * 31 + b"\r\nab\r\n",
        b"ms e1 2 q q\r\nab\r\n",
        b"ms e1 2 zz\r\nab\r\n",
        b"ms e1 2 v\r\nab\r\n",
        b"ms e1 2 b\r\nab\r\n",
        b"ms e1 2 " + b" ".join(b"%d" % i for i in range(17)) + b"\r\nab\r\n",
        b"ms e1 2 a b c d e f g h i j k l m n o p\r\nab\r\n",
        b"ms e1 2\r\nabc\r\n",
        b"ms e1 2 q\r\nabc\r\n",
        b"ms " + b"k" * 251 + b" 2\r\nab\r\n",
        b"set e2 0 0 1\r\nx\r\n",
        b"ms e2 2000000 q\r\n" + b"x" * 2_000_000 + b"\r\n",
        b"mg e2 v\r\n",
        b"ms e3 1048400 F1 T5\r\n" + b"x" * 1048400 + b"\r\n",
        b"mg e3 s\r\n",
        b"ms e3 2000000 MX\r\n" + b"x" * 2_000_000 + b"\r\n",
        b"mg e3 s\r\n",
    ),
    "md": lines(
        b"ms d1 2\r\nhi\r\n",
        b"md d1 q\r\n",
        b"md d1 q\r\n",
        b"md d1 k O1\r\n",
        b"md d1 C5\r\n",
        b"ms d1 2 T100\r\nhi\r\n",
        b"md d1 C0 k\r\n",
        b"md d1 I T30 q\r\n",
        b"mg d1 v t c\r\n",
        b"md d1\r\n",
        b"mg d1 v\r\n",
        b"md\r\n",
        b"md d1 q q\r\n",
        b"md d1 z\r\n",
        b"md d1 Tx I\r\n",
        b"md d1 b\r\n",
        b"md d1 " + O33 + b"\r\n",
        b"md d1 " + b" ".join(b"%d" % i for i in range(18)) + b"\r\n",
    ),
    "ma": lines(
        b"ma c1\r\n",
        b"ma c1 q\r\n",
        b"ma c1 N0 J10\r\n",
        b"ma c2 N0 J10 q\r\n",
        b"ma c2 q\r\n",
        b"ma c2 v\r\n",
        b"ma c2 q v\r\n",
        b"ma c2 v c t k O5 T0 D5\r\n",
        b"ma c2 MD D100 v\r\n",
        b"ma c2 M- v\r\n",
        b"ma c2 M+ v\r\n",
        b"ma c2 MI v\r\n",
        b"ma c2 Mx v\r\n",
        b"ma c2 MII v\r\n",
        b"ma c2 Dx\r\n",
        b"ma c2 D-1\r\n",
        b"ma c2 J-1\r\n",
        b"ma c2 Jx N0\r\n",
        b"ma c2 C1 v\r\n",
        b"ma c2 C0 v\r\n",
        b"ma c2 v D18446744073709551615\r\n",
        b"ma c2 v D2\r\n",
        b"ma c3 N3000 J5 v t c\r\n",
        b"ma c3 v t T0\r\n",
        b"ma c3 v t T-1\r\n",
        b"ma c3 v\r\n",
        b"ma c4 N0 J18446744073709551615 v\r\n",
        b"ma c4 v\r\n",
        b"ms c5 3\r\n100\r\n",
        b"ma c5 MD D95 v\r\n",
        b"mg c5 v s\r\n",
        b"ma c5 D1000 v\r\n",
        b"mg c5 v s\r\n",
        b"ms c6 2\r\nab\r\n",
        b"ma c6 v\r\n",
        b"ma c6 q q\r\n",
        b"ma c6 " + O33 + b"\r\n",
        b"ma c7 " + O33 + b"\r\n",
        b"ma c8 k O1 N0 q\r\n",
        b"ma c8 " + O33 + b" v\r\n",
        b"mg c8 v\r\n",
        b"incr c8 1\r\n",
        b"ma\r\n",
    ),
    # memcached's do_add_delta checks, in its order: missing, empty value, CAS, then the
    # number (an empty value is non-numeric even when the CAS does not match).
    "ma check order": lines(
        b"set e1 0 0 0\r\n\r\n",
        b"ma e1 C999\r\n",
        b"ma e1 C1 v\r\n",
        b"ma e1 C0 v\r\n",
        b"ma e1 N0 J5 v\r\n",
        b"incr e1 1\r\n",
        b"ma e2 C1\r\n",
        b"ma e2 C1 N0 J7 v t\r\n",
        b"ma e2 C1 v\r\n",
        b"ms e3 2\r\nab\r\n",
        b"ma e3 C1 v\r\n",
        b"ma e3 C0 v\r\n",
        b"ma e3 v\r\n",
        b"ms e4 20\r\n18446744073709551615\r\n",
        b"ma e4 C1 v\r\n",
        b"ma e4 v c\r\n",
        b"ma e4 MD v\r\n",
        b"ms e5 1\r\n5\r\n",
        b"ma e5 MD D9 v\r\n",
        b"ma e5 D99999 v t T100\r\n",
        b"ma e5 v t\r\n",
    ),
    "base64 keys": lines(
        b"ms Zm9v 2 b\r\nhi\r\n",
        b"mg foo k v\r\n",
        b"mg Zm9v b k v\r\n",
        b"get foo\r\n",
        b"me foo\r\n",
        b"me Zm9v b\r\n",
        b"mg Zm9v= b k v\r\n",
        b"mg Zm9 b k v\r\n",
        b"mg !!!! b k v\r\n",
        b"mg Zm9vYg b k v\r\n",
        b"mg Zm9vYg== b k v\r\n",
        b"mg Zm9v! b k v\r\n",
        b"mg bWlzcw== b k O9\r\n",
        b"ms Zm9v 2 b MA k\r\nhi\r\n",
        b"mg foo k v\r\n",
        b"ma YjJz b v k N0\r\n",
        b"md YjJz b k q\r\n",
        b"md YjJz b k\r\n",
        b"me nokey6 b\r\n",
        b"me bad! b\r\n",
        b"me foo b c\r\n",
        b"set foo 0 0 1\r\nx\r\n",
        b"mg foo k v\r\n",
    ),
    "me": lines(
        b"me\r\n",
        b"ms m1 1 T1000\r\nx\r\n",
        b"me m1\r\n",
        b"mg m1 v\r\n",
        b"me m1\r\n",
        *(
            b"ms mb%d %d F1\r\n%s\r\nme mb%d\r\n" % (n, n, b"x" * n, n)
            for n in (1, 30, 100, 200, 500, 1000, 5000, 20000, 100000, 600000, 1000000)
        ),
    ),
    "quiet pipeline": lines(
        b"ms qa 1 q\r\nx\r\nms qb 2 q\r\nyy\r\n",
        b"mg qa v k q O1\r\nmg qzz v k q O2\r\nmg qb v k q O3\r\n",
        b"md qzz q O4\r\nmd qa q O5\r\nms qb 1 q C0\r\nz\r\nma qzz q\r\n",
        b"mn\r\n",
        b"mn with args\r\n",
        b"mg qa q k\r\n",
    ),
    "classic and meta share items": lines(
        b"set s1 5 0 2\r\nhi\r\n",
        b"mg s1 h f v\r\n",
        b"get s1\r\n",
        b"mg s1 h\r\n",
        b"ms s2 2\r\nhi\r\n",
        b"touch s2 100\r\n",
        b"mg s2 h t\r\n",
        b"ms s3 2\r\nhi\r\n",
        b"gat 100 s3\r\n",
        b"mg s3 h t\r\n",
        b"ms s4 2\r\n10\r\n",
        b"md s4 I\r\n",
        b"incr s4 1\r\n",
        b"mg s4 v\r\n",
        b"incr s4 100\r\n",
        b"mg s4 v\r\n",
        b"mg  s4   v  \r\n",
        b"mg s4 v\x00 junk\r\n",
        b"ms \x01\xff 1\r\nx\r\n",
        b"mg \x01\xff v k\r\n",
        b"gets s1 s2\r\n",
        b"delete s1\r\n",
        b"mg s1 v\r\n",
    ),
}


@pytest.mark.parametrize("name", list(SCRIPTED))
def test_scripted(peers: list[Peer], name: str) -> None:
    compare(peers, SCRIPTED[name] + probe())


class MetaTraffic:
    """Seeded random meta (and some classic) commands over a small key space."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def key(self) -> tuple[bytes, bytes, bytes]:
        """(key as sent, the key, the b flag or nothing)."""
        rng = self.rng
        if rng.random() < 0.2:
            key = rng.choice(BINARY_KEYS)
            return base64.b64encode(key), key, b" b"
        key = rng.choice(PLAIN_KEYS)
        return key, key, b""

    def data(self) -> bytes:
        rng = self.rng
        if rng.random() < 0.3:
            return rng.choice(COUNTERS)
        return bytes(rng.choice(DATA_ALPHABET[:13]) for _ in range(rng.randrange(0, 12)))

    def flags(self, pool: list[bytes], most: int = 5) -> list[bytes]:
        rng = self.rng
        chosen = rng.sample(pool, rng.randrange(0, min(most, len(pool)) + 1))
        if rng.random() < 0.04:
            chosen.append(rng.choice([b"zz", b"v", b"k", b"Tx", b"S", b"Y", O33]))
        return chosen

    def command(self, first: bool) -> list[Part]:
        """One command; arithmetic only as the ``first`` of a batch (see ``batch``)."""
        rng = self.rng
        sent, key, b = self.key()
        weights = [30, 25, 10, 15 if first else 0, 12, 3]
        kind = rng.choices(["mg", "ms", "md", "ma", "classic", "misc"], weights)[0]
        opaque = [rng.choice(OPAQUES)] if rng.random() < 0.2 else []
        cas: list[Part] = []
        if rng.random() < 0.2:
            cas = [b" C", CasRef(key)] if rng.random() < 0.8 else [b" C0"]
        if kind == "mg":
            pool = [b"v", b"k", b"c", b"f", b"s", b"t", b"h", b"l", b"q", b"u"]
            pool += [b"T" + rng.choice(TTLS), b"N" + rng.choice(TTLS), rng.choice(RECACHE)]
            tokens = self.flags(pool) + opaque
            rng.shuffle(tokens)
            return [b"mg " + sent + b + b"".join(b" " + t for t in tokens) + b"\r\n"]
        if kind == "ms":
            data = self.data()
            pool = [b"q", b"k", b"c", b"I", b"T" + rng.choice(TTLS), b"F%d" % rng.choice([0, 1, 7])]
            if rng.random() < 0.5:
                pool.append(b"M" + rng.choice([b"S", b"E", b"A", b"P", b"R", b"X"]))
            tokens = self.flags(pool) + opaque
            rng.shuffle(tokens)
            line: list[Part] = [b"ms " + sent + b" %d" % len(data) + b]
            line += [b"".join(b" " + t for t in tokens), *cas, b"\r\n" + data + b"\r\n"]
            return line
        if kind == "md":
            tokens = self.flags([b"q", b"I", b"k", b"T" + rng.choice(TTLS)]) + opaque
            rng.shuffle(tokens)
            return [b"md " + sent + b + b"".join(b" " + t for t in tokens), *cas, b"\r\n"]
        if kind == "ma":
            pool = [b"q", b"v", b"t", b"c", b"k", b"N" + rng.choice(TTLS), b"T" + rng.choice(TTLS)]
            pool += [b"J%d" % rng.choice([0, 5, 99]), b"D%d" % rng.choice([0, 1, 7, 1000])]
            pool.append(b"M" + rng.choice([b"I", b"D", b"+", b"-", b"x"]))
            tokens = self.flags(pool) + opaque
            rng.shuffle(tokens)
            return [b"ma " + sent + b + b"".join(b" " + t for t in tokens), *cas, b"\r\n"]
        if kind == "classic":
            if b:
                key = rng.choice(PLAIN_KEYS)
            data = self.data()
            return [
                rng.choice(
                    [
                        b"set %b 3 0 %d\r\n%b\r\n" % (key, len(data), data),
                        b"append %b 0 0 %d\r\n%b\r\n" % (key, len(data), data),
                        b"gets %b\r\n" % key,
                        b"get %b\r\n" % key,
                        b"incr %b 3\r\n" % key if first else b"get %b\r\n" % key,
                        b"delete %b\r\n" % key,
                        b"touch %b 1000\r\n" % key,
                    ]
                )
            ]
        return [rng.choice([b"mn\r\n", b"me " + sent + b + b"\r\n", b"mx " + sent + b"\r\n"])]

    def batch(self) -> list[list[Part]]:
        """1-12 commands. memcached rewrites a counter in place only while no reply queued
        on the connection still references the item (a fetch earlier in the same pipeline
        does), so whether an incr pads and keeps the item's fetched bit depends on socket
        timing there; arithmetic therefore only opens a batch, when nothing is queued."""
        return [self.command(i == 0) for i in range(self.rng.randrange(1, 13))]


@pytest.mark.parametrize("seed", SEEDS)
def test_random_traffic(peers: list[Peer], seed: int) -> None:
    traffic = MetaTraffic(seed)
    for i in range(BATCHES):
        commands = traffic.batch()
        compare(
            peers, commands + probe(), rng_seed=seed * 1000 + i, cuts=traffic.rng.randrange(0, 4)
        )
