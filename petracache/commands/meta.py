"""The meta protocol (mg ms md ma mn me): ``(ctx, request) -> Response`` handlers, like memcached.

Strategy: each command is one engine operation, the same that classic and binary commands
use (``Engine.fetch``, ``store``, ``delta``, ``delete``: memcached's do_item_get,
do_store_item, do_add_delta), with the meta flags as its options. Flags that act on the item
(T, N, R, the win token) are a callable the operation applies to the item it hands back
before writing, as memcached's proto_text.c changes the item its do_* function returns; the
callable walks the request's flag tokens in order (``commands.meta_flags``: the reply
echoes return flags in request order, and ``T``/``N`` take effect at their position:
``t T30`` shows the old TTL). The reply is a ``MetaReply``, encoded by
``protocol.compose``. Commands run synchronously on the trio thread, so each is atomic
like every other engine operation.

Per-item meta state lives in the value header (``storage.codec``, format v2): the fetched,
stale and win-token-sent bits, the binary-key bit, and the last access time. A fetch sets
the fetched bit and moves the access time only when it is older than 60 s
(``items.fetch_is_news``), so a hot item is not rewritten on every read.

Invariants (memcached 1.6's): ``q`` suppresses EN (mg), HD (ms, md) and successful HD/VA
(ma, except when it created the counter); errors are never suppressed. A stale item's
first fetch wins (``W``), later ones see ``Z``; any store clears stale/win state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from petracache.commands import watching
from petracache.commands.classic import NON_NUMERIC, count_delta, count_fetch, store_item
from petracache.commands.context import Context, Handler
from petracache.commands.meta_flags import NO_MARK, OPAQUE_ERROR, no_item, return_flags
from petracache.protocol.meta import b64encode_key
from petracache.protocol.meta_requests import (
    MetaArithmetic,
    MetaDebug,
    MetaDelete,
    MetaGet,
    MetaNoop,
    MetaRejected,
    MetaSet,
)
from petracache.protocol.requests import Store
from petracache.protocol.responses import (
    ErrorReply,
    MetaCode,
    MetaDebugReply,
    MetaReply,
    Response,
)
from petracache.rules import slabs, ttl
from petracache.rules.sizes import item_size
from petracache.rules.verbs import StoreMode
from petracache.storage import items
from petracache.storage.items import (
    FETCHED,
    KEY_BINARY,
    STALE,
    WIN_SENT,
    DeleteResult,
    DeltaResult,
    Item,
    StoreResult,
)

MN: Final = MetaReply(MetaCode.MN, [])
QUIET_HD: Final = MetaReply(MetaCode.HD, [], quiet=True)
# The return flags each command renders besides O and k (T, N and R act on the walk's TTL).
MG_FLAGS: Final = b"tcsflhTNR"
MS_FLAGS: Final = b"cs"
MA_FLAGS: Final = b"ctTN"
_MS_MODES: Final = {
    "S": StoreMode.SET,
    "E": StoreMode.ADD,
    "A": StoreMode.APPEND,
    "P": StoreMode.PREPEND,
    "R": StoreMode.REPLACE,
}
_STORE_CODES: Final = {
    StoreResult.NOT_STORED: MetaCode.NS,
    StoreResult.EXISTS: MetaCode.EX,
    StoreResult.NOT_FOUND: MetaCode.NF,
}


# -- mg ----------------------------------------------------------------------------------------


def mg(ctx: Context, r: MetaGet) -> Response:
    """mg: a get whose flags choose what the reply shows and how the item's state moves."""
    engine = ctx.engine
    walk = _MgWalk(r)
    if ctx.watching:
        watching.looked_up(ctx, r.key)
    item = engine.fetch(r.key, walk.change)
    if item is None:
        if r.vivify is None:
            return _mg_miss(ctx, r)
        # N: memcached adds an empty item (do_store_item, NREAD_ADD) and fetches it.
        walk.created = True
        # (It links the item without a store log line: watch shows the lookup only.)
        new = ctx.engine.store(
            StoreMode.ADD, r.key, 0, 0, b"", cas=r.new_cas or 0, finish=walk.finish
        )
        if type(new) is not Item:  # the read just missed, and nothing ran since
            return _mg_miss(ctx, r)
        item = new
    if not walk.ok:
        return OPAQUE_ERROR
    count_fetch(ctx.counters, touch=r.ttl is not None, hit=True)
    if r.value:
        return MetaReply(MetaCode.VA, walk.flags, item.data)
    return MetaReply(MetaCode.HD, walk.flags)


