"""Fill leases for mcrouter's ``lease-get`` / ``lease-set`` (the "thundering herd" guard).

Semantics follow mcrouter's reference backend (its MockMc) and Facebook's memcache paper:

* ``lease-get`` of a missing key hands out a token (>= 2) and records it for ``LEASE_TTL``
  seconds; while that lease is outstanding, other ``lease-get``s of the key get the hot-miss
  token ``HOT_MISS`` (1): "someone is filling it, retry shortly".
* ``lease-set`` stores only with the outstanding token for the key; the lease is consumed.
* ``delete`` and ``flush_all`` invalidate leases, so a filler that read the database before
  an invalidation cannot write its stale value back afterwards.

Invariants: leases live in memory only (a restart simply invalidates them, which is safe:
the lease-set then fails and the client's next lease-get hands out a new token). The table
is bounded by ``MAX_LEASES``: expired entries are purged first, then the oldest ones.
Tokens are random 62-bit numbers, so a token from before a restart never matches.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Final

HOT_MISS: Final = 1  # mcrouter's special lease token: another client holds the lease
LEASE_TTL: Final = 10.0  # seconds; the paper's per-key lease rate limit
MAX_LEASES: Final = 100_000


class LeaseTable:
    """Outstanding leases, keyed by memcached key.

    Args:
        clock: monotonic seconds; injected so tests need not sleep.
        ttl: how long a lease (and the hot-miss state it causes) lasts.
        max_leases: bound on the table size.
    """

    __slots__ = ("_clock", "_leases", "_max", "_ttl")

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        ttl: float = LEASE_TTL,
        max_leases: int = MAX_LEASES,
    ) -> None:
        self._clock = clock
        self._ttl = ttl
        self._max = max_leases
        self._leases: dict[bytes, tuple[int, float]] = {}

    def __len__(self) -> int:
        return len(self._leases)

    def acquire(self, key: bytes) -> int:
        """A new token for a missed key, or ``HOT_MISS`` while another lease is live."""
        now = self._clock()
        current = self._leases.get(key)
        if current is not None and current[1] > now:
            return HOT_MISS
        if current is None and len(self._leases) >= self._max:
            self._make_room(now)
        token = secrets.randbits(62) + 2
        self._leases[key] = (token, now + self._ttl)
        return token

    def redeem(self, key: bytes, token: int) -> bool:
        """Consume the lease if ``token`` is the live one for ``key``."""
        current = self._leases.get(key)
        if current is None or current[0] != token:
            return False
        del self._leases[key]
        return current[1] > self._clock()

    def invalidate(self, key: bytes) -> None:
        """Forget any lease on ``key`` (the key was deleted)."""
        if self._leases:
            self._leases.pop(key, None)

    def clear(self) -> None:
        """Forget every lease (flush_all)."""
        self._leases.clear()

    def _make_room(self, now: float) -> None:
        leases = self._leases
        for key in [k for k, (_token, deadline) in leases.items() if deadline <= now]:
            del leases[key]
        while len(leases) >= self._max:
            del leases[next(iter(leases))]
