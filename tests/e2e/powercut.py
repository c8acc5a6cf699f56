"""Mixed write load with a model of what the server acknowledged, for the power-cut tests.

Each ``Writer`` thread owns its keys and runs one request at a time, checking every reply
against its ``KeyModel`` and keeping, for every key, the last acknowledged state (value,
flags, whether it has a TTL), the CAS it last saw, every state it was ever acknowledged in
(``history``), and the states it may be in if the request in flight at the cut was applied
without its reply arriving (``pending``). ``flush_all`` runs now and then, alone: writers
hold a shared ``Gate`` around each request, and a flush holds it exclusively.

``check`` compares the server after a restart with the models: under ``durability =
"fsync"`` every key must hold its acknowledged state or a pending one, with the same CAS
(or a larger one after a pending write); under ``wal`` any state it ever held (a power cut
may take the latest writes back), and ``check`` counts the acknowledged writes lost. Either
way a new write must get a CAS above every CAS handed out before the cut.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from tests.harness import PetracacheProcess, RawClient

LONG_TTL = 1_000_000  # seconds: a TTL that does not expire during a test
State = tuple[bytes, int, bool] | None  # (value, flags, has a TTL), or absent


@dataclass
class KeyModel:
    acked: State = None
    cas: int = 0  # the CAS of the acked state, when a gets saw it (0: not seen)
    pending: list[State] = field(default_factory=list)
    history: list[State] = field(default_factory=lambda: [None])
    log: list[str] = field(default_factory=list)  # the last requests, for a failure's message

    def note(self, what: str) -> None:
        self.log = [*self.log[-11:], what]


class Gate:
    """Many requests at once, or one flush_all alone (a readers-writer lock)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._flushing = False

    def enter(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._flushing)
            self._active += 1

    def leave(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def enter_alone(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._flushing)
            self._flushing = True
            self._cond.wait_for(lambda: self._active == 0)

    def leave_alone(self) -> None:
        with self._cond:
            self._flushing = False
            self._cond.notify_all()


def read_item(client: RawClient, key: bytes) -> tuple[State, int]:
    """The key's state and CAS, with meta get (``mg key v f c t``); (None, 0) on a miss."""
    client.send(b"mg " + key + b" v f c t\r\n")
    line = client.read_line()
    if line == b"EN\r\n":
        return None, 0
    parts = line.split()
    assert parts[0] == b"VA", line
    data = client.read_exact(int(parts[1]) + 2)[:-2]
    tokens = {p[:1]: p[1:] for p in parts[2:]}
    return (data, int(tokens[b"f"]), int(tokens[b"t"]) != -1), int(tokens[b"c"])


class Writer(threading.Thread):
    """One connection writing its own keys until the server dies (or ``stop`` is set).

    Args:
        flush_chance: the probability that a request is a ``flush_all`` (which empties
            every writer's keys, so ``every_key`` holds all of them).
    """

    def __init__(
        self,
        cid: int,
        port: int,
        keys: dict[bytes, KeyModel],
        every_key: dict[bytes, KeyModel],
        gate: Gate,
        seed: int,
        flush_chance: float = 0.005,
    ) -> None:
        super().__init__(daemon=True)
        self.cid = cid
        self.port = port
        self.keys = keys
        self.every_key = every_key
        self.gate = gate
        self.rng = random.Random(seed)
        self.flush_chance = flush_chance
        self.stop = threading.Event()
        self.seq = 0
        self.acked_writes = 0
        self.max_cas = 0

    def run(self) -> None:
        try:
            client = RawClient(self.port, timeout=10)
            names = list(self.keys)
            while not self.stop.is_set():
                if self.rng.random() < self.flush_chance:
                    self._flush_all(client)
                    continue
                key = self.rng.choice(names)
                self.gate.enter()
                try:
                    self._write(client, key, self.keys[key])
                finally:
                    self.gate.leave()
        except OSError:  # ConnectionError and friends: the server died (or closed us)
            return

    @staticmethod
    def _in_flight(model: KeyModel, *states: State) -> None:
        """A request that may be applied without its reply arriving. The possible states
        add up: a flush_all cut in flight may be followed by the key's own request, sent
        to a server already dead (or the other way round)."""
        model.pending = [*model.pending, *states]

    def _acked(self, model: KeyModel, state: State) -> None:
        model.note(f"acked {state!r}"[:80])
        model.acked = state
        model.history.append(state)
        model.pending = []
        model.cas = 0
        self.acked_writes += 1

    def _flush_all(self, client: RawClient) -> None:
        self.gate.enter_alone()
        try:
            for model in self.every_key.values():
                self._in_flight(model, None)
                model.note(f"flush_all by writer {self.cid}")
            client.send(b"flush_all\r\n")
            assert client.read_line() == b"OK\r\n"
            for model in self.every_key.values():
                model.acked = None
                model.history.append(None)
                model.pending = []
                model.cas = 0
            self.acked_writes += 1
        finally:
            self.gate.leave_alone()

    def _gets_cas(self, client: RawClient, key: bytes, model: KeyModel) -> int:
        state, cas = read_item(client, key)
        assert state == model.acked, (key, state, model.acked)
        self.max_cas = max(self.max_cas, cas)
        return cas

    def _write(self, client: RawClient, key: bytes, model: KeyModel) -> None:
        rng = self.rng
        self.seq += 1
        old = model.acked
        counter = key.startswith(b"n")
        value = b"%d" % rng.randrange(1000) if counter else b"c%d-%d" % (self.cid, self.seq)
        flags = rng.randrange(1 << 32)
        ttl = rng.random() < 0.3
        exptime = LONG_TTL if ttl else 0
        ops = ["set", "delete", "incr", "cas", "touch"]
        if not counter:
            ops = ["set", "set", "add", "append", "prepend", "delete", "cas", "touch"]
        op = rng.choice(ops)
        model.note(f"{op} seq {self.seq} value {value[:12]!r} flags {flags} ttl {ttl}")
        if op == "delete":
            self._in_flight(model, None)
            client.send(b"delete " + key + b"\r\n")
            expect = b"DELETED\r\n" if old is not None else b"NOT_FOUND\r\n"
            assert client.read_line() == expect
            self._acked(model, None)
        elif op == "touch":
            how = rng.choice([0, LONG_TTL, -1])  # no TTL, a long one, or expire it now
            model.note(f"touch {how}")
            new: State = None if old is None or how < 0 else (old[0], old[1], how > 0)
            self._in_flight(model, new)
            client.send(b"touch %s %d\r\n" % (key, how))
            assert client.read_line() == (b"TOUCHED\r\n" if old is not None else b"NOT_FOUND\r\n")
            self._acked(model, new)
        elif op == "incr":
            if old is None:
                return
            number = int(old[0]) + 7
            new = (b"%d" % number, old[1], old[2])
            self._in_flight(model, new)
            client.send(b"incr " + key + b" 7\r\n")
            assert client.read_line() == b"%d\r\n" % number
            self._acked(model, new)
        elif op == "cas":
            if old is None:
                return
            cas = self._gets_cas(client, key, model)
            new = (value, flags, ttl)
            self._in_flight(model, new)
            client.send(
                b"cas %s %d %d %d %d\r\n%s\r\n" % (key, flags, exptime, len(value), cas, value)
            )
            assert client.read_line() == b"STORED\r\n"
            self._acked(model, new)
        else:
            self._store(client, key, model, op, value, flags, exptime)
        if rng.random() < 0.3:  # learn the CAS of the acknowledged state
            model.cas = self._gets_cas(client, key, model)

    def _store(
        self,
        client: RawClient,
        key: bytes,
        model: KeyModel,
        op: str,
        value: bytes,
        flags: int,
        exptime: int,
    ) -> None:
        old = model.acked
        new: State
        if op in ("append", "prepend"):  # they keep the item's flags and TTL
            joined = (old[0] + value if op == "append" else value + old[0]) if old else b""
            new = None if old is None else (joined, old[1], old[2])
        elif op == "add" and old is not None:
            new = old
        else:
            new = (value, flags, exptime != 0)
        stored = new is not None and (op != "add" or old is None)
        # An add also stores if a flush_all in flight emptied the key first.
        self._in_flight(model, new, *([(value, flags, exptime != 0)] if op == "add" else []))
        client.send(
            b"%s %s %d %d %d\r\n%s\r\n" % (op.encode(), key, flags, exptime, len(value), value)
        )
        assert client.read_line() == (b"STORED\r\n" if stored else b"NOT_STORED\r\n")
        if stored:
            self._acked(model, new)
        else:
            model.pending = []


@dataclass
class Outcome:
    """What ``check`` found: keys checked, acknowledged writes lost (``wal``), the largest CAS."""

    keys: int = 0
    lost_keys: int = 0
    lost_writes: int = 0
    max_cas: int = 0


def check(
    server: PetracacheProcess, models: dict[bytes, KeyModel], max_cas: int, *, exact: bool
) -> Outcome:
    """Compare the restarted server with ``models``, then adopt what it holds.

    Args:
        exact: ``fsync``'s promise: the acknowledged state or a pending one, CAS unchanged.
            Otherwise (``wal``) any state the key ever held; lost writes are counted.
    """
    client = server.client()
    out = Outcome()
    for key, model in models.items():
        state, cas = read_item(client, key)
        out.keys += 1
        out.max_cas = max(out.max_cas, cas)
        allowed = [model.acked, *model.pending]
        if exact:
            assert state in allowed, (key, state, cas, allowed, model.log)
            if state is not None and state == model.acked and not model.pending and model.cas:
                assert cas == model.cas, (key, cas, model.cas)
            elif state is not None:
                assert cas >= model.cas, (key, cas, model.cas)
        elif state not in allowed:
            assert state in model.history, (key, state, model.history)
            back = len(model.history) - 1 - model.history[::-1].index(state)
            out.lost_keys += 1
            out.lost_writes += len(model.history) - 1 - back
        model.note(f"after restart {server.starts}: {state!r} cas {cas}"[:80])
        model.acked = state
        model.history = [state]
        model.pending = []
        model.cas = cas if state is not None else 0
    # A write after the restart gets a CAS above every CAS handed out before the cut.
    probe = b"probe:%d" % server.starts
    client.send(b"set %s 0 0 1\r\nx\r\n" % probe)
    assert client.read_line() == b"STORED\r\n"
    _state, cas = read_item(client, probe)
    assert cas > max(max_cas, out.max_cas), (cas, max_cas, out.max_cas)
    client.send(b"delete " + probe + b"\r\n")
    assert client.read_line() == b"DELETED\r\n"
    client.close()
    out.max_cas = cas
    return out


def key_models(clients: int, keys_each: int) -> dict[int, dict[bytes, KeyModel]]:
    """Every writer's keys: a third counters (``n:``), the rest strings (``s:``)."""
    return {
        cid: {
            b"%s:%d:%d" % (b"n" if i % 3 == 0 else b"s", cid, i): KeyModel()
            for i in range(keys_each)
        }
        for cid in range(clients)
    }
