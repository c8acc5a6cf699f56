"""Per-request metrics: counts by command and result, and a latency histogram per command.

Strategy: the data plane only updates plain Python ints, dicts and lists on the trio thread
(``RequestMetrics.commands``: a ``CommandStats`` per command); no prometheus_client object is
touched per request. ``observability.metrics.PetracacheCollector`` reads them at scrape time.

Why a module of its own: it runs on every request, so it is compiled with mypyc (listed in
pyproject.toml's ``[tool.petracache.mypyc]``); ``observability.metrics`` cannot be, since its
collector subclasses prometheus_client's ``Collector``.

Latency slots are powers of two nanoseconds, so the hot path finds a request's slot with
``elapsed_ns.bit_length()`` (no search): slot k counts 2**(k-1) <= ns < 2**k. The exported
buckets run from 2**``MIN_BUCKET_BITS`` ns (~1 us: a cached get) to 2**``MAX_BUCKET_BITS`` ns
(~1.07 s), which spans block-cache hits through RocksDB reads from a slow disk.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from time import perf_counter_ns
from typing import Final

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

MIN_BUCKET_BITS: Final = 10
MAX_BUCKET_BITS: Final = 30
_SLOTS: Final = 64  # bit_length of any int64 nanosecond count

_STATUS_RESULTS: Final[dict[Status, str]] = dict.fromkeys(Status, "ok")
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
_STATUS_BY_ID: Final = {id(status): result for status, result in _STATUS_RESULTS.items()}
# Meta codes by id() as well; HD and VA are "stored" for ms and "hit" for mg, md and ma
# (what STORED, DELETED and an incr's number count as).
_META_RESULTS: Final = {
    id(MetaCode.EN): "miss",
    id(MetaCode.NS): "not_stored",
    id(MetaCode.NF): "not_found",
    id(MetaCode.EX): "exists",
    id(MetaCode.MN): "ok",
}
_META_SUCCESS: Final = (id(MetaCode.HD), id(MetaCode.VA))
_GET_NAMES: Final = ("get", "gets", "gat", "gats")  # index: 2 * (exptime given) + return_cas


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class CommandStats:
    """One command's figures: results by name, latency slots, total nanoseconds.

    A ``Values`` reply's hits and misses (every text get, and the meta and binary replies
    that carry an item) are counted in ``hits`` and ``misses``, native ints in the compiled
    build, and every other result in ``results`` by name: a dict update with a ``str`` key
    per get would be much of the wrapper's cost (docs/benchmarks.md). ``counts()`` merges
    them for the collector.
    """

    __slots__ = ("buckets", "hits", "misses", "results", "total_ns")

    def __init__(self) -> None:
        self.results: dict[str, int] = {}
        self.hits = 0
        self.misses = 0
        self.buckets: list[int] = [0] * _SLOTS
        self.total_ns = 0

    def counts(self) -> dict[str, int]:
        """Requests by result name (``hit``/``miss`` included), as ``/metrics`` shows them."""
        counts = self.results.copy()
        for name, count in (("hit", self.hits), ("miss", self.misses)):
            if count:
                counts[name] = counts.get(name, 0) + count
        return counts


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
        if isinstance(request, Get):
            return _GET_NAMES[2 * (request.exptime is not None) + request.return_cas]
        if isinstance(request, (Store, TooLarge)):
            return request.mode.value
        if isinstance(request, Arithmetic):
            return "incr" if request.incr else "decr"
        if isinstance(request, BinaryRequest):
            return request.command
        cls = type(request)
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
        thread (docs/benchmarks.md, "Metrics overhead", has its cost).
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
            if isinstance(request, Get):
                slot = 2 * (request.exptime is not None) + request.return_cas
                stats = get_stats[slot]
                if stats is None:
                    stats = get_stats[slot] = stats_for(_GET_NAMES[slot])
            elif isinstance(request, Store):
                # The verb's name is its mode's value (``_value_``: ``.value`` is a descriptor).
                name: str = request.mode._value_
                stats = commands.get(name)
                if stats is None:
                    stats = stats_for(name)
            else:
                stats = stats_for(command_name(request))
            buckets = stats.buckets
            slot = elapsed.bit_length()
            buckets[slot] = buckets[slot] + 1  # unboxed and added natively, not InPlaceAdd
            stats.total_ns += elapsed
            if isinstance(response, Values):
                hits = len(response.hits)
                stats.hits += hits
                # A multi-key get counts each key; other Values replies are one item.
                stats.misses += len(request.keys) - hits if isinstance(request, Get) else not hits
                return response
            results = stats.results
            result = (
                statuses[id(response)]
                if type(response) is Status
                else _result(response, type(request))
            )
            results[result] = results.get(result, 0) + 1
            return response

        return timed_execute


def _result(response: Response, request_class: type) -> str:
    """The result ``/metrics`` counts a reply other than ``Status`` and ``Values`` as."""
    if isinstance(response, MetaReply):
        code = id(response.code)
        if code in _META_SUCCESS:
            return "stored" if request_class is MetaSet else "hit"
        return _META_RESULTS[code]
    if isinstance(response, Number):
        return "hit"
    if isinstance(response, ErrorReply):
        return "error"
    if isinstance(response, BinaryReply):
        return response.result
    return "ok"
