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
from typing import Final

from petracache.observability.counters import Counters, counts
from petracache.rules.build import BUILD
from petracache.rules.versions import SERVER_VERSION
from petracache.storage.engine import Engine


@dataclass(slots=True)
class ServerInfo:
    """Facts about the running server that stats reports, and the admin commands' hooks.

    ``app.py`` fills in what only the server knows (addresses, connections, how to stop);
    tests leave the defaults.
    """

    max_connections: int
    item_size_max: int
    started: float = field(default_factory=time.time)
    threads: int = 1
    verbosity: int = 0
    extra_settings: Callable[[], list[tuple[str, str]]] | None = None
    auth_enabled: bool = False  # memcached lists auth_cmds/auth_errors only with -Y
    flush_enabled: bool = True  # memcached -F turns it off
    shutdown_enabled: bool = False  # memcached -A turns it on
    tls_enabled: bool = False
    idle_timeout: float = 0.0
    listen: list[tuple[str, int]] = field(default_factory=list)  # bound data addresses
    # ``stats conns`` rows (server.conns), and the ``shutdown`` command's way to stop.
    connections: Callable[[], list[tuple[str, str]]] | None = None
    request_shutdown: Callable[[bool], None] | None = None
    # ``cache_memlimit``: sets the disk bound at run time (None: no bound, so no eviction).
    set_disk_bound: Callable[[int], bool] | None = None
    disk_bound: int = 0  # the bound cache_memlimit set (0: storage.max_disk_bytes)
    slab_automove: int = 0  # ``slabs automove`` is accepted and remembered, nothing moves
    slab_automove_ratio: float = 0.8
    # Whether new connections are being accepted (``accepting_conns``): None = always.
    accepting: Callable[[], bool] | None = None
    domain_socket: str = ""  # server.unix_socket (memcached -s)
    umask: str = "700"  # server.unix_mask, octal (memcached -a)
    tcp_port: int = 11211  # the configured port (memcached reports -p's even with -s)
    reqs_per_event: int = 20  # memcached -R
    cas_enabled: bool = True  # memcached -C turns it off
    binding_protocol: str = "auto"  # memcached -B: auto, ascii or binary
    sasl_enabled: bool = False  # memcached -S
    # storage_writable, storage_needs_restart, storage_failures (server.health)
    storage_health: Callable[[], list[tuple[str, int]]] | None = None


TCP_BACKLOG: Final = 4096  # server.serve: the listen backlog
# memcached's prot_text(): how stats settings spells each binding_protocol.
PROTOCOL_TEXT: Final = {"auto": "auto-negotiate", "ascii": "ascii", "binary": "binary"}


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def reset_stats(counters: Counters, engine: Engine) -> None:
    """``stats reset``: rebase the counters memcached's stats_reset zeroes (the request
    counters and the engine's). Nothing is zeroed: ``/metrics`` stays monotonic."""
    counters.reset(counts(engine.counters))


def general_stats(counters: Counters, engine: Engine, info: ServerInfo) -> list[tuple[str, str]]:
    """``stats`` with no argument: memcached's general-purpose statistics."""
    now = time.time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    db = engine.db.statistics()
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
        ("store_no_memory", c["store_no_memory"]),
        *(
            [("auth_cmds", c["auth_cmds"]), ("auth_errors", c["auth_errors"])]
            if info.auth_enabled
            else []
        ),
        *([("idle_kicks", c["idle_kicks"])] if info.idle_timeout else []),  # as memcached
        ("bytes_read", c["bytes_read"]),
        ("bytes_written", c["bytes_written"]),
        ("limit_maxbytes", limit_maxbytes(engine, info)),
        ("accepting_conns", int(info.accepting is None or info.accepting())),
        ("listen_disabled_num", c["listen_disabled_num"]),
        ("time_in_listen_disabled_us", c["time_in_listen_disabled_us"]),
        ("threads", info.threads),
        ("conn_yields", c["conn_yields"]),
        ("bytes", stored_bytes(engine, db)),
        ("curr_items", curr_items(engine, db)),
        ("total_items", ec["total_items"]),
        ("expired_unfetched", ec.get("expired_unfetched", 0)),
        ("evicted_unfetched", ec.get("evicted_unfetched", 0)),
        ("evicted_active", ec.get("evicted_active", 0)),  # spared by eviction (clock, s3fifo)
        # eviction = s3fifo: moved from the small queue to the main one, and of those, the
        # ones the ghost of recently evicted keys sent (storage.reclaim.queues)
        ("moves_to_main", ec.get("moves_to_main", 0)),
        ("ghost_admissions", ec.get("ghost_admissions", 0)),
        ("evictions", ec.get("evictions", 0)),
        # dead items (expired or flushed) whose space the reclaimer took back
        ("reclaimed", ec.get("expired_reaped", 0) + ec.get("flushed_reaped", 0)),
        ("expired_reaped", ec.get("expired_reaped", 0)),
        ("flushed_reaped", ec.get("flushed_reaped", 0)),
        ("reclaimed_bytes", ec.get("reclaimed_bytes", 0)),
        ("compacted_bytes", ec.get("compacted_bytes", 0)),
        ("reclaim_flushes", ec.get("reclaim_flushes", 0)),  # memtable flushes releasing the WAL
        # flushes + compactions of everything when the disk was over the mark with garbage
        ("garbage_reclaims", ec.get("garbage_reclaims", 0)),
        ("corrupt_values", ec.get("corrupt_values", 0)),  # undecodable values read as misses
        ("wal_fsyncs", engine.sequence.syncs),  # group commits (durability = fsync)
        ("wal_fsync_failures", engine.sequence.sync_failures),  # ... that failed
        ("storage_errors", c["storage_errors"]),  # commands answered SERVER_ERROR by storage
        *(
            info.storage_health()
            if info.storage_health is not None
            else [("storage_writable", 1), ("storage_needs_restart", 0), ("storage_failures", 0)]
        ),
        # writes a read makes on the side (lazy delete, fetch record) that failed, e.g. ENOSPC
        ("read_write_failures", ec.get("read_write_failures", 0)),
        # starts that invalidated what was stored (down longer than max_warm_downtime)
        ("cold_starts", ec.get("cold_starts", 0)),
        # the hot items in memory in front of RocksDB (storage.hot_cache_size)
        ("hot_items", len(engine.hot)),
        ("hot_bytes", engine.hot.bytes),
        ("hot_limit", engine.hot.capacity),
        ("hot_hits", engine.hot.hits),
        ("hot_misses", engine.hot.misses),
        ("hot_evictions", engine.hot.evictions),
        # every key's size in memory, for exact counts without reads (storage.key_sizes)
        ("key_index_bytes", 0 if engine.key_sizes is None else engine.key_sizes.nbytes),
        # group commits that failed (none of their writes stored)
        ("commit_failures", ec.get("commit_failures", 0)),
    ]
    return [(name, str(value)) for name, value in values]


