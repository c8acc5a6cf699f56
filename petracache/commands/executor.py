"""execute(request) -> response: the seam between the protocol and storage layers.

Synchronous by design (see ``storage.engine``): a command runs to completion on the trio
thread, so read-modify-write commands are atomic. Counters are incremented here, never in
the protocol layer. A ``StorageError`` becomes ``SERVER_ERROR <reason>``; it never escapes.
"""

from __future__ import annotations

import logging

from petracache.commands import mcrouter as mcrouter_ops, meta as meta_executor
from petracache.commands.crawler import Crawler
from petracache.commands.leases import LeaseTable
from petracache.commands.prefix_stats import PrefixStats
from petracache.commands.stats import ServerInfo, general_stats, reset_stats, settings_stats
from petracache.observability.counters import Counters
from petracache.protocol.crawler import LruCrawler
from petracache.protocol.meta_requests import MetaRequest
from petracache.protocol.requests import (
    Arithmetic,
    CacheMemlimit,
    Delete,
    FlushAll,
    Get,
    LeaseGet,
    LeaseSet,
    McrouterMetaget,
    Quit,
    Request,
    Stats,
    Store,
    TooLarge,
    Touch,
    Verbosity,
    Version,
)
from petracache.protocol.responses import (
    ErrorReply,
    Hit,
    Number,
    RawReply,
    Response,
    StatsReply,
    Status,
    Values,
    VersionReply,
)
from petracache.rules.verbs import StoreMode
from petracache.rules.versions import SERVER_VERSION
from petracache.storage import engine as storage
from petracache.storage.errors import StorageError

log = logging.getLogger(__name__)

