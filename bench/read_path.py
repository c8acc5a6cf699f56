"""The reactor's per-read path in process: ``python -m bench.read_path [--reads N]``.

Drives ``ReactorPass`` (one ``os.read``, the connection's ``Exchange``, one ``os.write``) on
one end of a socketpair while this process plays the client on the other end, with an
executor that answers every get with a 1 KB hit and touches no storage: what is left is the
data plane's own per-read work, which ``bench.hotpath`` (parser and executor, no sockets)
does not cover. Prints the median CPU microseconds per read (client side included, the same
for any build of the server side) over ``--repeat`` runs.

Instruction counts do not depend on the neighbours: run it under callgrind twice with
different ``--reads`` (``--repeat 1``) and divide the difference in instructions by the
difference in reads, which cancels start-up::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m bench.read_path --reads 2000 --repeat 1
"""

from __future__ import annotations

import argparse
import select
import socket
import statistics
import time

from petracache.observability.counters import Counters
from petracache.protocol.detect import ClientConnection
from petracache.protocol.requests import Get, Request
from petracache.protocol.responses import Response, Status, Values
from petracache.rules.build import BUILD
from petracache.server.exchange import Exchange
from petracache.server.reactor_pass import Handback, ReactorPass, Slot

VALUE = b"v" * 1024
KEY = b"key:0000000001"
REPLY_SIZE = len(b"VALUE %b 0 %d\r\n" % (KEY, len(VALUE))) + len(VALUE) + len(b"\r\nEND\r\n")


def execute(request: Request) -> Response:
    """Every get hits with VALUE; nothing else is sent."""
    if type(request) is Get:
        return Values([(request.keys[0], 0, 1, VALUE)], False)
    return Status.ERROR


def run(reads: int, pipeline: int) -> float:
    """CPU seconds for ``reads`` reads of ``pipeline`` gets each, answered and read back."""
    client, server = socket.socketpair()
    server.setblocking(False)
    fd = server.fileno()
    handbacks: list[Handback] = []
    exchange = Exchange(ClientConnection(), execute, Counters(), 256 * 1024)
    slots = {fd: Slot(fd, exchange, None)}
    serve = ReactorPass(
        slots, lambda _slot, handback: handbacks.append(handback), 65536, lambda: None
    ).serve
    request = b"get %b\r\n" % KEY * pipeline
    size = REPLY_SIZE * pipeline
    events = [(fd, select.EPOLLIN)]
    start = time.process_time()
    for _ in range(reads):
        client.sendall(request)
        serve(events, 0.0)
        got = 0
        while got < size:
            got += len(client.recv(1 << 20))
    seconds = time.process_time() - start
    client.close()
    server.close()
    if handbacks:
        raise RuntimeError(f"the reactor handed the connection back: {handbacks[0].reason}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.read_path", description=__doc__)
    parser.add_argument("--reads", type=int, default=100_000)
    parser.add_argument("--pipeline", type=int, default=1, help="gets per read")
    parser.add_argument("--repeat", type=int, default=5, help="runs")
    args = parser.parse_args(argv)
    runs = [run(args.reads, args.pipeline) * 1e6 / args.reads for _ in range(args.repeat)]
    print(
        f"{BUILD}: {statistics.median(runs):.2f} us of CPU per read"
        f" (min {min(runs):.2f}, {len(runs)} runs, {args.pipeline} gets a read)"
    )


if __name__ == "__main__":
    main()
