"""kill -9 during a mixed write load, ten times in a row, in the wal and fsync modes.

Each client thread owns its keys and runs one request at a time, keeping a model of what
the server acknowledged: for every key the last acknowledged (value, flags), the CAS it
last saw with ``gets`` and, at the moment of the kill, the one write that may have been
applied without its reply arriving. After each restart every key must hold the
acknowledged state or the in-flight one (so nothing acknowledged is lost and no key holds a
value that was never written), with the CAS it had (or a larger one, after the in-flight
write), and new CAS uniques must be larger than every CAS handed out before the crash.
The model then continues from what the server holds, and the next round begins.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import rocksdict

from petracache.storage import codec
from tests.harness import PetracacheProcess, RawClient

ROUNDS = 10
CLIENTS = 4
KEYS_PER_CLIENT = 6
State = tuple[bytes, int] | None  # (value, flags) or absent


@dataclass
class KeyModel:
    acked: State = None
    cas: int = 0  # CAS seen by the last gets of the acked state (0: not seen)
    pending: list[State] = field(default_factory=list)  # possible states if a write was cut


def _parse_gets(reply: bytes) -> tuple[bytes, int, int] | None:
    """(value, flags, cas) from a single-key ``gets`` reply, or None on a miss."""
    if reply == b"END\r\n":
        return None
    header, _, rest = reply.partition(b"\r\n")
    parts = header.split()
    assert parts[0] == b"VALUE", reply
    size = int(parts[3])
    return rest[:size], int(parts[2]), int(parts[4])


class Writer(threading.Thread):
    """One connection writing its own keys until the server dies."""

    def __init__(self, cid: int, port: int, keys: dict[bytes, KeyModel], seed: int) -> None:
        super().__init__(daemon=True)
        self.cid = cid
        self.port = port
        self.keys = keys
        self.rng = random.Random(seed)
        self.seq = 0
        self.acked_writes = 0
        self.max_cas = 0

    def _gets(self, client: RawClient, key: bytes) -> tuple[bytes, int, int] | None:
        client.send(b"gets " + key + b"\r\n")
        line = client.read_line()
        if line == b"END\r\n":
            return None
        size = int(line.split()[3])
        body = client.read_exact(size + 2)
        assert client.read_line() == b"END\r\n"
        found = _parse_gets(line + body + b"END\r\n")
        assert found is not None
        self.max_cas = max(self.max_cas, found[2])
        return found

    def _write(self, client: RawClient, key: bytes, model: KeyModel) -> None:
        rng = self.rng
        self.seq += 1
        value = b"c%d-%d" % (self.cid, self.seq)
        flags = rng.randrange(1 << 32)
        is_counter = key.startswith(b"n")
        op = rng.choice(
            ["set", "delete", "incr", "cas"]
            if is_counter
            else ["set", "set", "append", "prepend", "delete", "cas", "add"]
        )
        old = model.acked
        if is_counter:
            value = b"%d" % rng.randrange(1000)
        if op == "delete":
            model.pending = [None]
            client.send(b"delete " + key + b"\r\n")
            reply = client.read_line()
            assert reply == (b"DELETED\r\n" if old is not None else b"NOT_FOUND\r\n"), reply
        elif op == "incr":
            if old is None:
                return
            new_number = int(old[0]) + 7
            model.pending = [(b"%d" % new_number, old[1])]
            client.send(b"incr " + key + b" 7\r\n")
            assert client.read_line() == b"%d\r\n" % new_number
        elif op == "cas":
            found = self._gets(client, key)
            assert (found is None) == (old is None)
            if found is None:
                return
            assert (found[0], found[1]) == old
            model.pending = [(value, flags)]
            client.send(b"cas %s %d 0 %d %d\r\n%s\r\n" % (key, flags, len(value), found[2], value))
            assert client.read_line() == b"STORED\r\n"
        else:
            if op in ("append", "prepend"):
                new: State = (
                    None
                    if old is None
                    else ((old[0] + value, old[1]) if op == "append" else (value + old[0], old[1]))
                )
            elif op == "add":
                new = (value, flags) if old is None else old
            else:
                new = (value, flags)
            model.pending = [new]
            client.send(b"%s %s %d 0 %d\r\n%s\r\n" % (op.encode(), key, flags, len(value), value))
            expected = (
                b"STORED\r\n"
                if new is not None and (op != "add" or old is None)
                else (b"NOT_STORED\r\n")
            )
            assert client.read_line() == expected
        model.acked = model.pending[0]
        model.pending = []
        model.cas = 0
        self.acked_writes += 1
        if rng.random() < 0.3:  # learn the CAS of the acknowledged state
            found = self._gets(client, key)
            assert (found is None) == (model.acked is None)
            model.cas = found[2] if found is not None else 0

    def run(self) -> None:
        try:
            client = RawClient(self.port, timeout=10)
            names = list(self.keys)
            while True:
                key = self.rng.choice(names)
                self._write(client, key, self.keys[key])
        except OSError:  # ConnectionError and friends: the server was killed
            return


def _verify(server: PetracacheProcess, models: dict[bytes, KeyModel], max_cas: int) -> int:
    """Check every key against its model, then adopt the server's state; returns max CAS."""
    client = server.client()
    seen = 0
    for key, model in models.items():
        reply = client.call(b"gets " + key + b"\r\n")
        found = _parse_gets(reply)
        state: State = None if found is None else (found[0], found[1])
        allowed = [model.acked, *model.pending]
        assert state in allowed, (key, state, allowed)
        if found is not None:
            seen = max(seen, found[2])
            if state == model.acked and not model.pending and model.cas:
                assert found[2] == model.cas, (key, found[2], model.cas)
            else:
                assert found[2] >= model.cas, (key, found[2], model.cas)
        model.acked = state
        model.pending = []
        model.cas = found[2] if found is not None else 0
    # A write after the restart gets a CAS above every CAS handed out before the crash.
    probe = b"probe:%d" % server.starts
    reply = client.call(b"set %s 0 0 1\r\nx\r\ngets %s\r\n" % (probe, probe))
    cas = int(reply.split(b"\r\n")[1].split()[4])
    assert cas > max(max_cas, seen), (cas, max_cas, seen)
    client.call(b"delete " + probe + b"\r\n")
    client.close()
    return cas


