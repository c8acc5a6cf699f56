"""The reactor over real loopback sockets: parking, hand-backs, back-pressure, idle, drain.

A ``DataPlane`` runs in-process under ``trio.run`` with a small executor (no storage: the
rules under test are the data plane's), and clients are real TCP sockets. The end-to-end
suites run the same paths in the server process with real clients.

Nothing waits for a fixed time: the idle timeout runs under trio's autojump clock (its
timers fire in virtual time as soon as every task waits), and the back-pressure test waits
until the reactor has handed the connection back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
import trio.testing

from petracache.observability.counters import Counters
from petracache.protocol.requests import Get, Request
from petracache.protocol.responses import Response, Status, Values
from petracache.server.handler import HandlerConfig
from petracache.server.reactor_pass import Reason
from petracache.server.serve import DataPlane

VALUE = b"v" * 1000


def execute(request: Request) -> Response:
    """Every get hits with a 1,000-byte value; everything else is NOT_FOUND."""
    if isinstance(request, Get):
        return Values([(key, 0, 1, VALUE) for key in request.keys], False)
    return Status.NOT_FOUND


def reply_for(key: bytes) -> bytes:
    return b"VALUE %b 0 %d\r\n%b\r\nEND\r\n" % (key, len(VALUE), VALUE)


def run_plane(
    body: Callable[[DataPlane, int], Awaitable[None]],
    *,
    idle_timeout: float = 0.0,
    clock: trio.abc.Clock | None = None,
) -> Counters:
    """Start a data plane on a free port, run ``body(plane, port)``, then drain it (under
    ``clock``, trio's real clock by default)."""
    counters = Counters()
    config = HandlerConfig(
        item_size_max=1 << 20,
        read_size=65536,
        max_connections=100,
        commit=lambda: None,  # ``execute`` writes nothing
        idle_timeout=idle_timeout,
        write_size=64 * 1024,
    )

    async def main() -> None:
        plane = DataPlane("127.0.0.1", 0, execute, counters, config, shutdown_grace=2.0)
        async with trio.open_nursery() as nursery:
            addresses = await nursery.start(plane.run)
            await body(plane, addresses[0][1])
            plane.stop()

    trio.run(main, clock=clock)
    return counters


async def connect(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port)


async def read_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = b""
    with trio.fail_after(10):
        while len(data) < size:
            chunk = await stream.receive_some(65536)
            assert chunk, f"EOF after {len(data)} of {size} bytes"
            data += chunk
    return data


def test_connections_are_parked_and_served() -> None:
    async def body(plane: DataPlane, port: int) -> None:
        streams = [await connect(port) for _ in range(20)]
        for round_ in range(3):
            for i, stream in enumerate(streams):
                await stream.send_all(b"get k%d:%d\r\n" % (i, round_))
            for i, stream in enumerate(streams):
                expected = reply_for(b"k%d:%d" % (i, round_))
                assert await read_exactly(stream, len(expected)) == expected
        reactor = plane.tracker.reactor
        assert reactor is not None
        assert reactor.parked == 20
        for stream in streams:
            await stream.aclose()

    counters = run_plane(body)
    assert counters.total_connections == 20


def test_a_client_that_does_not_read_is_handed_back_and_gets_every_reply() -> None:
    """Replies the kernel does not take go back to the task (back-pressure), in order."""
    gets = 6000  # ~6 MB of replies: more than the socket buffers hold

    async def body(plane: DataPlane, port: int) -> None:
        stream = await connect(port)
        requests = b"".join(b"get k%d\r\n" % i for i in range(gets))
        reactor = plane.tracker.reactor
        assert reactor is not None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, requests)
            with trio.fail_after(10):  # the server fills the socket and must wait for us
                while reactor.handed_back[Reason.WRITE] == 0:
                    await trio.testing.wait_all_tasks_blocked(0.01)
            expected = b"".join(reply_for(b"k%d" % i) for i in range(gets))
            assert await read_exactly(stream, len(expected)) == expected
        await stream.send_all(b"get again\r\n")
        assert await read_exactly(stream, len(reply_for(b"again"))) == reply_for(b"again")
        await stream.aclose()

    run_plane(body)


def test_quit_and_protocol_close_end_the_connection() -> None:
    async def body(plane: DataPlane, port: int) -> None:
        for ending in (b"quit\r\n", b"x" * 5000):
            stream = await connect(port)
            await stream.send_all(b"delete k\r\n" + ending)
            data = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(65536):
                    data += chunk
            assert data == (b"NOT_FOUND\r\n" if ending.startswith(b"quit") else b"")
            await stream.aclose()

    run_plane(body)


IDLE = 30.0  # seconds of the autojump clock: no wall time


def test_idle_timeout_closes_a_quiet_connection_and_spares_an_active_one() -> None:
    """The reactor sweeps at most once a second, so a quiet connection closes between
    ``IDLE`` and ``IDLE + 1`` s after its last request; one that sends a request every
    ``IDLE / 2`` s stays open however long it lives."""

    async def body(plane: DataPlane, port: int) -> None:
        quiet, active = await connect(port), await connect(port)
        await quiet.send_all(b"delete k\r\n")
        assert await read_exactly(quiet, 11) == b"NOT_FOUND\r\n"
        last_request = trio.current_time()
        closed_after: list[float] = []

        async def watch_quiet() -> None:
            assert await quiet.receive_some(100) == b""  # closed by the server
            closed_after.append(trio.current_time() - last_request)

        with trio.fail_after(5 * IDLE):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_quiet)
                for _ in range(6):  # three timeouts long, never quiet for more than half
                    await active.send_all(b"delete k\r\n")
                    assert await read_exactly(active, 11) == b"NOT_FOUND\r\n"
                    await trio.sleep(IDLE / 2)
        assert IDLE < closed_after[0] <= IDLE + 1
        await active.send_all(b"delete k\r\n")  # still served
        assert await read_exactly(active, 11) == b"NOT_FOUND\r\n"
        reactor = plane.tracker.reactor
        assert reactor is not None
        assert reactor.handed_back[Reason.IDLE] == 1
        await quiet.aclose()
        await active.aclose()

    run_plane(body, idle_timeout=IDLE, clock=trio.testing.MockClock(autojump_threshold=0))


def test_drain_answers_what_was_sent_then_closes() -> None:
    async def body(plane: DataPlane, port: int) -> None:
        streams = [await connect(port) for _ in range(5)]
        for stream in streams:
            await stream.send_all(b"delete k\r\n")
            assert await read_exactly(stream, 11) == b"NOT_FOUND\r\n"
        for stream in streams:  # requests in flight when the drain begins
            await stream.send_all(b"delete k\r\n" * 10)
        plane.stop()
        for stream in streams:
            data = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(65536):
                    data += chunk
            assert data == b"NOT_FOUND\r\n" * 10
            await stream.aclose()

    run_plane(body)