class _MgWalk:
    """mg's flags acting on the item it fetched (or created, with N): the return flags in
    request order, and the item's new state (``items.meta_fetched``)."""

    def __init__(self, r: MetaGet) -> None:
        self.r = r
        self.flags: list[bytes] = []
        self.ok = True  # False: an opaque was too long (the walk stopped there)
        self.created = False

    def finish(self, item: Item) -> Item:
        """The created item's state after the flags (created now: at its ``stored_at``)."""
        return self.change(item, item.stored_at)

    def change(self, item: Item, now: int) -> Item:
        r = self.r
        bits = item.bits
        created = self.created
        ok, deadline, won = return_flags(
            self.flags,
            r.tokens,
            MG_FLAGS,
            r.key,
            bool(bits & KEY_BINARY),
            now,
            item,
            cas=item.cas,
            size=len(item.data),
            deadline=item.deadline,
            t_mark=ttl.deadline(r.ttl, now) if r.ttl is not None else 0,
            n_mark=ttl.deadline(r.vivify or 0, now) if created else NO_MARK,
            recache=0
            if r.recache is None or created or bits & WIN_SENT
            else ttl.deadline(r.recache, now),
        )
        won = ok and items.wins_token(item, won)
        if ok:
            _win_flags(self.flags, bits, won)
        self.ok = ok
        record = not r.no_update and (ok or not _locked(r.tokens))
        return items.meta_fetched(item, deadline, won, record, now)


def _win_flags(flags: list[bytes], bits: int, won: bool) -> None:
    """Z (a token was already sent), X (stale), W (this fetch won the token)."""
    if bits & WIN_SENT:
        flags.append(b"Z")
    if bits & STALE:
        flags.append(b"X")
    if won:
        flags.append(b"W")


def _locked(tokens: tuple[bytes, ...]) -> bool:
    """memcached fetches with the item lock (and records the fetch only after a successful
    reply) when h, l, T, N or R is present; otherwise the fetch is recorded as it is read,
    so it stands even if the reply then fails on a too-long opaque."""
    return any(t[0] in b"hlTNR" for t in tokens)


def _mg_miss(ctx: Context, r: MetaGet) -> Response:
    count_fetch(ctx.counters, touch=r.ttl is not None, hit=False)
    return no_item(MetaCode.EN, r.tokens, r.key, r.binary, r.quiet)


# -- ms ----------------------------------------------------------------------------------------


def ms(ctx: Context, r: MetaSet) -> Response:
    """ms: memcached's do_store_item; C turns set/replace into cas, add ignores C."""
    compare = r.compare_cas
    mode = _MS_MODES[r.mode]
    if compare is not None and mode in (StoreMode.SET, StoreMode.REPLACE):
        mode = StoreMode.CAS
    elif mode is not StoreMode.APPEND and mode is not StoreMode.PREPEND:
        compare = 0
    new = store_item(
        ctx,
        Store(mode, r.key, r.client_flags, r.ttl, r.data, compare or 0),
        cas=r.new_cas or 0,
        binary_key=r.binary,
        invalidate=r.invalidate,
        vivify=r.vivify,
        detail=False,
    )
    if type(new) is Item:
        if r.quiet:
            return QUIET_HD
        # c: the new CAS; s: the stored item's size (after append)
        code, cas, size = MetaCode.HD, new.cas, len(new.data)
    else:
        # nothing stored: c0 and the request's size
        code, cas, size = _STORE_CODES[new], 0, len(r.data)
    flags: list[bytes] = []
    return_flags(flags, r.tokens, MS_FLAGS, r.key, r.binary, cas=cas, size=size)
    return MetaReply(code, flags)


# -- md ----------------------------------------------------------------------------------------


def md(ctx: Context, r: MetaDelete) -> Response:
    """md: delete, or with ``I`` mark stale, or with ``x`` drop the value and keep the key."""
    engine = ctx.engine
    keep = _MdKeep(r, engine.next_cas) if r.invalidate or r.drop_value else None
    if ctx.watching:
        watching.looked_up(ctx, r.key)
    outcome = engine.delete(r.key, r.compare_cas, None if keep is None else keep.kept)
    if outcome is DeleteResult.NOT_FOUND:
        ctx.counters.delete_misses += 1
        return no_item(MetaCode.NF, r.tokens, r.key, r.binary)
    if outcome is DeleteResult.EXISTS:
        ctx.counters.delete_misses += 1
        return no_item(MetaCode.EX, r.tokens, r.key, r.binary)
    if not r.invalidate:
        ctx.counters.delete_hits += 1
    if r.quiet:
        return QUIET_HD
    return no_item(MetaCode.HD, r.tokens, r.key, r.binary)