_STORE_REPLIES = {
    storage.StoreResult.STORED: Status.STORED,
    storage.StoreResult.NOT_STORED: Status.NOT_STORED,
    storage.StoreResult.EXISTS: Status.EXISTS,
    storage.StoreResult.NOT_FOUND: Status.NOT_FOUND,
}
TOO_LARGE = ErrorReply(b"SERVER_ERROR object too large for cache\r\n")
MEMLIMIT_NOT_BYTES = b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"
NON_NUMERIC = ErrorReply(b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")


class Executor:
    """Runs requests against an engine, keeping memcached's counters."""

    def __init__(self, engine: storage.Engine, counters: Counters, info: ServerInfo) -> None:
        self.engine = engine
        self.counters = counters
        self.info = info
        self.leases = LeaseTable()  # mcrouter lease-get/lease-set; in memory only
        self.prefixes = PrefixStats()  # stats detail on|off|dump
        self.crawler = Crawler()  # lru_crawler's settable state

    def execute(self, request: Request) -> Response:
        """Run one request; storage failures become ``SERVER_ERROR`` replies."""
        try:
            return self._dispatch(request)
        except StorageError as exc:
            self.counters.storage_errors += 1
            log.warning("storage error: %s", exc)
            return ErrorReply(b"SERVER_ERROR %b\r\n" % str(exc).encode("utf-8", "replace"))

    def _dispatch(self, request: Request) -> Response:
        match request:
            case Get():
                return self._get(request)
            case Store():
                return self._store(request)
            case Delete():
                return self._delete(request)
            case Arithmetic():
                return self._arithmetic(request)
            case Touch():
                return self._touch(request)
            case TooLarge():
                self.counters.store_too_large += 1
                if self.prefixes.enabled:
                    self.prefixes.record_set(request.key)
                if request.mode is StoreMode.SET:
                    # memcached: "Avoid stale data persisting in cache because we failed alloc."
                    self.engine.remove(request.key)
                return TOO_LARGE
            case FlushAll():
                self.counters.cmd_flush += 1
                self.engine.flush_all(request.delay)
                self.leases.clear()
                return Status.OK
            case Version():
                return VersionReply(SERVER_VERSION)
            case Verbosity():
                self.info.verbosity = min(request.level, 2)
                return Status.OK
            case Stats():
                return self._stats(request)
            case CacheMemlimit():
                if request.megabytes < 8:
                    return RawReply(b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n")
                if request.megabytes > 1_000_000_000:
                    return RawReply(MEMLIMIT_NOT_BYTES)
                return Status.OK
            case LeaseGet() | LeaseSet() | McrouterMetaget():
                return mcrouter_ops.execute(request, self.engine, self.leases, self.counters)
            case Quit():
                return Status.NOTHING
            case MetaRequest():
                return meta_executor.execute(request, self.engine, self.counters)
            case LruCrawler():
                return self.crawler.execute(request, self.engine)
        raise AssertionError(f"unhandled request {request!r}")  # pragma: no cover

    def _get(self, request: Get) -> Values:
        engine = self.engine
        counters = self.counters
        hits: list[Hit] = []
        exptime = request.exptime
        touch = exptime is not None
        detail = self.prefixes if self.prefixes.enabled else None
        for key in request.keys:
            item = engine.get_and_touch(key, exptime) if exptime is not None else engine.get(key)
            if detail is not None:
                detail.record_get(key, item is not None)
            if item is None:
                if touch:
                    counters.touch_misses += 1
                else:
                    counters.get_misses += 1
            else:
                if touch:
                    counters.touch_hits += 1
                else:
                    counters.get_hits += 1
                hits.append(Hit(key, item.flags, item.cas, item.data))
        if touch:
            counters.cmd_touch += len(request.keys)
        else:
            counters.cmd_get += len(request.keys)
        return Values(hits, request.return_cas)

    def _store(self, request: Store) -> Status:
        self.counters.cmd_set += 1
        if self.prefixes.enabled:
            self.prefixes.record_set(request.key)
        result, _cas = self.engine.store(
            request.mode,
            request.key,
            request.flags,
            request.exptime,
            request.data,
            request.cas_unique,
        )
        if request.mode is StoreMode.CAS:
            if result is storage.StoreResult.STORED:
                self.counters.cas_hits += 1
            elif result is storage.StoreResult.EXISTS:
                self.counters.cas_badval += 1
            else:
                self.counters.cas_misses += 1
        return _STORE_REPLIES[result]

    def _delete(self, request: Delete) -> Status:
        self.leases.invalidate(request.key)
        if self.prefixes.enabled:
            self.prefixes.record_delete(request.key)
        if self.engine.delete(request.key):
            self.counters.delete_hits += 1
            return Status.DELETED
        self.counters.delete_misses += 1
        return Status.NOT_FOUND

    def _arithmetic(self, request: Arithmetic) -> Response:
        result = self.engine.arithmetic(request.key, request.delta, request.incr)
        if result is storage.ArithResult.NOT_FOUND:
            if request.incr:
                self.counters.incr_misses += 1
            else:
                self.counters.decr_misses += 1
            return Status.NOT_FOUND
        if result is storage.ArithResult.NON_NUMERIC:
            return NON_NUMERIC
        if request.incr:
            self.counters.incr_hits += 1
        else:
            self.counters.decr_hits += 1
        return Number(result)

    def _touch(self, request: Touch) -> Status:
        self.counters.cmd_touch += 1
        if self.engine.touch(request.key, request.exptime):
            self.counters.touch_hits += 1
            return Status.TOUCHED
        self.counters.touch_misses += 1
        return Status.NOT_FOUND

    def _stats(self, request: Stats) -> Response:
        if not request.args:
            return StatsReply(general_stats(self.counters, self.engine, self.info))
        group = request.args[0]
        if group == b"reset":
            reset_stats(self.counters, self.engine, self.info)
            self.prefixes.clear()
            return Status.RESET
        if group == b"settings":
            return StatsReply(settings_stats(self.engine, self.info))
        if group == b"detail":
            return RawReply(self.prefixes.command(request.args[1:]))
        return Status.ERROR
