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

import functools
import importlib.metadata
import platform
import re
from collections.abc import Callable, Iterator
from time import perf_counter_ns

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from petracache import __version__, build
from petracache.observability.counters import Counters
from petracache.protocol.binary_requests import BinaryRequest
from petracache.protocol.meta_requests import MetaSet
from petracache.protocol.requests import Arithmetic, Get, Request, Store, TooLarge
from petracache.protocol.responses import (
    BinaryReply,
    ErrorReply,
    MetaCode,
    MetaReply,
    Number,
    Response,
    Status,
    Values,
)
from petracache.rules.versions import MEMCACHED_VERSION
from petracache.storage.engine import Engine

# Latency buckets are powers of two nanoseconds, so the hot path finds a request's bucket
# with ``elapsed_ns.bit_length()`` (no search): slot k counts 2**(k-1) <= ns < 2**k. The
# exported buckets run from 2**10 ns (~1 us: a cached get) to 2**30 ns (~1.07 s), which spans
# block-cache hits through RocksDB reads from a slow disk.
MIN_BUCKET_BITS = 10
MAX_BUCKET_BITS = 30
_SLOTS = 64  # bit_length of any int64 nanosecond count
LATENCY_BOUNDS: tuple[float, ...] = tuple(
    2**k / 1e9 for k in range(MIN_BUCKET_BITS, MAX_BUCKET_BITS + 1)
)

_STATUS_RESULTS: dict[Status, str] = dict.fromkeys(Status, "ok")
_STATUS_RESULTS.update(
    {
        Status.STORED: "stored",
        Status.NOT_STORED: "not_stored",
        Status.EXISTS: "exists",
        Status.NOT_FOUND: "not_found",
        Status.DELETED: "hit",
        Status.TOUCHED: "hit",
        Status.ERROR: "error",
    }
)
# Keyed by id(): Enum.__hash__ is Python code, id() and int hashing are not.
_STATUS_BY_ID = {id(status): result for status, result in _STATUS_RESULTS.items()}
# Meta codes by id() as well; HD and VA are "stored" for ms and "hit" for mg, md and ma
# (what STORED, DELETED and an incr's number count as).
_META_RESULTS = {
    id(MetaCode.EN): "miss",
    id(MetaCode.NS): "not_stored",
    id(MetaCode.NF): "not_found",
    id(MetaCode.EX): "exists",
    id(MetaCode.MN): "ok",
}
_META_SUCCESS = (id(MetaCode.HD), id(MetaCode.VA))
_GET_NAMES = ("get", "gets", "gat", "gats")  # index: 2 * (exptime given) + return_cas


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class CommandStats:
    """One command's figures: results by name, latency slots, total nanoseconds."""

    __slots__ = ("buckets", "results", "total_ns")

    def __init__(self) -> None:
        self.results: dict[str, int] = {}
        self.buckets = [0] * _SLOTS
        self.total_ns = 0


