"""Traffic for the differential test: the same bytes to memcached and petracache.

Strategy: a seeded generator writes batches of classic text commands, valid and malformed,
and each batch is sent to both servers over one long-lived connection per server, followed
by a ``gets`` of every key (so a silent divergence, say a ``noreply`` store that only one
server made, shows in the batch that caused it) and a *fence* (``set __fence`` +
``get __fence``) whose reply marks the end of the batch's replies. The replies are
normalised (CAS uniques become ordinals in order of first appearance on that connection, the
version string becomes ``X``) and compared byte for byte.

Invariants that keep both servers in lock-step:

* Every storage command line is followed by exactly as many data bytes as the length the
  generator wrote (plus 2), whether or not the server will accept the line. A rejected line's
  data is then run as commands; data bytes are drawn so that every such line starts with a
  byte that is not a command name (digits, ``x``/``y``/``z``, spaces, tabs, NUL), so no data
  byte ever swallows the fence.
* Nothing depends on timing: TTLs are 0, 1000 s or more, or already expired; no line is long
  enough (without its newline) to trip memcached's 2048-byte rule; no quit, no
  ``cache_memlimit``, no ``stats`` values, no ``flush_all`` at an absolute time.
* ``cas`` commands name a CAS unique by reference ("the latest one this connection saw for
  this key", "an older one"), rendered per server from that server's own replies.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from tests.harness import Address, FencedClient

FENCE = b"set __fence 0 0 5\r\nFENCE\r\nget __fence\r\n"
FENCE_REPLY = b"STORED\r\nVALUE __fence 0 5\r\nFENCE\r\nEND\r\n"
LARGEST_ITEM_1B_KEY = 1048516  # largest value memcached -I 1m takes with a 1-byte key, flags 0

KEYS = [b"a", b"b", b"c", b"num", b"k:1", b"t\tab", b"\xc3\xa9", b"\x01ctl", b"L" * 250]
LONG_KEY = b"L" * 251
STATE_PROBE = b"gets zz " + b" ".join(KEYS) + b"\r\n"  # after every batch: state must match too
FLAG_TOKENS = [
    b"0", b"1", b"7", b"+5", b"-0", b"4294967295", b"4294967296", b"4294967297",
    b"18446744073709551615", b"18446744073709551616", b"-1", b"1x", b"1.5", b"abc", b"0x10",
    b"00012", b"3\t",
]  # fmt: skip
EXPTIME_TOKENS = [
    b"0", b"1000", b"-1", b"2592000", b"2592001", b"4294967295", b"2147483648", b"+1000",
    b"-0", b"abc", b"1x", b"1.5", b"1000\t", b"-2147483649", b"9223372036854775808",
]  # fmt: skip
DELTA_TOKENS = [
    b"1", b"0", b"5", b"18446744073709551615", b"18446744073709551616", b"-1", b"abc",
    b"+3", b"1x", b"007", b"-0", b"2\t",
]  # fmt: skip
# No stored value reaches 2**63: for those, memcached's safe_strtoull looks for a '-' with
# strchr(), which runs past the item's data into whatever memory follows it, so incr answers
# "non-numeric" or not depending on memcached's heap (seen 4 times in about 100,000 random
# commands; replaying the batch never reproduced it). The scripted cases cover 2**64 - 1.
NUMERIC_VALUES = [
    b"0", b"1", b"9", b"99", b"100", b"9223372036854775807",
    b" 1", b"1 2", b"12 ab", b"12ab", b"", b"-1", b"0x1", b"007", b"1\x002", b"\t5",
    b"18446744073709551616",
]  # fmt: skip
LEADING_NUMBER = re.compile(rb"[ \t]*(\d+)")
SAFE_FIRST = b"xyz0123456789"
SAFE_BODY = b"xyz0123456789 \t"


@dataclass(frozen=True)
class CasRef:
    """A CAS unique named by reference: ``age`` 0 is the latest seen for ``key``."""

    key: bytes
    age: int


Part = bytes | CasRef


@dataclass
class Batch:
    """Commands (each a list of parts) and how to cut the rendered bytes into sends."""

    commands: list[list[Part]]
    cuts: int = 0
    pause: bool = False


class Generator:
    """Seeded random classic-protocol traffic (see the module comment for its rules)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.count = 0
        self.fragile = False  # the batch being built holds a get with a too-long key
        choices: list[tuple[int, Callable[[], list[Part]]]] = [
            (30, self.storage),
            (22, self.retrieval),
            (8, self.delete),
            (10, self.arithmetic),
            (5, self.touch),
            (1, self.flush_all),
            (2, self.misc),
            (3, self.garbage),
        ]
        self._weights = [w for w, _ in choices]
        self._makers = [m for _, m in choices]

    # -- building blocks ----------------------------------------------------------------

    def key(self) -> bytes:
        r = self.rng.random()
        if r < 0.02:
            return LONG_KEY
        if r < 0.03:
            return b"a\x00b"
        return self.rng.choice(KEYS)

    def line(self, tokens: list[bytes]) -> bytes:
        """Join tokens like a client would, sometimes with odd spacing and line endings."""
        rng = self.rng
        if rng.random() < 0.06:
            text = b"".join(t + b" " * rng.randint(1, 3) for t in tokens)
            text = b" " * rng.randint(0, 3) + text
        else:
            text = b" ".join(tokens)
        r = rng.random()
        ending = b"\r\n" if r < 0.9 else b"\n" if r < 0.97 else b"\r\r\n"
        return text + ending

    def data(self) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.35:
            return rng.choice(NUMERIC_VALUES)
        if r < 0.4:
            return b""
        size = rng.randint(1000, 6000) if r < 0.45 else rng.randint(1, 40)
        body = bytes(rng.choice(SAFE_BODY) for _ in range(size - 1))
        out = bytes([rng.choice(SAFE_FIRST)]) + body
        if rng.random() < 0.05:
            cut = rng.randint(0, len(out))
            out = out[:cut] + b"\r\n" + bytes([rng.choice(SAFE_FIRST)]) + out[cut:]
        if rng.random() < 0.03:
            out += b"\x00" + b"9"
        lead = LEADING_NUMBER.match(out)
        if lead and len(lead.group(1)) > 18:  # keep incr's number below 2**63 (see above)
            cut = lead.start(1) + 10
            out = out[:cut] + b"x" + out[cut + 1 :]
        return out

    def noreply(self, tokens: list[bytes]) -> list[bytes]:
        r = self.rng.random()
        if r < 0.15:
            return [*tokens, b"noreply"]
        if r < 0.18:
            return [*tokens, self.rng.choice([b"garbage", b"NOREPLY", b"noreply2"])]
        return tokens

    # -- commands --------------------------------------------------------------------------

    def storage(self) -> list[Part]:
        rng = self.rng
        verb = rng.choice([b"set"] * 4 + [b"add", b"replace", b"append", b"prepend", b"cas"])
        key = self.key()
        flags = b"0" if rng.random() < 0.6 else rng.choice(FLAG_TOKENS)
        exptime = b"0" if rng.random() < 0.7 else rng.choice(EXPTIME_TOKENS)
        data = self.data()
        n = len(data)
        # A long data block must never run as a command line (see the module comment).
        big = n > 1000
        if big:
            key = rng.choice(KEYS)
            flags = rng.choice([b"0", b"1", b"+5", b"4294967296"])
            exptime = rng.choice([b"0", b"1000", b"-1"])
        r = rng.random()
        if r < 0.02:  # the item-size boundary
            k = rng.choice([b"a", b"bb", b"L" * 250])
            fl = rng.choice([b"0", b"1"])
            limit = LARGEST_ITEM_1B_KEY - (len(k) - 1) - (4 if fl != b"0" else 0)
            n = limit + rng.choice([-1, 0, 1, 2])
            key, flags, verb = k, fl, rng.choice([b"set", b"set", b"add", b"append"])
            exptime, big = b"0", True
            data = b"9" * n
            length = b"%d" % n
        elif r < 0.025:
            n = rng.choice([2_000_000, 1_100_000])
            key, flags, exptime, big = b"b", b"0", b"0", True
            data = b"9" * n
            length = b"%d" % n
        elif r < 0.1 and not big:
            length, n = rng.choice(
                [
                    (b"+%d" % n, n),
                    (b"%d\t" % n, n),
                    (b"00%d" % n, n),
                    (b"%d" % (n + (1 << 32)), n),
                    (b"-0", 0),
                    (b"-1", n),
                    (b"abc", n),
                    (b"1.5", n),
                    (b"4294967295", n),
                    (b"2147483648", n),
                    (b"2147483646", n),
                ]
            )
            data = data[:n] if len(data) >= n else data + b"x" * (n - len(data))
        else:
            length = b"%d" % n
        line_tokens: list[bytes] = [verb, key, flags, exptime, length]
        cas_part: Part | None = None
        if verb == b"cas":
            r = rng.random()
            if r < 0.6 or big:
                cas_part = CasRef(key, 0)
            elif r < 0.75:
                cas_part = CasRef(key, 1)
            else:
                cas_part = rng.choice(
                    [b"0", b"18446744073709551615", b"abc", b"-1", b"18446744073709551616"]
                )
        extra = [b"noreply"] if big and rng.random() < 0.2 else [] if big else self.noreply([])
        if rng.random() < 0.02 and not big:
            extra = [*extra, b"extra", b"tokens"]
        if rng.random() < 0.01 and not big:
            line_tokens = line_tokens[: rng.randint(1, 4)]
            cas_part = None
            extra = []
        parts: list[Part] = [b" ".join(line_tokens)]
        if cas_part is not None:
            parts += [b" ", cas_part]
        if extra:
            parts.append(b" " + b" ".join(extra))
        r = rng.random()
        parts.append(b"\r\n" if r < 0.92 else b"\n" if r < 0.98 else b"\r\r\n")
        r = rng.random()
        if r < 0.03:  # bad data chunk: n + 2 bytes that do not end in \r\n
            parts.append(data + rng.choice([b"xy", b"\n\n", b"\rx", b"9\r"]) + b"\r\n")
        elif r < 0.04:
            parts.append(data + b"\n")  # short by one: takes the next command's first byte
            parts.append(b"x\r\n")
        else:
            parts.append(data + b"\r\n")
        return parts

    def retrieval(self) -> list[Part]:
        rng = self.rng
        verb = rng.choice([b"get", b"get", b"gets", b"gets", b"bget", b"gat", b"gats"])
        nkeys = rng.choice([0, 1, 1, 1, 2, 3, 5, 30])
        keys = [self.key() for _ in range(nkeys)]
        tokens = [verb]
        if verb.startswith(b"gat"):
            tokens.append(b"1000" if rng.random() < 0.6 else rng.choice(EXPTIME_TOKENS))
        line = self.line(tokens + keys)
        text = line[:-2] if line.endswith(b"\r\n") else line[:-1]  # what memcached tokenizes
        if any(len(token) > 250 for token in text.split(b" ")):  # "\r\r\n" lengthens a key
            self.fragile = True
        if len(line) > 2000 and verb not in (b"get", b"gets"):
            # Only get/gets lines may pass 2048 bytes before their newline arrives: a split
            # long gat or bget line would close the connection, depending on read timing.
            self.fragile = True
        return [line]

    def delete(self) -> list[Part]:
        rng = self.rng
        key = self.key()
        form = rng.choice(
            [
                [key],
                [key],
                [key, b"noreply"],
                [key, b"0"],
                [key, b"0", b"noreply"],
                [key, b"foo"],
                [key, b"noreply", b"0"],
                [key, b"0", b"0"],
                [],
                [key, b"a", b"b", b"c"],
            ]
        )
        return [self.line([b"delete", *form])]

    def arithmetic(self) -> list[Part]:
        rng = self.rng
        verb = rng.choice([b"incr", b"decr"])
        key = rng.choice([b"num", b"num", b"a", b"b", b"zz", self.key()])
        delta = b"1" if rng.random() < 0.4 else rng.choice(DELTA_TOKENS)
        tokens = self.noreply([verb, key, delta])
        if rng.random() < 0.03:
            tokens = tokens[:2]
        # memcached rewrites a shorter result in place, space-padded, only while no other
        # thread holds the item (refcount == 2); its LRU crawler sometimes does, and then the
        # item is replaced unpadded. The reply is deterministic, the stored bytes are not, so
        # the key gets a fresh value straight after (the scripted cases check the padding).
        value = rng.choice(NUMERIC_VALUES)
        reset = b"set %s 0 0 %d noreply\r\n%s\r\n" % (key, len(value), value)
        if key == LONG_KEY or b"\x00" in key:
            reset = b""
        return [self.line(tokens), reset]

    def touch(self) -> list[Part]:
        rng = self.rng
        exptime = b"1000" if rng.random() < 0.5 else rng.choice(EXPTIME_TOKENS)
        tokens = self.noreply([b"touch", self.key(), exptime])
        if rng.random() < 0.05:
            tokens = tokens[:2]
        return [self.line(tokens)]

    def flush_all(self) -> list[Part]:
        form = self.rng.choice(
            [
                b"flush_all",
                b"flush_all 0",
                b"flush_all -1",
                b"flush_all noreply",
                b"flush_all 0 noreply",
                b"flush_all abc",
                b"flush_all abc noreply",
                b"flush_all 1 2 3",
                b"flush_all 1000",
                b"flush_all 1000 noreply",
            ]
        )
        return [form + b"\r\n"]

    def misc(self) -> list[Part]:
        form = self.rng.choice(
            [
                b"version",
                b"version foo",
                b"verbosity",
                b"verbosity 1",
                b"verbosity 0 noreply",
                b"verbosity abc",
                b"verbosity 1 2 3",
                b"stats reset",
                b"stats nonsense",
                b"stats detail",
                b"stats detail off",
                b"shutdown",
            ]
        )
        return [self.line(form.split(b" "))]

    def garbage(self) -> list[Part]:
        rng = self.rng
        form = rng.choice(
            [
                b"",
                b"   ",
                b"GET a",
                b"foo bar",
                b"x",
                b"gets",
                b"get",
                b"set a 0 0",
                b"cas a 0 0 1",
                b"incr",
                b"touch a",
                b"g" * 300,
                b"get " + b"k" * 30 + b" " + b"a" * 20,
                b"set " + b" ".join(b"t%d" % i for i in range(30)),
                b"\x00get a",
                b"get a\x00b",
                b"\x00",
                b"\xff\xfe",
                b"\t",
            ]
        )
        return [form + rng.choice([b"\r\n", b"\n"])]

    def command(self) -> list[Part]:
        self.count += 1
        maker = self.rng.choices(self._makers, self._weights)[0]
        return maker()

    def batch(self, size: int) -> Batch:
        """``size`` commands and a random way to cut them into sends.

        A get with a too-long key drops the replies memcached has not flushed yet, and where
        it flushes depends on how its reads cut the input. A batch holding one is therefore
        sent whole and kept small (one read on both servers).
        """
        rng = self.rng
        self.fragile = False
        commands = [self.command() for _ in range(size)]
        cuts = 0 if rng.random() < 0.5 else rng.randint(1, 12)
        if self.fragile:
            commands = [c for c in commands if _size(c) < 512]
            return Batch(commands)
        return Batch(commands, cuts, pause=rng.random() < 0.1)


