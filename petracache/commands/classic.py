"""memcached's classic text commands: ``(ctx, request) -> Response`` handlers.

Each handler runs synchronously on the trio thread (see ``storage.engine``), so a
read-modify-write command is atomic. What a command does to an item is ``storage.items``'
transition, applied by the engine; what is left here is memcached's counting and the reply.
The get and set handlers are the hot path: no allocation beyond the reply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from petracache.commands import watching
from petracache.commands.context import Context, Handler
from petracache.commands.stats import general_stats, reset_stats, settings_stats
from petracache.commands.stats_groups import GROUPS
from petracache.observability.counters import Counters
from petracache.protocol.requests import (
    Arithmetic,
    CacheMemlimit,
    Delete,
    FlushAll,
    Get,
    Quit,
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
    Response,
    StatsReply,
    Status,
    Values,
    VersionReply,
)
from petracache.rules.verbs import StoreMode
from petracache.rules.versions import SERVER_VERSION
from petracache.storage.errors import OutOfMemory
from petracache.storage.items import DeleteResult, DeltaResult, Item, StoreResult

TOO_LARGE: Final = ErrorReply(b"SERVER_ERROR object too large for cache\r\n")
NON_NUMERIC: Final = ErrorReply(b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
STORE_REPLIES: Final = {
    StoreResult.STORED: Status.STORED,
    StoreResult.NOT_STORED: Status.NOT_STORED,
    StoreResult.EXISTS: Status.EXISTS,
    StoreResult.NOT_FOUND: Status.NOT_FOUND,
}
BAD_EXPTIME: Final = ErrorReply(b"CLIENT_ERROR invalid exptime argument\r\n")
FLUSH_REFUSED: Final = ErrorReply(b"CLIENT_ERROR flush_all not allowed\r\n")  # memcached -F
MEMLIMIT_MIN_MB: Final = 8  # memcached refuses less (MEMLIMIT_TOO_SMALL)
MEMLIMIT_MAX_MB: Final = 1_000_000_000  # more looks like bytes (MEMLIMIT_ADJUST_FAILED)


def get(ctx: Context, request: Get) -> Values:
    """get/gets, and gat/gats (a touch of each key) when the request has an exptime."""
    engine = ctx.engine
    counters = ctx.counters
    hits: list[Hit] = []
    exptime = request.exptime
    detail = ctx.prefixes if ctx.prefixes.enabled else None
    watched = ctx.watching
    for key in request.keys:
        if watched:
            watching.looked_up(ctx, key)
        item = engine.fetch(key) if exptime is None else engine.touch(key, exptime)
        if detail is not None:
            detail.record_get(key, item is not None)
        if item is None:
            if exptime is None:
                counters.get_misses += 1
            else:
                counters.touch_misses += 1
        else:
            if exptime is None:
                counters.get_hits += 1
            else:
                counters.touch_hits += 1
            hits.append((key, item.flags, item.cas, item.data))
    if exptime is None:
        counters.cmd_get += len(request.keys)
    else:
        counters.cmd_touch += len(request.keys)
    return Values(hits, request.return_cas)


def count_fetch(counters: Counters, *, touch: bool, hit: bool) -> None:
    """memcached's counters for one key of a get (cmd_get, get_hits/misses) or of a gat or
    an mg with T (cmd_touch, touch_hits/misses); mg counts like get."""
    if touch:
        counters.cmd_touch += 1
        if hit:
            counters.touch_hits += 1
        else:
            counters.touch_misses += 1
    else:
        counters.cmd_get += 1
        if hit:
            counters.get_hits += 1
        else:
            counters.get_misses += 1


def store(ctx: Context, request: Store) -> Status:
    """set/add/replace/append/prepend/cas."""
    outcome = store_item(ctx, request)
    return Status.STORED if type(outcome) is Item else STORE_REPLIES[outcome]


def store_item(
    ctx: Context,
    request: Store,
    *,
    cas: int = 0,
    binary_key: bool = False,
    invalidate: bool = False,
    vivify: int | None = None,
    finish: Callable[[Item], Item] | None = None,
    counted: bool = True,
    detail: bool = True,
) -> Item | StoreResult:
    """Any store: ``Engine.store``, whose options are the meta flags, with what memcached
    does around do_store_item: ``watch`` lines, and when ``counted`` (not the adds of
    incr/ma/lease-set that create an item), ``cmd_set`` and ``cas_hits``/``cas_badval``/
    ``cas_misses`` for a cas, and with ``detail`` the prefix stats (the text and binary
    protocols record them, ms does not). ``request.cas_unique`` is the CAS to compare.
    Returns the stored version, or why nothing was stored. Shared by every protocol.

    Raises:
        OutOfMemory: eviction is off (memcached -M) and the disk bound is reached; nothing
            is stored and, as memcached does, a set (and an ms in any mode) drops the old
            item. memcached refuses before anything else, so ``cmd_set`` does not count it.
            (The adds that create an item for incr, ma and lease-set are not refused.)
    """
    key = request.key
    mode = request.mode
    engine = ctx.engine
    if counted:
        if detail and ctx.prefixes.enabled:
            ctx.prefixes.record_set(key)
        if engine.out_of_space:
            # memcached: "Avoid stale data persisting in cache because we failed alloc."
            if mode is StoreMode.SET or not detail:  # not detail: ms, whatever its mode
                engine.delete(key)
            raise OutOfMemory
        ctx.counters.cmd_set += 1
    if ctx.watching:
        watching.looked_up(ctx, key)
    outcome = engine.store(
        mode,
        key,
        request.flags,
        request.exptime,
        request.data,
        request.cas_unique,
        cas=cas,
        binary_key=binary_key,
        invalidate=invalidate,
        vivify=vivify,
        finish=finish,
    )
    if ctx.watching:
        watching.stored(ctx, request, outcome)
    if counted and mode is StoreMode.CAS:
        count_cas(ctx, StoreResult.STORED if type(outcome) is Item else outcome)
    return outcome


def count_cas(ctx: Context, result: StoreResult) -> None:
    """memcached's cas_hits / cas_badval / cas_misses for a compare-and-swap."""
    if result is StoreResult.STORED:
        ctx.counters.cas_hits += 1
    elif result is StoreResult.EXISTS:
        ctx.counters.cas_badval += 1
    else:
        ctx.counters.cas_misses += 1


