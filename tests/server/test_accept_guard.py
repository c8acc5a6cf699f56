"""Out of descriptors at accept: trio retries; the log gets one line per interval, no
traceback; /ready's flag follows the failures."""

from __future__ import annotations

import errno
import logging
from typing import Any

import pytest
import trio
import trio.testing

from petracache.server.accept_guard import REPORT_INTERVAL, STARVED_FOR, AcceptGuard


def _starved(guard: AcceptGuard) -> bool:
    """Read through a call, so mypy does not narrow the property between reads."""
    return guard.starved


def _ready(readiness: Any) -> bool:
    return bool(readiness.ready)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _StarvedListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener whose accept always fails as a process out of descriptors does."""

    def __init__(self) -> None:
        self.attempts = 0

    async def accept(self) -> trio.abc.Stream:
        self.attempts += 1
        await trio.lowlevel.checkpoint()
        raise OSError(errno.EMFILE, "Too many open files")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def test_one_line_per_interval_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    listener = _StarvedListener()
    guard = AcceptGuard(clock=lambda: trio.current_time())

    async def handler(stream: trio.abc.Stream) -> None:
        await trio.lowlevel.checkpoint()

    async def main() -> None:
        with trio.move_on_after(3 * REPORT_INTERVAL - 1):
            await trio.serve_listeners(handler, [listener])

    guard.install()
    try:
        with caplog.at_level(logging.ERROR, logger="trio.serve_listeners"):
            trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        guard.remove()
    assert listener.attempts > 100  # trio kept retrying, every 0.1 s
    records = [r for r in caplog.records if r.name == "trio.serve_listeners"]
    assert len(records) == 3  # one per REPORT_INTERVAL
    assert all(r.exc_info is None and r.exc_text is None for r in records)
    assert "EMFILE" in records[0].getMessage()
    assert "more failures since the last report" in records[1].getMessage()
    assert guard.failures == listener.attempts


def test_starved_follows_the_last_failure() -> None:
    clock = _Clock()
    guard = AcceptGuard(clock=clock)
    assert not guard.starved
    record = logging.LogRecord(
        "trio.serve_listeners",
        logging.ERROR,
        "",
        0,
        "accept returned %s (%s); retrying in %s seconds",
        ("EMFILE", "Too many open files", 0.1),
        None,
    )
    assert guard.filter(record)
    assert _starved(guard)
    clock.now += STARVED_FOR + 0.1
    assert not _starved(guard)
    other = logging.LogRecord("trio.serve_listeners", logging.ERROR, "", 0, "x", (), None)
    assert guard.filter(other)  # anything else passes untouched


def test_ready_is_false_while_accepts_fail() -> None:
    from petracache.app import Readiness

    clock = _Clock()
    guard = AcceptGuard(clock=clock)
    readiness = Readiness(db_open=True, accepting=True, accepts=guard)
    assert readiness.ready
    guard.filter(
        logging.LogRecord(
            "trio.serve_listeners", logging.ERROR, "", 0, "accept returned %s", ("EMFILE",), None
        )
    )
    assert not _ready(readiness)
    clock.now += STARVED_FOR + 0.1
    assert _ready(readiness)


def test_each_run_of_failures_is_one_listen_disabled() -> None:
    """memcached's listen_disabled_num and time_in_listen_disabled_us, and accepting_conns."""
    from petracache.app import Readiness, _accepting
    from petracache.observability.counters import Counters

    clock = _Clock()
    counters = Counters()
    guard = AcceptGuard(clock=clock, counters=counters)
    readiness = Readiness(db_open=True, accepting=True, accepts=guard)
    assert _accepting(readiness)

    def fail() -> None:
        guard.filter(
            logging.LogRecord(
                "trio.serve_listeners",
                logging.ERROR,
                "",
                0,
                "accept returned %s",
                ("EMFILE",),
                None,
            )
        )

    for _ in range(5):  # one run: trio retries every 0.1 s
        fail()
        assert not _accepting(readiness)
        clock.now += 0.1
    assert counters.listen_disabled_num == 1
    assert counters.time_in_listen_disabled_us == 400_000
    clock.now += STARVED_FOR  # accepts succeed again
    assert _accepting(readiness)
    fail()
    assert (counters.listen_disabled_num, counters.time_in_listen_disabled_us) == (2, 400_000)
    readiness.accepting = False  # draining: not accepting either
    clock.now += STARVED_FOR
    assert not _accepting(readiness)
