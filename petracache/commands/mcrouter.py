"""Execution of mcrouter's own commands: lease-get, lease-set and metaget.

Kept apart from ``classic`` so the classic memcached paths stay short; same shape
(``(ctx, request) -> Response`` handlers in ``HANDLERS``) and same rules: synchronous, so each
command is atomic on the trio thread; counters are incremented here, never in the protocol.

What the replies mean (mcrouter's McAsciiParser grammar, documented in README "Behind a
router"):

* ``lease-get``: a hit is an ordinary ``VALUE ... END``; a miss is always an ``LVALUE`` line
  with a fresh token, or token 1 ("hot miss") while another client holds the lease.
* ``lease-set``: ``STORED`` only with the live token and only if the key is still absent
  (add semantics: a plain set that landed since the lease-get is newer and wins);
  otherwise ``NOT_STORED``.
* ``metaget``: ``META <key> age: <s>; exptime: <abs>; from: unknown`` then ``END``, or
  ``END`` alone on a miss.
"""

from __future__ import annotations

from petracache.commands import classic, watching
from petracache.commands.context import Context, Handler
from petracache.protocol.requests import LeaseGet, LeaseSet, McrouterMetaget, Store
from petracache.protocol.responses import LeaseMiss, MetagetInfo, Response, Status, Values
from petracache.rules.verbs import StoreMode
from petracache.storage.items import Item


def lease_get(ctx: Context, request: LeaseGet) -> Response:
    """A get that hands out a fill lease on a miss."""
    ctx.counters.cmd_get += 1
    if ctx.watching:
        watching.looked_up(ctx, request.key)
    item = ctx.engine.fetch(request.key)
    if item is None:
        ctx.counters.get_misses += 1
        return LeaseMiss(request.key, ctx.leases.acquire(request.key))
    ctx.counters.get_hits += 1
    return Values([(request.key, item.flags, item.cas, item.data)], False)


def lease_set(ctx: Context, request: LeaseSet) -> Status:
    """An add, with the live lease token only."""
    ctx.counters.cmd_set += 1
    if not ctx.leases.redeem(request.key, request.token):
        return Status.NOT_STORED
    add = Store(StoreMode.ADD, request.key, request.flags, request.exptime, request.data)
    outcome = classic.store_item(ctx, add, counted=False)
    return Status.STORED if type(outcome) is Item else Status.NOT_STORED


def metaget(ctx: Context, request: McrouterMetaget) -> Response:
    """The item's age and absolute expiry, or ``END`` alone on a miss."""
    if ctx.watching:
        watching.looked_up(ctx, request.key)
    item = ctx.engine.fetch(request.key)
    if item is None:
        return Status.END
    age = max(ctx.engine.now() - item.stored_at, 0)
    return MetagetInfo(request.key, age, item.deadline)


HANDLERS: dict[type, Handler] = {
    LeaseGet: lease_get,
    LeaseSet: lease_set,
    McrouterMetaget: metaget,
}
