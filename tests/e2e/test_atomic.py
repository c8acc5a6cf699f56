"""Read-modify-write commands are atomic: 50 clients x 1,000 incr end at exactly 50,000.

Each client pipelines its increments in batches (to keep the test fast on two cores) over its
own connection; every reply must be a number, and the final value must count every one.
"""

from __future__ import annotations

import re
import threading

import pytest

from tests.harness import PetracacheProcess, RawClient

pytestmark = pytest.mark.integration

CLIENTS = 50
INCREMENTS = 1000
BATCH = 50


def test_concurrent_incr_is_atomic(shared_server: PetracacheProcess) -> None:
    setup = shared_server.client()
    assert setup.call(b"set atomic:counter 0 0 1\r\n0\r\n") == b"STORED\r\n"
    assert setup.call(b"set atomic:cas 0 0 1\r\n0\r\n") == b"STORED\r\n"
    errors: list[str] = []
    start = threading.Barrier(CLIENTS)

    def client_loop() -> None:
        client = RawClient(shared_server.port, timeout=30)
        try:
            start.wait()
            for _ in range(INCREMENTS // BATCH):
                client.send(b"incr atomic:counter 1\r\n" * BATCH)
                for _ in range(BATCH):
                    line = client.read_line()
                    if not line[:-2].isdigit():
                        errors.append(line.decode(errors="replace"))
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    assert setup.call(b"get atomic:counter\r\n") == (
        b"VALUE atomic:counter 0 5\r\n%d\r\nEND\r\n" % (CLIENTS * INCREMENTS)
    )
    setup.close()


def test_cas_loop_loses_no_update(shared_server: PetracacheProcess) -> None:
    """Optimistic gets/cas read-modify-write from 10 clients: no update is lost."""
    setup = shared_server.client()
    assert setup.call(b"set atomic:cas 0 0 1\r\n0\r\n") == b"STORED\r\n"
    per_client = 100
    errors: list[str] = []

    def client_loop() -> None:
        client = RawClient(shared_server.port, timeout=30)
        try:
            done = 0
            while done < per_client:
                reply = client.call(b"gets atomic:cas\r\n")
                match = re.match(rb"VALUE atomic:cas 0 \d+ (\d+)\r\n(\d+)\r\n", reply)
                if match is None:
                    errors.append(reply.decode(errors="replace"))
                    return
                value = b"%d" % (int(match.group(2)) + 1)
                request = b"cas atomic:cas 0 0 %d %s\r\n%s\r\n" % (
                    len(value),
                    match.group(1),
                    value,
                )
                if client.call(request) == b"STORED\r\n":
                    done += 1
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    assert setup.call(b"get atomic:cas\r\n") == b"VALUE atomic:cas 0 4\r\n1000\r\nEND\r\n"
    setup.close()