class RequestMetrics:
    """Per-command request counts by result, and latency histograms, in plain containers.

    ``commands[name]`` holds a ``CommandStats``; a multi-key get counts each key as a hit or
    a miss. Written only by the trio thread; read by the collector at scrape time.
    """

    def __init__(self) -> None:
        self.commands: dict[str, CommandStats] = {}
        self._names: dict[type, str] = {}

    def command_name(self, request: Request) -> str:
        """get/gets/gat/gats, the store verb, incr/decr, or the class name in snake case."""
        cls = request.__class__
        if cls is Get:
            return _GET_NAMES[2 * (request.exptime is not None) + request.return_cas]  # type: ignore[union-attr]
        if isinstance(request, (Store, TooLarge)):
            return request.mode.value
        if cls is Arithmetic:
            return "incr" if request.incr else "decr"  # type: ignore[union-attr]
        if isinstance(request, BinaryRequest):
            return request.command
        name = self._names.get(cls)
        if name is None:
            name = self._names[cls] = _snake(cls.__name__)
        return name

    def stats_for(self, name: str) -> CommandStats:
        """The record of command ``name``, created when the command is first seen."""
        stats = self.commands.get(name)
        if stats is None:
            stats = self.commands[name] = CommandStats()
        return stats

    def instrument(self, execute: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """Wrap the executor: time each request and count its result.

        Per request: two ``perf_counter_ns`` reads, the command's record (get/gets/gat/gats
        from a four-slot cache, a store by its verb, without building a name), a list slot
        and an int add for the latency, one dict update for the result, all on the trio
        thread (README "Metrics overhead" has the measured cost).
        """
        statuses = _STATUS_BY_ID
        stats_for = self.stats_for
        command_name = self.command_name
        clock = perf_counter_ns
        commands = self.commands
        # Records of get/gets/gat/gats by _GET_NAMES index: filled as each is first seen, so
        # /metrics lists only commands that ran.
        get_stats: list[CommandStats | None] = [None] * len(_GET_NAMES)

        def timed_execute(request: Request) -> Response:
            start = clock()
            response = execute(request)
            elapsed = clock() - start
            cls = request.__class__
            if cls is Get:
                slot = 2 * (request.exptime is not None) + request.return_cas  # type: ignore[union-attr]
                stats = get_stats[slot]
                if stats is None:
                    stats = get_stats[slot] = stats_for(_GET_NAMES[slot])
            elif cls is Store:
                # The verb's name is its mode's value (``_value_``: ``.value`` is a descriptor).
                name = request.mode._value_  # type: ignore[union-attr]
                stats = commands.get(name)
                if stats is None:
                    stats = stats_for(name)
            else:
                stats = stats_for(command_name(request))
            stats.buckets[elapsed.bit_length()] += 1
            stats.total_ns += elapsed
            results = stats.results
            rcls = response.__class__
            if rcls is Values:
                hits = len(response.hits)  # type: ignore[union-attr]
                # A multi-key get counts each key; other Values replies are one item.
                misses = len(request.keys) - hits if cls is Get else int(not hits)  # type: ignore[union-attr]
                if hits:
                    results["hit"] = results.get("hit", 0) + hits
                if misses:
                    results["miss"] = results.get("miss", 0) + misses
                return response
            result = statuses[id(response)] if rcls is Status else _result(response, cls)
            results[result] = results.get(result, 0) + 1
            return response

        return timed_execute


def _result(response: Response, request_class: type) -> str:
    """The result ``/metrics`` counts a reply other than ``Status`` and ``Values`` as."""
    rcls = response.__class__
    if rcls is MetaReply:
        code = id(response.code)  # type: ignore[union-attr]
        if code in _META_SUCCESS:
            return "stored" if request_class is MetaSet else "hit"
        return _META_RESULTS[code]
    if rcls is Number:
        return "hit"
    if rcls is ErrorReply:
        return "error"
    if rcls is BinaryReply:
        return response.result  # type: ignore[union-attr]
    return "ok"


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
    (
        "compacted_bytes",
        "petracache_reclaim_compacted_bytes",
        "SST bytes freed by the reclaimer's compactions.",
    ),
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
        yield _build_info()
        yield from self._requests()
        yield from self._counters()
        engine = self.engine
        if engine is not None:
            yield from self._engine(engine)
            yield from self._items(engine)

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
            for result, count in sorted(stats.results.copy().items()):
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
            stats = engine.statistics()
        except Exception:  # the engine may be closing; the gauges are best effort
            return
        for label, value in stats.items():
            yield GaugeMetricFamily(
                f"petracache_rocksdb_{label}", f"RocksDB {label.replace('_', ' ')}.", value=value
            )

    def _items(self, engine: Engine) -> Iterator[Metric]:
        """The exact tally (``stats`` curr_items and bytes) and the cold-start count."""
        tally = engine.tally
        if tally.exact:
            yield GaugeMetricFamily(
                "petracache_curr_items", "Items stored (memcached curr_items).", value=tally.items
            )
            yield GaugeMetricFamily(
                "petracache_bytes", "Keys and values stored (memcached bytes).", value=tally.bytes
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
            build.label(),
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
