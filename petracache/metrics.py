"""Request metrics and the Prometheus collector behind ``/metrics``.

Strategy (collect on scrape): the data plane only updates plain Python ints, dicts and lists
on the trio thread -- ``Counters`` fields, and here ``RequestMetrics`` (request counts by
command and result, and a latency histogram per command as a list of bucket counts). No
prometheus_client object is touched per request. ``PetracacheCollector.collect`` runs on the
admin thread at scrape time and builds every metric family from snapshots of those values
(``dict.copy``/``list(...)`` are single C calls under the GIL, so a scrape never sees a dict
change size under it) and from ``Engine.statistics()`` for the RocksDB gauges.

Prometheus counters here are monotonic: ``stats reset`` rebases what ``stats`` shows (see
``counters.py``), it does not zero what ``/metrics`` reports.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Iterator
from time import perf_counter
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from petracache.counters import Counters
from petracache.protocol.requests import Arithmetic, Get, Request, Store, TooLarge
from petracache.protocol.responses import ErrorReply, Number, Response, Status, Values
from petracache.storage.engine import Engine

# Upper bounds (seconds) of the latency buckets: 5 us to 1 s, roughly 1-2.5-5 per decade.
# A command runs in microseconds when its data is in the block cache and in milliseconds
# when RocksDB reads from disk, so the interesting range spans both.
LATENCY_BOUNDS: tuple[float, ...] = (
    5e-6,
    10e-6,
    25e-6,
    50e-6,
    100e-6,
    250e-6,
    500e-6,
    1e-3,
    2.5e-3,
    5e-3,
    10e-3,
    25e-3,
    50e-3,
    100e-3,
    250e-3,
    1.0,
)

_STATUS_RESULTS: dict[Status, str] = {
    Status.STORED: "stored",
    Status.NOT_STORED: "not_stored",
    Status.EXISTS: "exists",
    Status.NOT_FOUND: "not_found",
    Status.DELETED: "hit",
    Status.TOUCHED: "hit",
    Status.ERROR: "error",
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _get_name(request: Get) -> str:
    base = "gat" if request.exptime is not None else "get"
    return base + "s" if request.return_cas else base


# Commands whose name depends on the request's fields; others are named after their class.
_NAMERS: dict[type, Callable[[Any], str]] = {
    Get: _get_name,
    Store: lambda r: r.mode.value,
    TooLarge: lambda r: r.mode.value,
    Arithmetic: lambda r: "incr" if r.incr else "decr",
}


class RequestMetrics:
    """Per-command request counts by result, and latency histograms, in plain containers.

    ``results[(command, result)]`` counts requests (a multi-key get counts each key);
    ``buckets[command][i]`` counts requests whose execution took at most
    ``LATENCY_BOUNDS[i]`` seconds (the last slot is +Inf), non-cumulatively;
    ``sums[command]`` is the total execution time.
    """

    def __init__(self) -> None:
        self.results: dict[tuple[str, str], int] = {}
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}
        self._names: dict[type, str] = {}

    def command_name(self, request: Request) -> str:
        """get/gets/gat/gats, the store verb, incr/decr, or the class name in snake case."""
        cls = request.__class__
        namer = _NAMERS.get(cls)
        if namer is not None:
            return namer(request)
        name = self._names.get(cls)
        if name is None:
            name = self._names[cls] = _snake(cls.__name__)
        return name

    def instrument(self, execute: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """Wrap the executor: time each request and count its result.

        Costs two clock reads, a bisect and a few dict updates per request, all on the trio
        thread (README "Metrics overhead" has the measured figure).
        """
        results = self.results
        buckets = self.buckets
        sums = self.sums
        statuses = _STATUS_RESULTS
        bounds = LATENCY_BOUNDS
        command_name = self.command_name
        size = len(bounds) + 1

        def timed_execute(request: Request) -> Response:
            start = perf_counter()
            response = execute(request)
            elapsed = perf_counter() - start
            command = command_name(request)
            cls = response.__class__
            if cls is Values:
                hits = len(response.hits)  # type: ignore[union-attr]
                # A multi-key get counts each key; other Values replies are one item.
                is_get = request.__class__ is Get
                misses = len(request.keys) - hits if is_get else int(not hits)  # type: ignore[union-attr]
                if hits:
                    key = (command, "hit")
                    results[key] = results.get(key, 0) + hits
                if misses:
                    key = (command, "miss")
                    results[key] = results.get(key, 0) + misses
            else:
                if cls is Status:
                    result = statuses.get(response, "ok")  # type: ignore[arg-type]
                elif cls is Number:
                    result = "hit"
                elif cls is ErrorReply:
                    result = "error"
                else:
                    result = "ok"
                key = (command, result)
                results[key] = results.get(key, 0) + 1
            hist = buckets.get(command)
            if hist is None:
                hist = buckets[command] = [0] * size
                sums[command] = 0.0
            hist[bisect_left(bounds, elapsed)] += 1
            sums[command] += elapsed
            return response

        return timed_execute


# Counters fields exported under another name (the rest become petracache_<field>_total).
_COUNTER_NAMES = {
    "total_connections": ("connections", "Connections accepted (including rejected ones)."),
    "rejected_connections": ("connections_rejected", "Connections refused: over the limit."),
    "cas_badval": ("cas_conflicts", "cas commands refused: the item changed (EXISTS)."),
    "bytes_read": ("read_bytes", "Bytes read from clients."),
    "bytes_written": ("written_bytes", "Bytes written to clients."),
}
_GAUGE_NAMES = {"curr_connections": ("current_connections", "Open client connections.")}


# EngineCounters fields -> (metric, help); read with getattr so a missing one reads 0.
_ENGINE_COUNTERS = (
    ("evictions", "petracache_evictions", "Items evicted to stay under storage.max_disk_bytes."),
    ("total_items", "petracache_items_stored", "Items written (memcached total_items)."),
    ("reclaimed_bytes", "petracache_reclaimed_bytes", "Key+value bytes of reclaimed items."),
    ("compactions", "petracache_reclaim_compactions", "Compactions run by the reclaimer."),
    ("corrupt_values", "petracache_corrupt_values", "Stored values that failed to decode."),
)


class PetracacheCollector(Collector):
    """Builds every petracache metric family at scrape time.

    Args:
        counters: the data plane's memcached counters.
        requests: per-command results and latencies.
        engine: the open engine, or None while starting/after closing (no RocksDB gauges).
    """

    def __init__(self, counters: Counters, requests: RequestMetrics) -> None:
        self.counters = counters
        self.requests = requests
        self.engine: Engine | None = None

    def collect(self) -> Iterator[Metric]:
        yield from self._requests()
        yield from self._counters()
        engine = self.engine
        if engine is not None:
            yield from self._engine(engine)

    def _requests(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "petracache_requests",
            "Requests by command and result (a multi-key get counts each key).",
            labels=["command", "result"],
        )
        for (command, result), count in sorted(self.requests.results.copy().items()):
            family.add_metric([command, result], count)
        yield family
        hist = HistogramMetricFamily(
            "petracache_request_duration_seconds",
            "Time to execute a request on the server (parsing and network excluded).",
            labels=["command"],
        )
        sums = self.requests.sums.copy()
        for command, raw in sorted(self.requests.buckets.copy().items()):
            counts = list(raw)
            cumulative: list[tuple[str, float]] = []
            total = 0
            for bound, count in zip((*LATENCY_BOUNDS, float("inf")), counts, strict=True):
                total += count
                cumulative.append(("+Inf" if bound == float("inf") else repr(bound), total))
            hist.add_metric([command], cumulative, sums.get(command, 0.0))
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
            stats = engine.statistics()
        except Exception:  # the engine may be closing; the gauges are best effort
            return
        for label, value in stats.items():
            yield GaugeMetricFamily(
                f"petracache_rocksdb_{label}", f"RocksDB {label.replace('_', ' ')}.", value=value
            )
