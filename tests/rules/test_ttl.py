"""memcached's TTL rules as pure functions (``rules.ttl``)."""

from __future__ import annotations

import pytest

from petracache.rules import ttl

NOW = 1_700_000_000
THIRTY_DAYS = 60 * 60 * 24 * 30


@pytest.mark.parametrize(
    ("exptime", "deadline"),
    [
        (0, ttl.NEVER),  # 0: never expires
        (1, NOW + 1),  # up to 30 days: relative
        (100, NOW + 100),
        (THIRTY_DAYS, NOW + THIRTY_DAYS),
        (THIRTY_DAYS + 1, THIRTY_DAYS + 1),  # above: an absolute Unix time (in 1970 here)
        (NOW + 50, NOW + 50),
        (-1, ttl.ALREADY_EXPIRED),  # negative: already expired
        (-(2**31), ttl.ALREADY_EXPIRED),
        (2**31 - 1, 2**31 - 1),
    ],
)
def test_deadline(exptime: int, deadline: int) -> None:
    assert ttl.deadline(exptime, NOW) == deadline


@pytest.mark.parametrize(
    ("exptime", "expired"),
    [(0, False), (1, False), (THIRTY_DAYS, False), (THIRTY_DAYS + 1, True), (-1, True)],
)
def test_expired_at_once(exptime: int, expired: bool) -> None:
    assert ttl.is_expired(ttl.deadline(exptime, NOW), NOW) is expired


def test_relative_ttl_expires_at_its_second() -> None:
    deadline = ttl.deadline(10, NOW)
    assert not ttl.is_expired(deadline, NOW + 9)
    assert ttl.is_expired(deadline, NOW + 10)  # memcached: exptime <= current_time


def test_remaining() -> None:
    assert ttl.remaining(ttl.NEVER, NOW) == -1
    assert ttl.remaining(NOW + 30, NOW) == 30
    assert ttl.remaining(NOW - 5, NOW) == 0
