"""What the commands report to ``watch`` (``observability.watch``), where memcached logs it.

memcached logs from inside its item functions: ``do_item_get`` writes an ``item_get`` line
for every lookup (a get's keys, a gat or touch, a delete, an incr, the old item of every
store, mg, md, ma, me), ``do_store_item`` an ``item_store`` line for every store. The same
points here are the command handlers around their engine calls, each behind one check of
``ctx.watching``, so nothing is done while nobody watches:

* ``looked_up(ctx, key)`` before the operation: the item's state as the operation will find
  it (found, or why not: not_found, expired, flushed), read without side effects
  (``Engine.stored``); its class and data length when found.
* ``stored(ctx, request, outcome)`` after a store: memcached's status and command, and the
  ``ttl``, class and size of the item memcached logs: the one written when stored (an
  append's joined value, with the old item's TTL), else the one the request carried.

Reproduced on purpose: an append/prepend/incr/mg vivify logs what memcached logs (an mg
``N`` miss only its lookup, an ma ``N`` or binary incr that creates the counter a second
lookup and an ``add``). Not reproduced: for a value over the item size limit memcached
passes one argument too few to its logger, so its ``too_large`` line shows the socket as
``clsid`` and garbage as ``cfd``; petracache prints ``clsid=0`` and the connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from petracache.observability.watch import WatchLog
from petracache.protocol.requests import Store
from petracache.rules import slabs, ttl
from petracache.rules.sizes import item_size
from petracache.rules.verbs import StoreMode
from petracache.storage.items import FETCHED, Item, StoreResult

if TYPE_CHECKING:
    from petracache.commands.context import Context

_STATUS: Final = {
    StoreResult.STORED: b"stored",
    StoreResult.NOT_STORED: b"not_stored",
    StoreResult.EXISTS: b"exists",
    StoreResult.NOT_FOUND: b"not_found",
}
_COMMAND: Final = {
    StoreMode.SET: b"set",
    StoreMode.ADD: b"add",
    StoreMode.REPLACE: b"replace",
    StoreMode.APPEND: b"append",
    StoreMode.PREPEND: b"prepend",
    StoreMode.CAS: b"cas",
}


def _class(ctx: Context, key: bytes, flags: int, length: int) -> int:
    return slabs.class_id(item_size(len(key), flags, length), ctx.engine.item_size_max)


def looked_up(ctx: Context, key: bytes) -> None:
    """An ``item_get`` line for ``key`` as an operation is about to find it."""
    engine = ctx.engine
    item, _size = engine.stored(key)
    if item is None:
        ctx.watch.item_get(key, b"not_found", 0, 0)
        return
    now = engine.now()
    if not engine.is_dead(item, now):
        ctx.watch.item_get(
            key, b"found", _class(ctx, key, item.flags, len(item.data)), len(item.data)
        )
    elif engine.is_dead(item.replace(deadline=ttl.NEVER), now):
        ctx.watch.item_get(key, b"flushed", 0, 0)  # memcached checks the flush first
    else:
        ctx.watch.item_get(key, b"expired", 0, 0)


def stored(
    ctx: Context,
    request: Store,
    outcome: Item | StoreResult,
) -> None:
    """An ``item_store`` line for a store that ended with ``outcome``."""
    now = ctx.engine.now()
    key = request.key
    if isinstance(outcome, Item):
        status = b"stored"
        flags, deadline, length = outcome.flags, outcome.deadline, len(outcome.data)
    else:
        status = _STATUS[outcome]
        flags, length = request.flags, len(request.data)
        deadline = ttl.deadline(request.exptime, now)
    ctx.watch.item_store(
        key,
        status,
        _COMMAND[request.mode],
        deadline - now if deadline else 0,
        _class(ctx, key, flags, length),
        length,
    )


def eviction_hook(log: WatchLog, item_size_max: int) -> Callable[[bytes, Item, int], None]:
    """The reclaimer's ``on_evict``: an ``eviction`` line per evicted item while watched."""

    def evicted(key: bytes, item: Item, now: int) -> None:
        if log.active:
            length = len(item.data)
            log.eviction(
                key,
                bool(item.bits & FETCHED),
                item.deadline - now if item.deadline else -1,
                max(now - item.last_access, 0),
                slabs.class_id(item_size(len(key), item.flags, length), item_size_max),
                length,
            )

    return evicted


def too_large(ctx: Context, mode: StoreMode, key: bytes) -> None:
    """The ``item_store`` line of a value over the item size limit (see the module doc)."""
    ctx.watch.item_store(key, b"too_large", _COMMAND[mode], 0, 0, 0)
