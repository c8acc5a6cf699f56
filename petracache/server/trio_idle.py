"""The reactor's sleep: in an epoll set of its own that holds the connections' set and trio's.

Why: with many connections and a modest request rate the reactor runs out of ready
connections every few requests. Waiting through trio (``wait_readable`` on the reactor's
epoll descriptor) then costs an ``epoll_ctl`` to re-arm it (trio registers one-shot), trio's
own ``epoll_wait``, and a pass of trio's interpreted scheduler to wake the reactor task:
about a third of the CPU per request at a quarter of the peak rate (docs/benchmarks.md).
Instead the reactor blocks in ``epoll_wait`` on a *sleep set* holding two descriptors: its
connections' set, readable when a connection is, and trio's epoll set, readable whenever
anything trio waits for is ready (a new connection, a thread's result, a signal's wake-up
byte). The connections' set itself never holds trio's descriptor, so it can still be waited
on through trio (``wait_readable``) without making a cycle of epoll sets, which the kernel
refuses.

The promise: the reactor sleeps only while trio could not have run anything else, never
past trio's next deadline, and it yields to trio as soon as trio's set is ready, so trio's
I/O waits no longer than it would with trio asleep in its own ``epoll_wait``.

This reads trio's run state, which trio does not publish: the runner's run queue,
deadlines, clock and epoll object, and the round of tasks its scheduling loop is running
(``unrolled_run``'s ``batch``: tasks made runnable before the round began wait there, not
in the run queue, until their turn). ``attach`` checks every attribute it uses and returns
None when any is missing, or when trio runs as a guest or with a clock other than its own
(tests' ``MockClock``), and the reactor then waits through trio as before. While a task
waits for every task to block (``trio.testing.wait_all_tasks_blocked``) the reactor waits
through trio too, where trio sees it blocked. ``tests/server/test_trio_idle.py`` fails if the
installed trio no longer offers what this reads.
"""

from __future__ import annotations

import math
import select
import sys
from types import FrameType
from typing import Any, Final

import trio

# The longest single sleep: a bound in case a wake-up is missed (a signal's handler runs
# when the poll returns EINTR; trio's wake-up byte makes its descriptor readable).
MAX_SLEEP: Final = 1.0


class TrioIdle:
    """When and how the reactor sleeps (see the module docstring).

    Args:
        runner: trio's ``Runner`` of the current run.
        connections: the reactor's epoll set of parked connections.
        trio_fd: trio's epoll descriptor.
    """

    __slots__ = ("_clock", "_deadlines", "_loop", "_runner", "_sleep", "trio_fd")

    def __init__(
        self, runner: Any, loop: FrameType, connections: select.epoll, trio_fd: int
    ) -> None:
        self._runner = runner
        self._loop = loop
        self._deadlines = runner.deadlines
        self._clock = runner.clock
        self.trio_fd = trio_fd
        self._sleep = select.epoll()
        self._sleep.register(connections.fileno(), select.EPOLLIN)
        self._sleep.register(trio_fd, select.EPOLLIN)

    @classmethod
    def attach(cls, connections: select.epoll) -> TrioIdle | None:
        """A sleep set for the reactor's set ``connections``; None when trio's run state is
        not what this module reads (the reactor then waits through trio). Call it from the
        reactor's task: it finds trio's scheduling loop among the task's callers."""
        loop = _scheduler_frame(sys._getframe(1))
        try:
            runner = trio._core._run.GLOBAL_RUN_CONTEXT.runner
            trio_fd = runner.io_manager._epoll.fileno()
            len(runner.runq), len(runner.waiting_for_idle)  # what sleep_time reads
            runner.clock.deadline_to_sleep_time(runner.deadlines.next_deadline())
            guest = runner.is_guest
        except (AttributeError, TypeError):
            return None
        if loop is None or guest or type(runner.clock) is not trio._core._run.SystemClock:
            return None
        return cls(runner, loop, connections, trio_fd)

    def sleep_time(self) -> float:
        """Seconds the reactor may sleep now: 0 while trio has a task to run (a connection
        handed back, a woken waiter) or a deadline due, else until trio's next deadline
        (at most ``MAX_SLEEP``); -1 while a task waits for every task to block: the
        reactor must then wait through trio, where trio sees it blocked."""
        runner = self._runner
        if runner.runq or self._loop.f_locals.get("batch"):
            return 0.0  # a task waits to run: in the queue, or later in this batch
        if runner.waiting_for_idle:
            return -1.0
        left = self._clock.deadline_to_sleep_time(self._deadlines.next_deadline())
        if left <= 0.0:
            return 0.0
        return MAX_SLEEP if math.isinf(left) else min(left, MAX_SLEEP)

    def sleep(self, seconds: float) -> bool:
        """Block until a parked connection or anything trio waits for is ready, or for
        ``seconds``; False when only connections are ready (serve them without yielding),
        True when it is trio's turn (its set is ready, or the time is up: a deadline)."""
        ready = self._sleep.poll(seconds, 2)
        if not ready:
            return True
        return any(fd == self.trio_fd for fd, _ in ready)

    def close(self) -> None:
        """Close the sleep set (the reactor's and trio's sets stay open)."""
        self._sleep.close()


def _scheduler_frame(frame: FrameType | None) -> FrameType | None:
    """trio's scheduling loop (``unrolled_run``) among ``frame`` and its callers, if its
    ``batch`` (the tasks it runs in this round, popped one by one) is where this expects."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "unrolled_run" and frame.f_globals.get("__name__") == _TRIO_RUN:
            return frame if isinstance(frame.f_locals.get("batch"), list) else None
        frame = frame.f_back
    return None


_TRIO_RUN: Final = "trio._core._run"
