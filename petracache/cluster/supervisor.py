"""``petracache-cluster run``'s process supervisor: keep every instance up, or say why not.

Rules:

* Each child (every instance, and nutcracker) runs with its output piped through a thread
  that prefixes each line with ``[<name>] ``, so one terminal or journal shows which
  instance said what.
* A child that exits while the supervisor is not stopping has crashed: the supervisor logs
  which one and how (``killed by SIGKILL``, ``exited with status 1``) and starts it again
  with the same command after a back-off (``BACKOFF_FIRST`` seconds, doubling up to
  ``BACKOFF_MAX``). An instance restarts on its own data directory, so it comes back with
  its data (and, past ``storage.max_warm_downtime``, invalidates it: see docs/operations.md).
  The other children keep running untouched.
* A child that stayed up ``STABLE_AFTER`` seconds has recovered: its back-off starts over.
  One that crashes ``MAX_CRASHES`` times without recovering in between is given up on: the
  supervisor stops every child (SIGTERM, so each closes its database cleanly) and exits
  with status 1.
* SIGTERM or SIGINT stops every child the same way; the supervisor exits 0 when each
  stopped cleanly, else with the first non-zero status.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

BACKOFF_FIRST = 0.5  # seconds before the first restart of a crashed child
BACKOFF_MAX = 30.0  # the back-off doubles up to this
STABLE_AFTER = 30.0  # seconds up after which a child's crash count starts over
MAX_CRASHES = 5  # crashes in a row (none STABLE_AFTER apart) before giving up
STOP_TIMEOUT = 60.0  # seconds a child gets to stop on SIGTERM before SIGKILL
POLL = 0.1  # seconds between checks of the children
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def describe_exit(returncode: int) -> str:
    """How a child ended, in words: ``killed by SIGKILL`` or ``exited with status 3``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


@dataclass
class Child:
    """One supervised process: its name, how to start it, and its crash history."""

    name: str
    command: list[str]
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    crashes: int = 0
    restart_at: float | None = None  # when a crashed child is due to start again
    pumps: list[threading.Thread] = field(default_factory=list)


class Supervisor:
    """Starts the children, restarts crashed ones, stops them all on a signal.

    Args:
        children: what to run.
        out: where prefixed child output and the supervisor's own lines go.
        max_crashes: crashes in a row before giving up.
        backoff: seconds before the first restart (doubling up to ``BACKOFF_MAX``).
        clock: monotonic seconds (injected for tests).
    """

    def __init__(
        self,
        children: Sequence[Child],
        out: IO[str] = sys.stdout,
        *,
        max_crashes: int = MAX_CRASHES,
        backoff: float = BACKOFF_FIRST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = list(children)
        self._max_crashes = max_crashes
        self._backoff = backoff
        self._out = out
        self._lock = threading.Lock()
        self._clock = clock
        self.stopping = False
        self.gave_up = False

    def say(self, text: str) -> None:
        """One line of the supervisor's own, as ``[petracache-cluster] text``."""
        self._write(f"[petracache-cluster] {text}\n")

    def _write(self, text: str) -> None:
        with self._lock:
            self._out.write(text)
            self._out.flush()

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self._write(f"[{name}] {raw.decode(errors='replace').rstrip()}\n")
        stream.close()

    def start(self, child: Child) -> None:
        """Start ``child`` with its output prefixed by its name."""
        proc = subprocess.Popen(
            child.command,
            env=child.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        child.proc, child.started, child.restart_at = proc, self._clock(), None
        assert proc.stdout is not None
        pump = threading.Thread(target=self._pump, args=(child.name, proc.stdout), daemon=True)
        pump.start()
        child.pumps.append(pump)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Begin stopping: every running child gets ``signum``; nothing restarts."""
        self.stopping = True
        for child in self.children:
            child.restart_at = None
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signum)

    def run(self) -> int:
        """Supervise until stopped or given up; returns the exit status."""
        for child in self.children:
            self.start(child)
        while not self.stopping:
            self.check()
            time.sleep(POLL)
        return self._wait_all()

    def check(self) -> None:
        """One round: note crashes, restart children whose back-off has passed."""
        now = self._clock()
        for child in self.children:
            if self.stopping:  # a signal arrived during this round: nothing is a crash now
                return
            proc = child.proc
            if proc is not None and proc.poll() is not None and child.restart_at is None:
                self._crashed(child, proc.returncode, now)
                if self.gave_up:
                    return
            elif child.restart_at is not None and now >= child.restart_at:
                self.say(f"restarting {child.name} (crash {child.crashes})")
                self.start(child)

    def _crashed(self, child: Child, returncode: int, now: float) -> None:
        if now - child.started >= STABLE_AFTER:
            child.crashes = 0
        child.crashes += 1
        how = describe_exit(returncode)
        if child.crashes > self._max_crashes:
            self.say(f"{child.name} {how}; crashed {child.crashes} times in a row: giving up")
            self.gave_up = True
            self.stop()
            return
        delay = min(self._backoff * 2 ** (child.crashes - 1), BACKOFF_MAX)
        self.say(f"{child.name} {how}; restarting it in {delay:g}s (the others keep running)")
        child.restart_at = now + delay

    def _wait_all(self) -> int:
        statuses: list[int] = []
        for child in self.children:
            proc = child.proc
            if proc is None:
                continue
            try:
                statuses.append(proc.wait(STOP_TIMEOUT))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop within {STOP_TIMEOUT:g}s: killing it")
                proc.kill()
                statuses.append(proc.wait())
            for pump in child.pumps:
                pump.join(5)
        if self.gave_up:
            return 1
        # A child that the stop signal itself ended (nutcracker exits by SIGTERM's default
        # action) stopped as asked.
        failed = [status for status in statuses if status != 0 and -status not in STOP_SIGNALS]
        return 0 if not failed else (failed[0] if failed[0] > 0 else 1)
