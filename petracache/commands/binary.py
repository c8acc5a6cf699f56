"""memcached's binary protocol commands: ``(ctx, request) -> BinaryReply`` handlers.

Strategy: every binary command is a classic command with a different reply, so each
handler calls the classic handler or helper that does the work and the counting
(``classic.get``, ``store_item``, ``delete_item``, ``flush_all``...) or the engine operation
the classic one uses (``Engine.delta``, ``Engine.store``), and only maps its result to a
status, the CAS and the body. No store mode, CAS or delta rule is implemented here.

Status mapping (memcached 1.6.18 ``proto_bin.c``): a store that is not stored answers
``Data exists for key.`` for add, ``Not found`` for replace and ``Not stored.`` for
append/prepend; a cas store answers ``Data exists for key.`` or ``Not found``. A quiet
command's success is not sent (``BinaryReply.quiet``), nor is a quiet get's miss; a quiet
get's hit and every error are.
"""

from __future__ import annotations

import struct
from typing import Final

from petracache.commands import classic, watching
from petracache.commands.context import Context, Handler
from petracache.commands.stats import general_stats, reset_stats, settings_stats
from petracache.commands.stats_groups import items_stats, slabs_stats
from petracache.protocol import compose
from petracache.protocol.binary_requests import (
    BinDelete,
    BinDelta,
    BinFlush,
    BinGet,
    BinNoop,
    BinSasl,
    BinStat,
    BinStatus,
    BinStore,
    BinTooLarge,
    Opcode,
)
from petracache.protocol.requests import FlushAll, Get, Store, TooLarge
from petracache.protocol.responses import BinaryReply, BinaryStats, PrefixDump, Response, Status
from petracache.rules.verbs import StoreMode
from petracache.rules.versions import SERVER_VERSION
from petracache.storage.items import DeltaResult, Item, StoreResult

_FLAGS: Final = struct.Struct(">I")
_COUNTER: Final = struct.Struct(">Q")
NO_CREATE: Final = 0xFFFFFFFF  # an incr/decr expiration that means "do not create"
# StoreResult -> (status, /metrics result) when nothing was stored; NOT_STORED depends on
# the mode (see the module doc).
_NOT_STORED: Final = {
    StoreMode.ADD: BinStatus.KEY_EEXISTS,
    StoreMode.REPLACE: BinStatus.KEY_ENOENT,
}
_STORE_STATUS: Final = {
    StoreResult.EXISTS: BinStatus.KEY_EEXISTS,
    StoreResult.NOT_FOUND: BinStatus.KEY_ENOENT,
}
# memcached's get_stats groups (exact names), answered as ``stats <group>`` is over text
# (``commands.stats_groups``). sizes_enable/sizes_disable append one statistic and no
# terminator (items.c ``item_stats_sizes_enable``): size tracking stays off here.
_SIZES: Final = [(b"sizes_status", b"disabled")]
_SIZES_TOGGLES: Final = (b"sizes_enable", b"sizes_disable")
_DETAIL: Final = (b"dump", b"on", b"off")  # stats detail's words, matched as prefixes


def _fail(
    r: BinGet | BinStore | BinDelete | BinDelta, status: BinStatus, result: str
) -> BinaryReply:
    return BinaryReply(r.opcode, r.opaque, status, result=result)


def get(ctx: Context, r: BinGet) -> BinaryReply:
    """get/getk/gat/gatk(q) and touch, through ``classic.get`` (its counting included)."""
    values = classic.get(ctx, Get([r.key], True, r.exptime))
    if not values.hits:
        if r.quiet:
            return BinaryReply(r.opcode, r.opaque, BinStatus.KEY_ENOENT, quiet=True, result="miss")
        key = r.key if r.with_key else b""
        return BinaryReply(r.opcode, r.opaque, BinStatus.KEY_ENOENT, key=key, result="miss")
    _key, flags, cas, data = values.hits[0]
    return BinaryReply(
        r.opcode,
        r.opaque,
        cas=cas,
        extras=_FLAGS.pack(flags),
        key=r.key if r.with_key else b"",
        value=data if r.with_value else b"",
        result="hit",
    )


def store(ctx: Context, r: BinStore) -> BinaryReply:
    """set/add/replace/append/prepend(q); a header CAS makes set/add/replace a cas."""
    mode = r.mode
    if r.cas and mode in (StoreMode.SET, StoreMode.ADD, StoreMode.REPLACE):
        mode = StoreMode.CAS
    outcome = classic.store_item(ctx, Store(mode, r.key, r.flags, r.exptime, r.data, r.cas))
    if type(outcome) is Item:
        return BinaryReply(r.opcode, r.opaque, cas=outcome.cas, quiet=r.quiet, result="stored")
    if outcome is StoreResult.NOT_STORED:
        status = _NOT_STORED.get(mode, BinStatus.NOT_STORED)
    else:
        status = _STORE_STATUS[outcome]
    return _fail(r, status, outcome.value)


def too_large(ctx: Context, r: BinTooLarge) -> BinaryReply:
    """A value over the item size limit (``classic.too_large``: a set drops the old item)."""
    classic.too_large(ctx, TooLarge(r.mode, r.key, 0))
    return BinaryReply(r.opcode, r.opaque, BinStatus.E2BIG, result="error")