def curr_items(engine: Engine, db: dict[str, int] | None = None) -> int:
    """The exact item count (``storage.item_counts``); RocksDB's estimate while a recount runs."""
    counts = engine.item_counts
    if counts.exact:
        return counts.items
    return (db or engine.db.statistics())["estimated_keys"]


def stored_bytes(engine: Engine, db: dict[str, int] | None = None) -> int:
    """Keys + values as stored (``storage.item_counts``); RocksDB's estimate while recounting."""
    counts = engine.item_counts
    if counts.exact:
        return counts.bytes
    figures = db or engine.db.statistics()
    return figures["live_data_bytes"] + figures["memtable_bytes"]


def limit_maxbytes(engine: Engine, info: ServerInfo) -> int:
    """The disk bound (``cache_memlimit``'s, else ``storage.max_disk_bytes``) if set, else
    the size of the filesystem holding the database: the bound that then applies (0 if it
    cannot be read)."""
    bound = info.disk_bound or engine.settings.max_disk_bytes
    if bound:
        return int(bound)
    try:
        fs = os.statvfs(engine.settings.db_path)
    except OSError:
        return 0
    return fs.f_blocks * fs.f_frsize


def settings_stats(engine: Engine, info: ServerInfo) -> list[tuple[str, str]]:
    """``stats settings``: memcached 1.6.18's keys that mean something here, in its order,
    then petracache's own (``db_path`` onwards). Keys for features petracache does not have
    (slab sizing, hash tables, extstore, UDP threads) are left out rather than invented."""
    host, port = info.listen[0] if info.listen else ("", info.tcp_port)
    storage = engine.settings
    values: list[tuple[str, object]] = [
        ("maxbytes", limit_maxbytes(engine, info)),
        ("maxconns", info.max_connections),
        ("tcpport", port),
        ("udpport", 0),
        ("inter", host or "NULL"),
        ("verbosity", info.verbosity),
        ("evictions", "on" if storage.max_disk_bytes and storage.eviction != "none" else "off"),
        ("domain_socket", info.domain_socket or "NULL"),
        ("umask", info.umask),
        ("shutdown_command", _yes(info.shutdown_enabled)),
        ("num_threads", info.threads),
        ("stat_key_prefix", ":"),
        ("reqs_per_event", info.reqs_per_event),
        ("cas_enabled", _yes(info.cas_enabled)),
        ("tcp_backlog", TCP_BACKLOG),
        ("binding_protocol", PROTOCOL_TEXT.get(info.binding_protocol, info.binding_protocol)),
        ("auth_enabled_sasl", _yes(info.sasl_enabled)),
        ("auth_enabled_ascii", _yes(info.auth_enabled)),
        ("item_size_max", info.item_size_max),
        ("maxconns_fast", "yes"),  # over the limit: refused at once with an ERROR line
        ("slab_reassign", "no"),
        ("slab_automove", info.slab_automove),
        ("slab_automove_ratio", f"{info.slab_automove_ratio:.2f}"),
        ("lru_crawler", "yes"),
        ("flush_enabled", _yes(info.flush_enabled)),
        ("dump_enabled", "yes"),
        ("idle_timeout", int(info.idle_timeout)),
        ("track_sizes", "no"),
        ("ssl_enabled", _yes(info.tls_enabled)),
        ("db_path", storage.db_path),
        ("durability", storage.durability),
        ("max_disk_bytes", storage.max_disk_bytes),
        ("max_warm_downtime", f"{storage.max_warm_downtime:g}"),
        ("build", BUILD),  # mypyc or pure: which build of the hot modules runs
    ]
    if info.extra_settings is not None:
        values.extend(info.extra_settings())
    return [(name, str(value)) for name, value in values]