class _MdKeep:
    """What md's ``I`` and ``x`` leave in place of the item it deletes."""

    def __init__(self, r: MetaDelete, next_cas: Callable[[], int]) -> None:
        self.r = r
        self.next_cas = next_cas

    def kept(self, item: Item, now: int) -> Item:
        r = self.r
        if r.drop_value:
            # newer memcached: an empty item (flags F, TTL T), the same CAS unless E.
            deadline = ttl.deadline(r.ttl or 0, now)
            item = items.created(r.client_flags, deadline, b"", now, r.new_cas or item.cas)
        if not r.invalidate:
            return item
        deadline = item.deadline if r.ttl is None else ttl.deadline(r.ttl, now)
        return items.invalidated(item, deadline, r.new_cas or self.next_cas())


# -- ma ----------------------------------------------------------------------------------------


def ma(ctx: Context, r: MetaArithmetic) -> Response:
    """ma: memcached's do_add_delta (``Engine.delta``); ``N`` creates a missing counter."""
    engine = ctx.engine
    walk = _MaWalk(r)
    if ctx.watching:
        watching.looked_up(ctx, r.key)
    new = engine.delta(
        r.key,
        r.delta,
        r.incr,
        compare=r.compare_cas or 0,  # memcached: C0 compares nothing
        cas=r.new_cas or 0,
        finish=walk.finish,
    )
    if type(new) is Item:
        count_delta(ctx, r.incr, True)
        return walk.reply(new.data.rstrip(b" "))
    if new is DeltaResult.NON_NUMERIC:
        return NON_NUMERIC
    if new is DeltaResult.EXISTS:
        return no_item(MetaCode.EX, r.tokens, r.key, r.binary)
    if r.vivify is None:
        count_delta(ctx, r.incr, False)
        return no_item(MetaCode.NF, r.tokens, r.key, r.binary)
    # N: memcached adds the initial value (do_store_item, NREAD_ADD), uncounted.
    walk.created = True
    number = b"%d" % r.initial
    add = Store(StoreMode.ADD, r.key, 0, 0, number)
    store_item(ctx, add, cas=r.new_cas or 0, finish=walk.finish, counted=False)
    return walk.reply(number)


class _MaWalk:
    """ma's flags acting on the counter do_add_delta (or the N add) hands back: the
    return flags in request order, and the TTL that T and N leave on it."""

    def __init__(self, r: MetaArithmetic) -> None:
        self.r = r
        self.flags: list[bytes] = []
        self.ok = True
        self.created = False

    def finish(self, new: Item) -> Item:
        r = self.r
        now = new.stored_at  # a new version: stored now
        ok, deadline, _won = return_flags(
            self.flags,
            r.tokens,
            MA_FLAGS,
            r.key,
            r.binary,
            now,
            cas=new.cas,
            deadline=new.deadline,
            t_mark=ttl.deadline(r.ttl, now) if r.ttl is not None else 0,
            n_mark=ttl.deadline(r.vivify or 0, now) if self.created else NO_MARK,
        )
        self.ok = ok
        return new if deadline == new.deadline else new.replace(deadline=deadline)

    def reply(self, number: bytes) -> Response:
        r = self.r
        if not self.ok:
            return OPAQUE_ERROR
        if r.quiet and not self.created:
            return QUIET_HD
        if r.value:
            return MetaReply(MetaCode.VA, self.flags, number)
        return MetaReply(MetaCode.HD, self.flags)


# -- mn, me, rejected ----------------------------------------------------------------------------


def mn(ctx: Context, r: MetaNoop) -> MetaReply:
    return MN


def me(ctx: Context, r: MetaDebug) -> Response:
    """me: one line of the item's internals, as memcached 1.6.18 prints them."""
    engine = ctx.engine
    if ctx.watching:
        watching.looked_up(ctx, r.key)
    now = engine.now()
    item = engine.read(r.key, now)
    if item is None:
        return MetaReply(MetaCode.EN, [])
    size = item_size(len(r.key), item.flags, len(item.data))
    return MetaDebugReply(
        b64encode_key(r.key) if item.bits & KEY_BINARY else r.key,
        # memcached 1.6.18 prints now - exptime (so a TTL of 100 s left reads exp=-100).
        -1 if item.deadline == ttl.NEVER else now - item.deadline,
        max(now - item.last_access, 0),
        item.cas,
        bool(item.bits & FETCHED),
        slabs.class_id(size, engine.item_size_max),
        size,
    )


def rejected(ctx: Context, r: MetaRejected) -> ErrorReply:
    """An ms the parser refused once its data length was known (its data is swallowed)."""
    ctx.counters.protocol_errors += 1
    return ErrorReply(r.reply)


HANDLERS: dict[type, Handler] = {
    MetaGet: mg,
    MetaSet: ms,
    MetaDelete: md,
    MetaArithmetic: ma,
    MetaNoop: mn,
    MetaDebug: me,
    MetaRejected: rejected,
}