def delete(ctx: Context, r: BinDelete) -> BinaryReply:
    """delete(q), with the header CAS compared when non-zero."""
    status = classic.delete_item(ctx, r.key, r.cas)
    if status is Status.DELETED:
        return BinaryReply(r.opcode, r.opaque, quiet=r.quiet, result="hit")
    if status is Status.EXISTS:
        return _fail(r, BinStatus.KEY_EEXISTS, "exists")
    return _fail(r, BinStatus.KEY_ENOENT, "not_found")


def delta(ctx: Context, r: BinDelta) -> BinaryReply:
    """increment/decrement(q): the new value and CAS; a miss creates ``initial`` (flags 0,
    the request's expiration) with an add, unless the expiration is ``NO_CREATE``."""
    engine = ctx.engine
    if ctx.watching:
        watching.looked_up(ctx, r.key)
    new = engine.delta(r.key, r.delta, r.incr, compare=r.cas)
    if isinstance(new, Item):
        classic.count_delta(ctx, r.incr, True)
        return _counter(r, int(new.data), new.cas, "hit")
    if new is DeltaResult.NON_NUMERIC:
        return _fail(r, BinStatus.DELTA_BADVAL, "error")
    if new is DeltaResult.EXISTS:
        return _fail(r, BinStatus.KEY_EEXISTS, "exists")
    if r.exptime == NO_CREATE:
        classic.count_delta(ctx, r.incr, False)
        return _fail(r, BinStatus.KEY_ENOENT, "not_found")
    # memcached: store_item(NREAD_ADD), uncounted
    add = Store(StoreMode.ADD, r.key, 0, r.exptime, b"%d" % r.initial)
    created = classic.store_item(ctx, add, counted=False)
    if isinstance(created, StoreResult):  # pragma: no cover - the read just missed
        return _fail(r, BinStatus.NOT_STORED, "not_stored")
    return _counter(r, r.initial, created.cas, "stored")


def _counter(r: BinDelta, value: int, cas: int, result: str) -> BinaryReply:
    return BinaryReply(
        r.opcode, r.opaque, cas=cas, value=_COUNTER.pack(value), quiet=r.quiet, result=result
    )


def flush(ctx: Context, r: BinFlush) -> BinaryReply:
    """flush(q) through ``classic.flush_all``."""
    classic.flush_all(ctx, FlushAll(r.delay))
    return BinaryReply(r.opcode, r.opaque, quiet=r.quiet)


def bare(ctx: Context, r: BinNoop) -> BinaryReply:
    """noop, version (memcached's body is its version alone) and quit(q)."""
    if r.opcode == Opcode.VERSION:
        return BinaryReply(r.opcode, r.opaque, value=SERVER_VERSION.encode())
    return BinaryReply(r.opcode, r.opaque, quiet=r.quiet)


def stat(ctx: Context, r: BinStat) -> Response:
    """stat, matched as memcached's ``process_bin_stat`` does (by prefix, then exact
    ``get_stats`` group names: ``items``, ``slabs``, ``sizes``, ``sizes_enable``,
    ``sizes_disable``; ``conns`` and ``cachedump`` are text-only there too); the figures come
    from ``commands.stats`` and ``commands.stats_groups``, one packet per text ``STAT``
    line."""
    group = r.group
    stats: list[tuple[bytes, bytes]] = []
    if not group:
        stats = _encoded(general_stats(ctx.counters, ctx.engine, ctx.info))
    elif group.startswith(b"reset"):
        reset_stats(ctx.counters, ctx.engine)
        ctx.prefixes.clear()
    elif group.startswith(b"settings"):
        stats = _encoded(settings_stats(ctx.engine, ctx.info))
    elif group.startswith(b"detail"):
        word = next((w for w in _DETAIL if group[6:].startswith(b" " + w)), None)
        if word is None:
            return BinaryReply(r.opcode, r.opaque, BinStatus.KEY_ENOENT, result="not_found")
        done = ctx.prefixes.command([word])
        if isinstance(done, PrefixDump):
            stats = [(b"detailed", compose.encode(done))]
    elif group == b"items":
        stats = _encoded(items_stats(ctx.counters, ctx.engine).stats)
    elif group == b"slabs":
        stats = _encoded(slabs_stats(ctx.counters, ctx.engine, ctx.info).stats)
    elif group == b"sizes":
        stats = _SIZES
    elif group in _SIZES_TOGGLES:
        return BinaryStats(r.opcode, r.opaque, _SIZES, terminated=False)
    else:
        return BinaryReply(r.opcode, r.opaque, BinStatus.KEY_ENOENT, result="not_found")
    return BinaryStats(r.opcode, r.opaque, stats)


def _encoded(stats: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in stats]


def sasl(ctx: Context, r: BinSasl) -> BinaryReply:
    """SASL list/auth/step, judged by the connection: counted and answered here."""
    failed = r.status is BinStatus.AUTH_ERROR
    if r.counted:
        ctx.counters.auth_cmds += 1
        ctx.counters.auth_errors += failed
    return BinaryReply(
        r.opcode, r.opaque, r.status, value=r.body, result="error" if failed else "ok"
    )


HANDLERS: dict[type, Handler] = {
    BinGet: get,
    BinStore: store,
    BinTooLarge: too_large,
    BinDelete: delete,
    BinDelta: delta,
    BinFlush: flush,
    BinNoop: bare,
    BinStat: stat,
    BinSasl: sasl,
}
