"""Process-wide request counters, named after memcached's ``stats`` fields.

Plain integer attributes on one slotted object: incrementing one costs a Python attribute
update, nothing more. ``stats`` and ``/metrics`` read them when asked (collect on scrape);
``stats reset`` zeroes the resettable ones.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(slots=True)
class Counters:
    """memcached-compatible counters plus a few of petracache's own."""

    cmd_get: int = 0
    cmd_set: int = 0
    cmd_flush: int = 0
    cmd_touch: int = 0
    get_hits: int = 0
    get_misses: int = 0
    delete_hits: int = 0
    delete_misses: int = 0
    incr_hits: int = 0
    incr_misses: int = 0
    decr_hits: int = 0
    decr_misses: int = 0
    cas_hits: int = 0
    cas_misses: int = 0
    cas_badval: int = 0
    touch_hits: int = 0
    touch_misses: int = 0
    store_too_large: int = 0
    storage_errors: int = 0
    protocol_errors: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    total_connections: int = 0
    rejected_connections: int = 0
    curr_connections: int = 0

    # Gauges survive ``stats reset`` (memcached keeps curr_connections too).
    _GAUGES = frozenset({"curr_connections"})

    def reset(self) -> None:
        """Zero every counter except the gauges (``stats reset``)."""
        for f in fields(self):
            if f.name not in self._GAUGES:
                setattr(self, f.name, 0)

    def snapshot(self) -> dict[str, int]:
        """All values, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
