"""The Prometheus collector behind ``/metrics``.

Strategy (collect on scrape): the data plane only updates plain Python ints, dicts and lists
on the trio thread -- ``Counters`` fields, and ``request_metrics.RequestMetrics`` (request
counts by command and result, and a latency histogram per command as a list of bucket
counts). No prometheus_client object is touched per request. ``PetracacheCollector.collect``
runs on the admin thread at scrape time and builds every metric family from snapshots of
those values (``dict.copy``/``list(...)`` are single C calls under the GIL, so a scrape
never sees a dict change size under it) and from ``Engine.statistics()`` for the RocksDB
gauges.

Prometheus counters here are monotonic: ``stats reset`` rebases what ``stats`` shows (see
``counters.py``), it does not zero what ``/metrics`` reports.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from petracache import __version__
from petracache.observability.counters import Counters
from petracache.observability.request_metrics import (
    MAX_BUCKET_BITS,
    MIN_BUCKET_BITS,
    RequestMetrics,
)
from petracache.rules.build import BUILD
from petracache.rules.versions import MEMCACHED_VERSION
from petracache.storage.engine import Engine

# The exported latency buckets' upper bounds in seconds (``request_metrics`` has the slots).
LATENCY_BOUNDS: tuple[float, ...] = tuple(
    2**k / 1e9 for k in range(MIN_BUCKET_BITS, MAX_BUCKET_BITS + 1)
)


# Counters fields exported under another name (the rest become petracache_<field>_total).
_COUNTER_NAMES = {
    "total_connections": ("connections", "Connections accepted (including rejected ones)."),
    "rejected_connections": ("connections_rejected", "Connections refused: over the limit."),
    "cas_badval": ("cas_conflicts", "cas commands refused: the item changed (EXISTS)."),
    "bytes_read": ("read_bytes", "Bytes read from clients."),
    "bytes_written": ("written_bytes", "Bytes written to clients."),
    "store_no_memory": (
        "store_no_memory",
        "Stores refused at the disk bound with eviction off (-M; memcached store_no_memory).",
    ),
    "idle_kicks": ("idle_kicks", "Connections closed by server.idle_timeout."),
    "conn_yields": ("conn_yields", "Pipelined reads cut at reqs_per_event (memcached -R)."),
    "listen_disabled_num": (
        "listen_disabled",
        "Runs of failed accepts for lack of file descriptors (memcached listen_disabled_num).",
    ),
    "time_in_listen_disabled_us": (
        "listen_disabled_microseconds",
        "Time accepts kept failing for lack of file descriptors.",
    ),
}
_GAUGE_NAMES = {"curr_connections": ("current_connections", "Open client connections.")}


# EngineCounters fields -> (metric, help); read with getattr so a missing one reads 0.
_ENGINE_COUNTERS = (
    ("evictions", "petracache_evictions", "Items evicted to stay under storage.max_disk_bytes."),
    ("total_items", "petracache_items_stored", "Items written (memcached total_items)."),
    ("reclaimed_bytes", "petracache_reclaimed_bytes", "Key+value bytes of reclaimed items."),
    ("compactions", "petracache_reclaim_compactions", "Compactions run by the reclaimer."),
    (
        "compacted_bytes",
        "petracache_reclaim_compacted_bytes",
        "SST bytes freed by the reclaimer's compactions.",
    ),
    ("corrupt_values", "petracache_corrupt_values", "Stored values that failed to decode."),
)


def _zero() -> int:
    return 0


@dataclass(slots=True)
class ServerFigures:
    """What the collector reports about the running server beyond the counters and the
    engine (app.py fills it in; each callable is read at scrape time, on the admin thread,
    and reads a plain attribute the trio thread writes)."""

    max_connections: int = 0
    disk_bound: Callable[[], int] = field(default=_zero)  # 0: no bound (cache_memlimit moves it)
    reclaim_lag: Callable[[], int] = field(default=_zero)


class HealthView(Protocol):
    """What the storage-health metrics read (``server.health.StorageHealth``)."""

    writable: bool
    needs_restart: bool
    failures: int


class PetracacheCollector(Collector):
    """Builds every petracache metric family at scrape time.

    Args:
        counters: the data plane's memcached counters.
        requests: per-command results and latencies.
        engine: the open engine, or None while starting/after closing (no RocksDB gauges).
        server: the limits and background work's figures (``ServerFigures``).
    """

    def __init__(self, counters: Counters, requests: RequestMetrics) -> None:
        self.counters = counters
        self.requests = requests
        self.engine: Engine | None = None
        self.server = ServerFigures()
        self.health: HealthView | None = None

    def collect(self) -> Iterator[Metric]:
        yield _build_info()
        yield from self._requests()
        yield from self._counters()
        yield from self._server()
        engine = self.engine
        if engine is not None:
            yield from self._engine(engine)
            yield from self._items(engine)
            yield from self._durability(engine)

    def _server(self) -> Iterator[Metric]:
        server = self.server
        yield GaugeMetricFamily(
            "petracache_max_connections",
            "Client connections allowed (server.max_connections, memcached -c).",
            value=server.max_connections,
        )
        yield GaugeMetricFamily(
            "petracache_disk_bound_bytes",
            "The disk bound eviction keeps under (storage.max_disk_bytes or cache_memlimit); "
            "0: none.",
            value=server.disk_bound(),
        )
        yield GaugeMetricFamily(
            "petracache_reclaim_lag_seconds",
            "How long the oldest expired item still stored has been dead (reclaim behind).",
            value=server.reclaim_lag(),
        )

    def _durability(self, engine: Engine) -> Iterator[Metric]:
        """Writes that did not reach the disk as promised, whether writes can be made durable
        now, and the disk the bound applies to."""
        sequence = engine.sequence
        yield CounterMetricFamily(
            "petracache_wal_fsyncs",
            "WAL fsyncs made by group commit (durability = fsync).",
            value=sequence.syncs,
        )
        yield CounterMetricFamily(
            "petracache_wal_fsync_failures",
            "WAL fsyncs that failed: the writes they covered were not acknowledged.",
            value=sequence.sync_failures,
        )
        yield CounterMetricFamily(
            "petracache_read_write_failures",
            "Writes a read makes on the side (lazy delete, fetch record) that failed.",
            value=engine.counters.extra.get("read_write_failures", 0),
        )
        yield from self._health()
        try:
            used = engine.db.disk_usage()
        except Exception:  # the engine may be closing; best effort, as the RocksDB gauges
            return
        yield GaugeMetricFamily(
            "petracache_disk_used_bytes",
            "SST plus WAL (or memtable) bytes: what the disk bound limits.",
            value=used,
        )

    def _health(self) -> Iterator[Metric]:
        """Whether writes can be made durable now (``server.health``)."""
        health = self.health
        if health is None:
            return
        yield GaugeMetricFamily(
            "petracache_storage_writable",
            "1 while writes can be made durable; 0 after a failed write or fsync, until a "
            "probe succeeds (/ready answers 503 meanwhile).",
            value=int(health.writable),
        )
        yield GaugeMetricFamily(
            "petracache_storage_needs_restart",
            "1 while the storage failure is one RocksDB does not resume from by itself.",
            value=int(health.needs_restart),
        )
        yield CounterMetricFamily(
            "petracache_storage_failures",
            "Times the storage went from writable to failing.",
            value=health.failures,
        )

    def _requests(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "petracache_requests",
            "Requests by command and result (a multi-key get counts each key).",
            labels=["command", "result"],
        )
        hist = HistogramMetricFamily(
            "petracache_request_duration_seconds",
            "Time to execute a request on the server (parsing and network excluded).",
            labels=["command"],
        )
        for command, stats in sorted(self.requests.commands.copy().items()):
            for result, count in sorted(stats.counts().items()):
                family.add_metric([command, result], count)
            slots = list(stats.buckets)
            total = sum(slots[: MIN_BUCKET_BITS + 1])
            cumulative = [(repr(LATENCY_BOUNDS[0]), float(total))]
            for bits, bound in zip(
                range(MIN_BUCKET_BITS + 1, MAX_BUCKET_BITS + 1), LATENCY_BOUNDS[1:], strict=True
            ):
                total += slots[bits]
                cumulative.append((repr(bound), float(total)))
            cumulative.append(("+Inf", float(sum(slots))))
            hist.add_metric([command], cumulative, stats.total_ns / 1e9)
        yield family
        yield hist

    def _counters(self) -> Iterator[Metric]:
        for name, value in self.counters.snapshot().items():
            if name in _GAUGE_NAMES:
                metric, doc = _GAUGE_NAMES[name]
                yield GaugeMetricFamily(f"petracache_{metric}", doc, value=value)
            else:
                metric, doc = _COUNTER_NAMES.get(name, (name, f"memcached stats {name}."))
                yield CounterMetricFamily(f"petracache_{metric}", doc, value=value)

    def _engine(self, engine: Engine) -> Iterator[Metric]:
        ec = engine.counters
        by_mode = (
            ("petracache_items_expired", "Expired items removed", "expired"),
            ("petracache_items_flushed", "Items removed because flush_all covered them", "flushed"),
        )
        for name, doc, stem in by_mode:
            family = CounterMetricFamily(
                name, f"{doc}: on access (lazy) or by the background reclaimer.", labels=["mode"]
            )
            family.add_metric(["lazy"], getattr(ec, f"{stem}_lazy", 0))
            family.add_metric(["background"], getattr(ec, f"{stem}_reaped", 0))
            yield family
        for attr, name, doc in _ENGINE_COUNTERS:
            yield CounterMetricFamily(name, doc, value=getattr(ec, attr, 0))
        try:
            stats = engine.db.statistics()
        except Exception:  # the engine may be closing; the gauges are best effort
            return
        for label, value in stats.items():
            yield GaugeMetricFamily(
                f"petracache_rocksdb_{label}", f"RocksDB {label.replace('_', ' ')}.", value=value
            )

    def _items(self, engine: Engine) -> Iterator[Metric]:
        """The exact counts (``stats`` curr_items and bytes) and the cold-start count."""
        counts = engine.item_counts
        if counts.exact:
            yield GaugeMetricFamily(
                "petracache_curr_items", "Items stored (memcached curr_items).", value=counts.items
            )
            yield GaugeMetricFamily(
                "petracache_bytes", "Keys and values stored (memcached bytes).", value=counts.bytes
            )
        yield CounterMetricFamily(
            "petracache_cold_starts",
            "Starts that invalidated everything stored (down longer than max_warm_downtime).",
            value=engine.counters.extra.get("cold_starts", 0),
        )
        hot = engine.hot
        yield GaugeMetricFamily(
            "petracache_hot_items", "Items kept decoded in memory (storage.hot).", value=len(hot)
        )
        yield GaugeMetricFamily(
            "petracache_hot_bytes", "Memory the hot items take (storage.hot).", value=hot.bytes
        )
        for name, value in (
            ("hits", hot.hits),
            ("misses", hot.misses),
            ("evictions", hot.evictions),
        ):
            yield CounterMetricFamily(
                f"petracache_hot_{name}", f"Hot-item lookups and evictions: {name}.", value=value
            )


def _build_info() -> Metric:
    """``petracache_build_info``: 1, labelled with what was built and what it runs on
    (``build``: ``mypyc`` when the compiled modules run, else ``pure``)."""
    family = GaugeMetricFamily(
        "petracache_build_info",
        "petracache's version, the memcached release it reproduces, Python, rocksdict, build.",
        labels=["version", "memcached", "python", "rocksdict", "build"],
    )
    family.add_metric(
        [
            __version__,
            MEMCACHED_VERSION,
            platform.python_version(),
            _rocksdict_version(),
            BUILD,
        ],
        1,
    )
    return family


@functools.cache
def _rocksdict_version() -> str:
    try:
        return importlib.metadata.version("rocksdict")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
