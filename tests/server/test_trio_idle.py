"""The reactor's sleep in its own epoll set (``server.trio_idle``) against the installed trio.

``TrioIdle`` reads trio's run state; these tests fail if the installed trio no longer has
what it reads, or if the reactor's sleep would delay what trio waits for: a runnable task, a
deadline, a ready socket, a new connection, the idle timeout (the real clock: the fast path
declines trio's ``MockClock``).
"""

from __future__ import annotations

import select
import socket
import time

import trio
import trio.testing

from petracache.server.trio_idle import MAX_SLEEP, TrioIdle
from tests.server.test_reactor import connect, read_exactly, reply_for, run_plane


def attached() -> TrioIdle:
    idle = TrioIdle.attach(select.epoll())
    assert idle is not None, "the installed trio lacks the run state server.trio_idle reads"
    return idle


def test_attach_reads_the_installed_trio() -> None:
    async def main() -> None:
        epoll = select.epoll()
        idle = TrioIdle.attach(epoll)
        assert idle is not None
        await trio.testing.wait_all_tasks_blocked()  # trio's own tasks have run
        assert idle.sleep_time() == MAX_SLEEP  # nothing runnable, no deadline
        idle.close()
        epoll.close()

    trio.run(main)


def test_sleep_time_is_zero_while_a_task_is_runnable_and_bounded_by_deadlines() -> None:
    async def main() -> None:
        idle = attached()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 0)
            assert idle.sleep_time() == 0.0  # the new task waits in the run queue
        with trio.move_on_after(0.25):
            assert 0.0 < idle.sleep_time() <= 0.25
            await trio.lowlevel.checkpoint()
        with trio.move_on_after(0.001):
            time.sleep(0.002)  # noqa: ASYNC251 (the deadline passes before trio looks)
            assert idle.sleep_time() == 0.0  # a deadline already due
            await trio.lowlevel.checkpoint()

    trio.run(main)


def test_sleep_time_is_zero_while_a_task_waits_later_in_the_same_round() -> None:
    """Tasks woken together run in one round of trio's loop, in either order; while one of
    them has not run yet, the other must not put the thread to sleep."""

    async def main() -> None:
        idle = attached()
        pending_seen = 0
        for _ in range(40):
            go = trio.Event()
            ran: list[str] = []
            looked: list[float] = []

            async def other(go: trio.Event, ran: list[str]) -> None:
                await go.wait()
                ran.append("other")

            async def checker(go: trio.Event, ran: list[str], looked: list[float]) -> None:
                await go.wait()
                if not ran:  # ``other`` is still to run in this round
                    looked.append(idle.sleep_time())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(other, go, ran)
                nursery.start_soon(checker, go, ran, looked)
                await trio.testing.wait_all_tasks_blocked()
                go.set()  # both wake in the next round
            assert looked in ([], [0.0])
            pending_seen += len(looked)
        assert pending_seen > 0  # the order is random per round: 40 rounds see both

    trio.run(main)


def test_a_task_waiting_for_all_tasks_to_block_makes_the_reactor_wait_inside_trio() -> None:
    async def main() -> None:
        idle = attached()
        seen: list[float] = []

        async def look() -> None:
            await trio.lowlevel.checkpoint()  # the waiter below is registered by now
            seen.append(idle.sleep_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(look)
            await trio.testing.wait_all_tasks_blocked()
        assert seen == [-1.0]

    trio.run(main)


def test_attach_declines_trios_mock_clock() -> None:
    async def main() -> None:
        assert TrioIdle.attach(select.epoll()) is None

    trio.run(main, clock=trio.testing.MockClock())


def test_the_sleep_ends_for_trios_io_and_for_a_ready_connection() -> None:
    async def main() -> None:
        connections = select.epoll()
        idle = TrioIdle.attach(connections)
        assert idle is not None
        trio_side, trio_peer = socket.socketpair()
        conn_side, conn_peer = socket.socketpair()
        connections.register(conn_side.fileno(), select.EPOLLIN)
        woke: list[bool] = []

        async def waiter() -> None:
            await trio.lowlevel.wait_readable(trio_side)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()  # the waiter is in trio's set
            conn_peer.send(b"x")
            woke.append(idle.sleep(5))  # a connection only: serve it, no yield
            trio_peer.send(b"x")
            woke.append(idle.sleep(5))  # trio's I/O: its turn
        assert woke == [False, True]
        assert idle.sleep(0) is False  # the connection is still ready; trio's waiter ran
        for sock in (trio_side, trio_peer, conn_side, conn_peer):
            sock.close()
        idle.close()
        connections.close()

    trio.run(main)


def test_a_sleeping_reactor_lets_timers_new_connections_and_the_idle_timeout_through() -> None:
    """Real clock: the reactor sleeps in its own set while one connection idles, yet a
    timer fires on time, a new connection is accepted and served, and the idle timeout
    closes the quiet connection."""

    async def body(plane: trio.abc.Stream | object, port: int) -> None:
        quiet = await connect(port)
        await quiet.send_all(b"get q\r\n")
        assert await read_exactly(quiet, len(reply_for(b"q"))) == reply_for(b"q")
        start = trio.current_time()
        await trio.sleep(0.05)
        assert trio.current_time() - start < MAX_SLEEP / 2  # not held until the sleep bound
        with trio.fail_after(5):
            late = await connect(port)
            await late.send_all(b"get l\r\n")
            assert await read_exactly(late, len(reply_for(b"l"))) == reply_for(b"l")
            try:
                rest = await quiet.receive_some(10)
            except trio.BrokenResourceError:  # closed with a reset
                rest = b""
            assert rest == b""  # closed by the idle timeout
        await late.aclose()
        await quiet.aclose()

    counters = run_plane(body, idle_timeout=0.3)
    assert counters.idle_kicks >= 1
