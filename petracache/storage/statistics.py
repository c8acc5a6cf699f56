"""What the storage layer counts for ``stats`` and /metrics: plain integers, read on demand."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class EngineCounters:
    """Plain integer counters, read by stats and /metrics on demand."""

    expired_lazy: int = 0
    # Background reclaim (storage.reclaim): items deleted because they expired, because a
    # flush_all covered them, or to stay under max_disk_bytes; their key+value bytes; and the
    # SST bytes that the reclaimer's compactions gave back to the filesystem.
    expired_reaped: int = 0
    flushed_reaped: int = 0
    evictions: int = 0
    reclaimed_bytes: int = 0
    compactions: int = 0
    compacted_bytes: int = 0
    flushed_lazy: int = 0
    corrupt_values: int = 0
    total_items: int = 0
    extra: dict[str, int] = field(default_factory=dict)
