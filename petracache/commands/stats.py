"""The ``stats`` command's figures, with memcached's names and formats.

Values are computed when asked, from the counters, the engine and the process; nothing here
runs on the request hot path.
"""

from __future__ import annotations

import os
import resource
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from petracache.observability.counters import Counters, counts
from petracache.rules.versions import SERVER_VERSION
from petracache.storage.engine import Engine


@dataclass(slots=True)
class ServerInfo:
    """Facts about the running server that stats reports."""

    max_connections: int
    item_size_max: int
    started: float = field(default_factory=time.time)
    threads: int = 1
    verbosity: int = 0
    extra_settings: Callable[[], list[tuple[str, str]]] | None = None
    auth_enabled: bool = False  # memcached lists auth_cmds/auth_errors only with -Y


def reset_stats(counters: Counters, engine: Engine) -> None:
    """``stats reset``: rebase the counters memcached's stats_reset zeroes (the request
    counters and the engine's). Nothing is zeroed: ``/metrics`` stays monotonic."""
    counters.reset(counts(engine.counters))


def general_stats(counters: Counters, engine: Engine, info: ServerInfo) -> list[tuple[str, str]]:
    """``stats`` with no argument: memcached's general-purpose statistics."""
    now = time.time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    db = engine.statistics()
    c = counters.since_reset()
    ec = counters.since_reset(counts(engine.counters))
    values: list[tuple[str, object]] = [
        ("pid", os.getpid()),
        ("uptime", int(now - info.started)),
        ("time", int(now)),
        ("version", SERVER_VERSION),  # the same text as the version command
        ("libevent", "trio"),
        ("pointer_size", struct.calcsize("P") * 8),
        ("rusage_user", f"{usage.ru_utime:.6f}"),
        ("rusage_system", f"{usage.ru_stime:.6f}"),
        ("max_connections", info.max_connections),
        ("curr_connections", c["curr_connections"]),
        ("total_connections", c["total_connections"]),
        ("rejected_connections", c["rejected_connections"]),
        ("connection_structures", c["curr_connections"] + 1),
        ("cmd_get", c["cmd_get"]),
        ("cmd_set", c["cmd_set"]),
        ("cmd_flush", c["cmd_flush"]),
        ("cmd_touch", c["cmd_touch"]),
        ("get_hits", c["get_hits"]),
        ("get_misses", c["get_misses"]),
        ("get_expired", ec["expired_lazy"]),
        ("get_flushed", ec["flushed_lazy"]),
        ("delete_misses", c["delete_misses"]),
        ("delete_hits", c["delete_hits"]),
        ("incr_misses", c["incr_misses"]),
        ("incr_hits", c["incr_hits"]),
        ("decr_misses", c["decr_misses"]),
        ("decr_hits", c["decr_hits"]),
        ("cas_misses", c["cas_misses"]),
        ("cas_hits", c["cas_hits"]),
        ("cas_badval", c["cas_badval"]),
        ("touch_hits", c["touch_hits"]),
        ("touch_misses", c["touch_misses"]),
        ("store_too_large", c["store_too_large"]),
        *(
            [("auth_cmds", c["auth_cmds"]), ("auth_errors", c["auth_errors"])]
            if info.auth_enabled
            else []
        ),
        ("bytes_read", c["bytes_read"]),
        ("bytes_written", c["bytes_written"]),
        ("limit_maxbytes", _limit_maxbytes(engine)),
        ("threads", info.threads),
        ("bytes", db["live_data_bytes"] + db["memtable_bytes"]),
        ("curr_items", db["estimated_keys"]),
        ("total_items", ec["total_items"]),
        ("expired_unfetched", ec.get("expired_unfetched", 0)),
        ("evicted_unfetched", ec.get("evicted_unfetched", 0)),
        ("evictions", ec.get("evictions", 0)),
        ("evicted_active", ec.get("evicted_active", 0)),  # spared by eviction = clock
        ("expired_reaped", ec.get("expired_reaped", 0)),
        ("flushed_reaped", ec.get("flushed_reaped", 0)),
        ("reclaimed_bytes", ec.get("reclaimed_bytes", 0)),
        ("compacted_bytes", ec.get("compacted_bytes", 0)),
        ("reclaim_flushes", ec.get("reclaim_flushes", 0)),  # memtable flushes releasing the WAL
        ("corrupt_values", ec.get("corrupt_values", 0)),  # undecodable values read as misses
        ("wal_fsyncs", engine.commit.syncs),  # group commits (durability = fsync)
        # writes a read makes on the side (lazy delete, fetch record) that failed, e.g. ENOSPC
        ("read_write_failures", ec.get("read_write_failures", 0)),
    ]
    return [(name, str(value)) for name, value in values]


def _limit_maxbytes(engine: Engine) -> int:
    """The capacity bound (storage.max_disk_bytes) if set, else the block cache size."""
    return getattr(engine.settings, "max_disk_bytes", 0) or engine.settings.block_cache_size


def settings_stats(engine: Engine, info: ServerInfo) -> list[tuple[str, str]]:
    """``stats settings``: the effective configuration under memcached's names."""
    values: list[tuple[str, object]] = [
        ("maxbytes", _limit_maxbytes(engine)),
        ("maxconns", info.max_connections),
        ("item_size_max", info.item_size_max),
        ("verbosity", info.verbosity),
        ("evictions", "on"),
        ("cas_enabled", "yes"),
        ("flush_enabled", "yes"),
        ("num_threads", info.threads),
        ("db_path", engine.settings.db_path),
        ("durability", engine.settings.durability),
    ]
    if info.extra_settings is not None:
        values.extend(info.extra_settings())
    return [(name, str(value)) for name, value in values]
