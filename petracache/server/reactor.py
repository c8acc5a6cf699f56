"""The reactor: one trio task serving every ready plain-TCP connection from one epoll set.

Why: with a task per connection, every request costs a scheduler pass (wake the task, run
it, park it again) and an ``epoll_ctl`` (trio registers descriptors one-shot, so each wait
re-arms). For an unpipelined client that is more CPU than parsing and executing the request
(docs/benchmarks.md). Here each connection's descriptor is registered once, level-triggered,
in an epoll set of our own; the reactor task serves every ready connection in one pass
(``server.reactor_pass``): read, the connection's ``Exchange`` (parse, execute, encode),
write. When none is ready and trio has nothing else to run, it sleeps in ``epoll_wait`` on
that set and trio's together (``server.trio_idle``), not in trio's scheduler. No task switch
and no ``epoll_ctl`` per request, and under load one wake-up serves many connections.

Invariants:

* A connection is either *parked* here (its descriptor in our epoll set, its own task
  asleep in ``park``) or served by its task (``server.handler``), never both. The reactor
  hands a connection back, waking its task with a ``Handback``, whenever the connection has
  to wait or end: a reply the kernel did not take whole (the task finishes it with trio's
  ``send_all``, which waits for writability, so back-pressure still bounds memory), end of
  input or a broken socket, ``quit`` or a protocol close, the idle timeout, and the shutdown
  drain. Everything with a lifecycle (accept, max_connections, TLS, authentication, the
  drain, fsync group commit) stays with trio tasks; the handler only parks connections that
  can be served synchronously.
* Requests still run one at a time on the trio thread, so commands stay atomic.
* One read per ready connection per pass, and the reactor yields to the other trio tasks
  (accept, timers, the reclaimer) whenever it waits and at least every ``YIELD_INTERVAL``
  under load, so no connection or task starves.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Callable
from typing import Final

import trio

from petracache.server.exchange import Exchange
from petracache.server.reactor_pass import Handback, ReactorPass, Reason, Slot
from petracache.server.trio_idle import TrioIdle

# epoll_wait's batch: ready connections served per pass. A pass's replies all wait for its
# one commit, so this bounds how long the first of them waits: with 1,000 busy connections,
# 256 a pass made replies wait for up to 256 others (workload 3's p99.9 missed its target
# in one of two runs, 17.2 ms); 32 keeps that wait under a millisecond at no measured cost
# in CPU per request (docs/benchmarks.md). Fewer ready connections than this: one pass.
MAX_EVENTS: Final = 32
# Under load the reactor goes straight on to its next pass (one epoll_wait) and yields to
# the other trio tasks (accept, timers, the reclaimer) at most this many seconds apart; a
# scheduler pass per epoll pass cost more than the epoll_wait itself.
YIELD_INTERVAL: Final = 0.001


class Reactor:
    """Serves parked connections (see the module docstring).

    Args:
        read_size: bytes per ``os.read`` (``server.read_buffer_size``).
        idle_timeout: seconds without input after which a connection is closed; 0 = never.
        commit: writes a pass's pending writes before its replies (``Engine.commit``).
    """

    def __init__(self, read_size: int, idle_timeout: float, commit: Callable[[], None]) -> None:
        self._idle = idle_timeout
        self._epoll = select.epoll()
        self._slots: dict[int, Slot] = {}
        # What runs per ready connection (read, answer, write), compiled.
        self._pass = ReactorPass(self._slots, self._hand_back, read_size, commit)
        self._closed = False
        self._next_sweep = 0.0
        # Hand-backs by reason, for tests and diagnostics (a WRITE is a client reading slowly).
        self.handed_back: dict[Reason, int] = dict.fromkeys(Reason, 0)

    @property
    def parked(self) -> int:
        """Connections currently served by the reactor."""
        return len(self._slots)

    @property
    def serving(self) -> int:
        """The descriptor of the connection whose read the reactor answered last: while a
        request runs from the reactor, the one it came on."""
        return self._pass.serving

    def last_active(self, fd: int) -> float | None:
        """When the connection on ``fd`` last sent input (trio time), if parked here."""
        slot = self._slots.get(fd)
        return None if slot is None else slot.last_active

    async def park(self, fd: int, exchange: Exchange) -> Handback:
        """Serve ``exchange`` (socket ``fd``) from the reactor until it is handed back.

        Cancellation (the end of the drain) unregisters the connection; its task then
        closes it as usual.
        """
        if self._closed:
            return Handback(Reason.DRAIN)
        slot = Slot(fd, exchange, trio.lowlevel.current_task())
        slot.last_active = trio.current_time()
        self._slots[fd] = slot
        try:
            self._epoll.register(fd, select.EPOLLIN)
        except OSError:
            del self._slots[fd]
            return Handback(Reason.CLOSE)

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            self._forget(slot)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        assert slot.handback is not None
        return slot.handback

    def drain(self) -> None:
        """Hand every connection back for the shutdown drain; park nothing more."""
        self._closed = True
        for slot in list(self._slots.values()):
            self._hand_back(slot, Handback(Reason.DRAIN))

    async def run(self) -> None:
        """Serve parked connections until cancelled."""
        poll = self._epoll.poll
        serve_pass = self._pass.serve
        idle = self._idle
        clock = time.perf_counter
        next_yield = clock() + YIELD_INTERVAL
        sleeper = TrioIdle.attach(self._epoll)
        try:
            while True:
                events = poll(0, MAX_EVENTS)
                if not events:
                    if sleeper is None or (wait := sleeper.sleep_time()) < 0.0:
                        await self._wait_through_trio()
                        next_yield = clock() + YIELD_INTERVAL
                        continue
                    if wait and idle:
                        wait = max(0.0, min(wait, self._next_sweep - trio.current_time()))
                    if wait and not sleeper.sleep(wait):
                        continue  # only connections are ready: serve them
                    await trio.lowlevel.checkpoint()  # trio's turn: a task, I/O or a deadline
                    next_yield = clock() + YIELD_INTERVAL
                    if idle and trio.current_time() >= self._next_sweep:
                        self._close_idle()
                    continue
                now = trio.current_time()  # once per pass: idle timeout and stats conns
                serve_pass(events, now)
                if idle and now >= self._next_sweep:
                    self._close_idle()
                if clock() >= next_yield:
                    await trio.lowlevel.checkpoint()  # let the other tasks run
                    next_yield = clock() + YIELD_INTERVAL
        finally:
            if sleeper is not None:
                sleeper.close()
            self.drain()
            self._epoll.close()

    async def _wait_through_trio(self) -> None:
        """Sleep until a connection is ready, in trio's wait (when ``server.trio_idle``
        cannot read trio's run state); sweeps idle connections."""
        epfd = self._epoll.fileno()
        if self._idle:
            with trio.move_on_after(min(self._idle, 1.0)):
                await trio.lowlevel.wait_readable(epfd)
            if trio.current_time() >= self._next_sweep:
                self._close_idle()
        else:
            await trio.lowlevel.wait_readable(epfd)

    def _close_idle(self) -> None:
        """Hand back connections idle past the timeout (a scan at most once a second)."""
        now = trio.current_time()
        self._next_sweep = now + min(self._idle, 1.0)
        deadline = now - self._idle
        for slot in [s for s in self._slots.values() if s.last_active < deadline]:
            self._hand_back(slot, Handback(Reason.IDLE))

    def _forget(self, slot: Slot) -> None:
        if self._slots.get(slot.fd) is slot:
            del self._slots[slot.fd]
            with contextlib.suppress(OSError, ValueError):  # already closed
                self._epoll.unregister(slot.fd)

    def _hand_back(self, slot: Slot, handback: Handback) -> None:
        if slot.handback is not None:
            return  # already handed back
        self._forget(slot)
        self.handed_back[handback.reason] += 1
        slot.handback = handback
        trio.lowlevel.reschedule(slot.task)