@pytest.mark.parametrize("durability", ["wal", "fsync"])
def test_kill_9_loses_no_acknowledged_write(tmp_path: Path, durability: str) -> None:
    rng = random.Random(f"crash-{durability}")
    models: dict[int, dict[bytes, KeyModel]] = {
        cid: {
            b"%s:%d:%d" % (b"n" if i % 3 == 0 else b"s", cid, i): KeyModel()
            for i in range(KEYS_PER_CLIENT)
        }
        for cid in range(CLIENTS)
    }
    every_key = {k: m for keys in models.values() for k, m in keys.items()}
    server = PetracacheProcess(tmp_path / "pc", args=["--durability", durability])
    server.start()
    max_cas = 0
    acked = 0
    try:
        for round_no in range(ROUNDS):
            writers = [
                Writer(cid, server.port, keys, seed=rng.randrange(1 << 30))
                for cid, keys in models.items()
            ]
            for w in writers:
                w.start()
            time.sleep(rng.uniform(0.2, 0.8))
            server.kill()
            for w in writers:
                w.join(30)
                assert not w.is_alive()
                max_cas = max(max_cas, w.max_cas)
            round_acked = sum(w.acked_writes for w in writers)
            assert round_acked > 0, f"round {round_no}: no write was acknowledged"
            acked += round_acked
            server.start()
            max_cas = _verify(server, every_key, max_cas)
        assert server.stop() == 0
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill()
    # Finally read the database directly: no key outside the ones the clients wrote.
    path = str(server.db_path)
    families = {
        name: rocksdict.Options(raw_mode=True)
        for name in rocksdict.Rdict.list_cf(path, rocksdict.Options(raw_mode=True))
        if name != "default"
    }
    db = rocksdict.Rdict(path, rocksdict.Options(raw_mode=True), column_families=families)
    try:
        for key, raw in db.items():
            assert key in every_key, key
            item = codec.decode(raw)
            assert (item.data, item.flags) == every_key[key].acked
    finally:
        db.close()
    assert acked > ROUNDS