def too_large(ctx: Context, request: TooLarge) -> ErrorReply:
    """A store whose data block exceeds the item size limit (the parser swallowed it)."""
    ctx.counters.store_too_large += 1
    if ctx.prefixes.enabled:
        ctx.prefixes.record_set(request.key)
    if ctx.watching:
        watching.too_large(ctx, request.mode, request.key)
    if request.mode is StoreMode.SET:
        if ctx.watching:
            watching.looked_up(ctx, request.key)
        # memcached: "Avoid stale data persisting in cache because we failed alloc."
        ctx.engine.delete(request.key)
    return TOO_LARGE


def delete(ctx: Context, request: Delete) -> Status:
    return delete_item(ctx, request.key)


def delete_item(ctx: Context, key: bytes, compare: int = 0) -> Status:
    """A delete, counted: ``DELETED``, ``NOT_FOUND``, or ``EXISTS`` when ``compare`` (a
    non-zero CAS: the binary protocol's) does not match the item's."""
    ctx.leases.invalidate(key)
    if ctx.prefixes.enabled:
        ctx.prefixes.record_delete(key)
    if ctx.watching:
        watching.looked_up(ctx, key)
    outcome = ctx.engine.delete(key, compare or None)
    if outcome is DeleteResult.NOT_FOUND:
        ctx.counters.delete_misses += 1
        return Status.NOT_FOUND
    if outcome is DeleteResult.EXISTS:
        return Status.EXISTS
    ctx.counters.delete_hits += 1
    return Status.DELETED


