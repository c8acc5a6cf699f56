"""Execution of mcrouter's own commands: lease-get, lease-set and metaget.

Kept out of ``executor.py`` so the classic memcached paths stay short; the executor
dispatches these three request types here. Same rules as the executor: synchronous, so each
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

from petracache.commands.leases import LeaseTable
from petracache.observability.counters import Counters
from petracache.protocol.requests import LeaseGet, LeaseSet, McrouterMetaget
from petracache.protocol.responses import Hit, LeaseMiss, MetagetInfo, Response, Status, Values
from petracache.rules.verbs import StoreMode
from petracache.storage import engine as storage


def execute(
    request: LeaseGet | LeaseSet | McrouterMetaget,
    engine: storage.Engine,
    leases: LeaseTable,
    counters: Counters,
) -> Response:
    """Run one mcrouter-specific request."""
    if isinstance(request, LeaseGet):
        counters.cmd_get += 1
        item = engine.get(request.key)
        if item is None:
            counters.get_misses += 1
            return LeaseMiss(request.key, leases.acquire(request.key))
        counters.get_hits += 1
        return Values([Hit(request.key, item.flags, item.cas, item.data)], False)
    if isinstance(request, LeaseSet):
        counters.cmd_set += 1
        if not leases.redeem(request.key, request.token):
            return Status.NOT_STORED
        result, _cas = engine.store(
            StoreMode.ADD, request.key, request.flags, request.exptime, request.data
        )
        return Status.STORED if result is storage.StoreResult.STORED else Status.NOT_STORED
    item = engine.get(request.key)
    if item is None:
        return Status.END
    age = max(engine.now() - item.stored_at, 0)
    return MetagetInfo(request.key, age, item.deadline)