class Peer(FencedClient):
    """One connection to one server, with its CAS history for rendering ``CasRef``."""

    def __init__(self, port: Address, name: str, timeout: float = 10.0) -> None:
        super().__init__(port, name, timeout)
        self.seen: dict[bytes, list[int]] = {}

    def render(self, parts: list[Part]) -> bytes:
        out = []
        for part in parts:
            if isinstance(part, CasRef):
                history = self.seen.get(part.key, [])
                cas = history[-1 - part.age] if len(history) > part.age else 0
                out.append(b"%d" % cas)
            else:
                out.append(part)
        return b"".join(out)

    def exchange(self, batch: Batch, rng: random.Random) -> bytes:
        """Send the batch and the fence; return the normalised replies up to the fence."""
        payload = b"".join(self.render(c) for c in batch.commands) + STATE_PROBE + FENCE
        points = sorted(rng.randrange(len(payload)) for _ in range(batch.cuts))
        self.send_in_pieces(payload, points, pause=0.001 if batch.pause else 0.0)
        return self.normalise(self.read_to_fence(FENCE_REPLY))

    def normalise(self, raw: bytes) -> bytes:
        """Replace CAS uniques by ordinals and the version by ``X``; learn CAS history."""
        out: list[bytes] = []
        pos = 0
        while pos < len(raw):
            end = raw.find(b"\r\n", pos)
            if end < 0:
                out.append(raw[pos:])
                break
            line = raw[pos:end]
            pos = end + 2
            if line.startswith(b"VERSION "):
                out.append(b"VERSION X\r\n")
                continue
            if not line.startswith(b"VALUE "):
                out.append(line + b"\r\n")
                continue
            fields = line.split(b" ")  # VALUE <key> <flags> <bytes> [<cas>]; keys hold no spaces
            nbytes = int(fields[3])
            if len(fields) == 5:
                cas = int(fields[4])
                self.seen.setdefault(fields[1], []).append(cas)
                line = b" ".join(fields[:4]) + b" C%d" % self.ordinal(cas)
            out.append(line + b"\r\n" + raw[pos : pos + nbytes + 2])
            pos += nbytes + 2
        return b"".join(out)


def _size(command: list[Part]) -> int:
    return sum(len(p) if isinstance(p, bytes) else 20 for p in command)
