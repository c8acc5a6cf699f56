"""Process-wide request counters, named after memcached's ``stats`` fields.

Plain integer attributes on one slotted object: incrementing one costs a Python attribute
update, nothing more. ``stats`` and ``/metrics`` read them when asked (collect on scrape).

Invariant: the fields only ever grow (gauges excepted), so ``/metrics`` stays a proper
Prometheus counter. ``stats reset`` does not zero them; it records a baseline, and
``since_reset`` reports each counter minus its baseline, which is what memcached's
``stats`` shows after a reset. That one baseline covers the storage engine's counters too
(``storage.statistics.EngineCounters``, flattened by ``counts``): one reset for every counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Final

# Gauges are current values: ``stats reset`` leaves them alone (memcached keeps
# curr_connections too).
GAUGES: Final = frozenset({"curr_connections"})


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
    store_no_memory: int = 0  # stores refused at the disk bound with evictions off (-M)
    auth_cmds: int = 0  # credential checks (memcached -Y)
    auth_errors: int = 0  # ... that failed
    storage_errors: int = 0
    protocol_errors: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    total_connections: int = 0
    rejected_connections: int = 0
    curr_connections: int = 0
    idle_kicks: int = 0  # connections closed by server.idle_timeout
    conn_yields: int = 0  # reads cut at reqs_per_event (-R): memcached's yield points
    listen_disabled_num: int = 0  # runs of failed accepts (out of descriptors)
    time_in_listen_disabled_us: int = 0  # ... and their length
    baseline: dict[str, int] = field(default_factory=dict, repr=False)

    def reset(self, *others: dict[str, int]) -> None:
        """``stats reset``: from now on ``since_reset`` counts from the current values.

        Args:
            others: more counters to rebase with these (the engine's, from ``counts``).
        """
        base = {name: value for name, value in self.snapshot().items() if name not in GAUGES}
        for values in others:
            base.update(values)
        self.baseline = base

    def snapshot(self) -> dict[str, int]:
        """Every counter's absolute value, by name (what ``/metrics`` exports)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "baseline"}

    def since_reset(self, values: dict[str, int] | None = None) -> dict[str, int]:
        """Each counter minus its value at the last ``stats reset`` (what ``stats`` shows).

        Args:
            values: other counters (``counts`` of the engine's) instead of these.
        """
        base = self.baseline
        current = self.snapshot() if values is None else values
        return {name: value - base.get(name, 0) for name, value in current.items()}


def counts(obj: Any) -> dict[str, int]:
    """A counters dataclass's integer fields by name, plus its optional ``extra`` dict."""
    out: dict[str, int] = dict(getattr(obj, "extra", {}))
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, int):
            out[f.name] = value
    return out
