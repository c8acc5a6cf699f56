"""Out of file descriptors at accept: one log line per interval, and /ready says so.

When ``accept`` fails with EMFILE/ENFILE/ENOBUFS/ENOMEM, trio's ``serve_listeners`` sleeps
0.1 s and retries, which is the right behaviour, but logs each failure at ERROR with its
traceback (``trio/_highlevel_serve_listeners.py``: ``LOGGER.error(..., exc_info=True)``):
ten tracebacks a second for as long as the descriptors stay short. ``AcceptGuard`` is a
logging filter on that logger: it keeps the first failure of each ``REPORT_INTERVAL`` as
one line without the traceback (with how many were folded into it) and drops the rest. It
also remembers when the last failure happened, so ``/ready`` answers 503 while accepts
are failing (a load balancer then sends new clients elsewhere) and 200 again once they
succeed.

The same failures are memcached's "listen disabled" state (memcached stops accepting when
``accept`` fails with EMFILE and counts it): each run of failures no more than
``STARVED_FOR`` apart counts once in ``listen_disabled_num``, the time from its first
failure to its last adds to ``time_in_listen_disabled_us``, and ``stats`` shows
``accepting_conns 0`` while ``starved``. Going over ``max_connections`` is not such a
state: as memcached with its default ``maxconns_fast``, the connection is accepted, told
``ERROR Too many open connections`` and closed (``rejected_connections``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from petracache.observability.counters import Counters

TRIO_LOGGER = "trio.serve_listeners"  # trio's logger for accept failures
REPORT_INTERVAL = 10.0  # seconds between two log lines about failing accepts
STARVED_FOR = 1.0  # seconds after the last failure during which /ready says 503


class AcceptGuard(logging.Filter):
    """Rate-limits trio's accept-failure records and tracks whether accepts are failing.

    Args:
        clock: monotonic seconds (injected for tests).
        counters: where ``listen_disabled_num`` and ``time_in_listen_disabled_us`` move
            (settable later: ``app`` installs the guard before it builds the counters).
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, counters: Counters | None = None
    ) -> None:
        super().__init__()
        self._clock = clock
        self.counters = counters
        self._last_failure = float("-inf")
        self._last_report = float("-inf")
        self._folded = 0
        self.failures = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """Count trio's failed accepts; pass one line per ``REPORT_INTERVAL`` (no traceback)."""
        if not str(record.msg).startswith("accept returned"):
            return True
        now = self._clock()
        self.failures += 1
        counters = self.counters
        if counters is not None:
            since = now - self._last_failure
            if since >= STARVED_FOR:
                counters.listen_disabled_num += 1  # a new run of failures
            else:
                counters.time_in_listen_disabled_us += round(since * 1_000_000)
        self._last_failure = now
        if now - self._last_report < REPORT_INTERVAL:
            self._folded += 1
            return False
        folded, self._folded = self._folded, 0
        self._last_report = now
        record.msg = "cannot accept connections: %s (%s); retrying every %ss"
        record.exc_info = None
        record.exc_text = None
        if folded:
            record.msg += f" ({folded} more failures since the last report)"
        record.msg += "; raise the descriptor limit or lower server.max_connections"
        return True

    @property
    def starved(self) -> bool:
        """Whether an accept failed for lack of resources within ``STARVED_FOR`` seconds."""
        return self._clock() - self._last_failure < STARVED_FOR

    def install(self) -> None:
        """Attach to trio's logger (idempotent for this guard)."""
        logger = logging.getLogger(TRIO_LOGGER)
        if self not in logger.filters:
            logger.addFilter(self)

    def remove(self) -> None:
        """Detach from trio's logger."""
        logging.getLogger(TRIO_LOGGER).removeFilter(self)