def arithmetic(ctx: Context, request: Arithmetic) -> Response:
    """incr/decr: the new value, ``NOT_FOUND``, or the non-numeric error."""
    if ctx.watching:
        watching.looked_up(ctx, request.key)
    new = ctx.engine.delta(request.key, request.delta, request.incr)
    if type(new) is Item:
        count_delta(ctx, request.incr, True)
        return Number(int(new.data))  # int() ignores the padding
    if new is DeltaResult.NOT_FOUND:
        count_delta(ctx, request.incr, False)
        return Status.NOT_FOUND
    return NON_NUMERIC


def count_delta(ctx: Context, incr: bool, hit: bool) -> None:
    """memcached's incr_hits / incr_misses / decr_hits / decr_misses (not for non-numeric)."""
    counters = ctx.counters
    if incr:
        if hit:
            counters.incr_hits += 1
        else:
            counters.incr_misses += 1
    elif hit:
        counters.decr_hits += 1
    else:
        counters.decr_misses += 1


def touch(ctx: Context, request: Touch) -> Status:
    ctx.counters.cmd_touch += 1
    if ctx.watching:
        watching.looked_up(ctx, request.key)
    if ctx.engine.touch(request.key, request.exptime) is not None:
        ctx.counters.touch_hits += 1
        return Status.TOUCHED
    ctx.counters.touch_misses += 1
    return Status.NOT_FOUND


def flush_all(ctx: Context, request: FlushAll) -> Response:
    ctx.counters.cmd_flush += 1  # memcached counts a refused flush_all too
    if not ctx.info.flush_enabled:
        return FLUSH_REFUSED
    if request.delay is None:
        return BAD_EXPTIME
    ctx.engine.flush_all(request.delay)
    ctx.leases.clear()
    return Status.OK


def version(ctx: Context, request: Version) -> VersionReply:
    return VersionReply(SERVER_VERSION)


def verbosity(ctx: Context, request: Verbosity) -> Status:
    ctx.info.verbosity = min(request.level, 2)
    return Status.OK


def cache_memlimit(ctx: Context, request: CacheMemlimit) -> Status:
    """Sets the disk bound (``storage.max_disk_bytes``) to ``megabytes`` MiB, memcached's
    checks kept. Without a bound configured at start there is no eviction to re-aim (its
    index is not kept): the command is accepted with ``OK`` and changes nothing, as
    memcached scripts expect ``OK`` (docs/operations.md, "Admin commands")."""
    if request.megabytes < MEMLIMIT_MIN_MB:
        return Status.MEMLIMIT_TOO_SMALL
    if request.megabytes > MEMLIMIT_MAX_MB:
        return Status.MEMLIMIT_NOT_BYTES
    bound = request.megabytes * 1024 * 1024
    setter = ctx.info.set_disk_bound
    if setter is not None and setter(bound):
        ctx.info.disk_bound = bound
    return Status.OK


def quit_(ctx: Context, request: Quit) -> Status:
    return Status.NOTHING


def stats(ctx: Context, request: Stats) -> Response:
    """stats, stats reset, stats settings, stats detail on|off|dump, and the groups of
    ``stats_groups`` (slabs, items, sizes, conns, cachedump)."""
    if not request.args:
        return StatsReply(general_stats(ctx.counters, ctx.engine, ctx.info))
    group = request.args[0]
    if group == b"reset":
        reset_stats(ctx.counters, ctx.engine)
        ctx.prefixes.clear()
        return Status.RESET
    if group == b"settings":
        return StatsReply(settings_stats(ctx.engine, ctx.info))
    if group == b"detail":
        return ctx.prefixes.command(request.args[1:])
    answer = GROUPS.get(group)
    if answer is not None:
        return answer(ctx, request.args)
    return Status.ERROR


HANDLERS: dict[type, Handler] = {
    Get: get,
    Store: store,
    Delete: delete,
    Arithmetic: arithmetic,
    Touch: touch,
    TooLarge: too_large,
    FlushAll: flush_all,
    Version: version,
    Verbosity: verbosity,
    Stats: stats,
    CacheMemlimit: cache_memlimit,
    Quit: quit_,
}
