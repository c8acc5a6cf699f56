"""memcached's TTL rules as pure functions of (exptime, now).

From protocol.txt: "The actual value sent may either be Unix time (number of seconds since
January 1, 1970, as a 32-bit value), or a number of seconds starting from current time. In the
latter case, this number of seconds may not exceed 60*60*24*30 (number of seconds in 30 days);
if the number sent by a client is larger than that, the server will consider it to be real Unix
time value rather than an offset from current time."

A deadline is an absolute Unix time in whole seconds; 0 means "never". memcached maps a
negative exptime to a time in 1970, i.e. already expired; we use ``ALREADY_EXPIRED`` (1).
An item is dead when ``deadline != 0 and deadline <= now`` (memcached: ``exptime <= current_time``).
"""

from __future__ import annotations

from typing import Final

REALTIME_MAXDELTA: Final = 60 * 60 * 24 * 30
NEVER: Final = 0
ALREADY_EXPIRED: Final = 1
DEADLINE_MAX: Final = 0xFFFFFFFF
# memcached sets process_started = start - ITEM_UPDATE_INTERVAL (60) - 2 seconds.
EPOCH_SLACK: Final = 62


def deadline(exptime: int, now: int) -> int:
    """The absolute deadline for a client exptime received at ``now``."""
    if exptime == 0:
        return NEVER
    if exptime < 0:
        return ALREADY_EXPIRED
    if exptime > REALTIME_MAXDELTA:
        return min(exptime, DEADLINE_MAX)
    return min(now + exptime, DEADLINE_MAX)


def is_expired(item_deadline: int, now: int) -> bool:
    """Whether an item with this deadline is dead at ``now``."""
    return item_deadline != NEVER and item_deadline <= now


def remaining(item_deadline: int, now: int) -> int:
    """Seconds left, or -1 for an item that never expires (meta ``t`` flag semantics)."""
    if item_deadline == NEVER:
        return -1
    return max(item_deadline - now, 0)
