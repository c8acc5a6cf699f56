"""The reactor's pass commits once, before any of its replies (``server.reactor_pass``):
real sockets (socketpairs), a real engine with deferred commits, the real executor.

What it proves: the writes of every connection served in one pass reach RocksDB in one
commit; when that commit runs no client has received a reply yet; a failed commit sends no
reply of the pass and closes its connections.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from petracache.commands.executor import Executor
from petracache.commands.stats import ServerInfo
from petracache.config import StorageSettings
from petracache.observability.counters import Counters
from petracache.protocol.detect import ClientConnection
from petracache.server.exchange import Exchange
from petracache.server.reactor_pass import Handback, ReactorPass, Reason, Slot
from petracache.storage.engine import Engine
from petracache.storage.errors import StorageError
from tests.harness import unread_bytes

CONNECTIONS = 5


@contextmanager
def pass_over(
    tmp_path: Path,
) -> Iterator[tuple[Engine, list[socket.socket], list[Slot], list[Handback]]]:
    """An engine, ``CONNECTIONS`` client sockets and the server-side slots for them."""
    engine = Engine(StorageSettings(db_path=str(tmp_path / "db")))
    engine.defer_commits()
    executor = Executor(engine, Counters(), ServerInfo(max_connections=10, item_size_max=1 << 20))
    clients, slots, servers = [], [], []
    handbacks: list[Handback] = []
    try:
        for _ in range(CONNECTIONS):
            client, server = socket.socketpair()
            server.setblocking(False)
            exchange = Exchange(ClientConnection(), executor.execute, Counters(), 1 << 20)
            clients.append(client)
            servers.append(server)
            slots.append(Slot(server.fileno(), exchange, None))
        yield engine, clients, slots, handbacks
    finally:
        for sock in clients + servers:
            sock.close()
        engine.close()


def test_one_commit_per_pass_and_no_reply_before_it(tmp_path: Path) -> None:
    with pass_over(tmp_path) as (engine, clients, slots, handbacks):
        seen_at_commit: list[int] = []

        def commit() -> None:
            seen_at_commit.append(sum(unread_bytes(c) for c in clients))
            engine.commit()

        by_fd = {slot.fd: slot for slot in slots}
        reactor_pass = ReactorPass(by_fd, lambda _s, h: handbacks.append(h), 65536, commit)
        for n, client in enumerate(clients):
            client.sendall(b"set k%d 0 0 1\r\n%d\r\n" % (n, n))
        written = engine.sequence.written
        reactor_pass.serve([(slot.fd, select.EPOLLIN) for slot in slots], 0.0)
        assert seen_at_commit == [0]  # one commit, and no client had a reply at that moment
        assert engine.sequence.written == written + CONNECTIONS
        for n, client in enumerate(clients):
            assert client.recv(100) == b"STORED\r\n"
            assert engine.db.items.get(b"k%d" % n) is not None  # in RocksDB itself
        assert handbacks == []


def test_a_failed_commit_sends_no_reply_and_closes_the_pass(tmp_path: Path) -> None:
    with pass_over(tmp_path) as (_engine, clients, slots, handbacks):

        def commit() -> None:
            raise StorageError("write failed: No space left on device")

        by_fd = {slot.fd: slot for slot in slots}
        reactor_pass = ReactorPass(by_fd, lambda _s, h: handbacks.append(h), 65536, commit)
        for client in clients:
            client.sendall(b"set k 0 0 1\r\nx\r\n")
        reactor_pass.serve([(slot.fd, select.EPOLLIN) for slot in slots], 0.0)
        assert [h.reason for h in handbacks] == [Reason.CLOSE] * CONNECTIONS
        assert all(unread_bytes(c) == 0 for c in clients)
