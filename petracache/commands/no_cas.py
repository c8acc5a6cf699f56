"""memcached's ``-C`` (``server.cas_enabled = false``): clients see no CAS uniques.

memcached -C allocates items without a CAS field, so every CAS it reports is 0
(``ITEM_get_cas``) and a CAS a client sends is dropped (``ITEM_set_cas`` does nothing).
Measured against memcached 1.6.18 -C, and read in ``do_store_item``/``do_add_delta``:

* ``gets``, ``gats``, mg/ms/md/ma ``c``, ``me``'s ``cas=`` and every binary reply header
  show 0.
* A store compares the CAS it carries, which is now 0 ("none") whatever the client sent:
  ``cas`` (and an ms with ``C`` in set or replace mode) answers ``EXISTS`` when the item
  exists, ``NOT_FOUND`` when not; an append or prepend with a CAS (ms ``C``, binary) is not
  compared at all, and a binary set, add or replace with a CAS is a plain one (memcached
  makes it a cas only when the new item's CAS, now 0, is not).
* md ``C<n>``, ma ``C<n>``, a binary delete or incr with a CAS compare ``n`` with the
  item's CAS, which is 0: only ``C0`` (or no CAS) matches.
* An item has no 8-byte CAS field, so it may hold 8 bytes more under the same ``-I``
  (``app`` raises the limit the parsers and the engine check), and ``me`` reports a size 8
  bytes smaller (and the slab class of that size).

Strategy: petracache keeps its CAS uniques internally (its indexes and ``flush_all`` tell
versions apart by them), and ``without_cas`` wraps the executor: it rewrites the CAS each
request carries as above before the command runs, and zeroes the CAS in each reply after.
The executor, the commands and the engine are unchanged, and nothing is added to the
request path when CAS is enabled (the wrapper is not installed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from petracache.protocol.binary_requests import BinDelete, BinDelta, BinStore
from petracache.protocol.meta_requests import MetaArithmetic, MetaDelete, MetaSet
from petracache.protocol.requests import Request, Store
from petracache.protocol.responses import (
    BinaryReply,
    MetaDebugReply,
    MetaReply,
    Response,
    Values,
)
from petracache.rules import slabs
from petracache.rules.sizes import CAS_SIZE
from petracache.rules.verbs import StoreMode

NEVER: Final = -1  # a compare value no item's CAS equals (they are all positive)


def _request(request: Request) -> None:
    """Rewrite the CAS ``request`` carries in place (requests are built per command)."""
    cls = type(request)
    if cls is Store:
        if request.mode is StoreMode.CAS:  # type: ignore[union-attr]
            request.cas_unique = NEVER  # type: ignore[union-attr]
    elif cls is MetaSet:
        meta: MetaSet = request  # type: ignore[assignment]
        if meta.compare_cas is not None:
            meta.compare_cas = 0  # set/replace: a cas of nothing; append/prepend: none
        meta.new_cas = None
    elif cls is MetaDelete:
        delete: MetaDelete = request  # type: ignore[assignment]
        if delete.compare_cas is not None:  # C0 matches the item's 0; anything else cannot
            delete.compare_cas = NEVER if delete.compare_cas else None
        delete.new_cas = None
    elif cls is MetaArithmetic:
        arithmetic: MetaArithmetic = request  # type: ignore[assignment]
        if arithmetic.compare_cas:  # C0 compares nothing (do_add_delta), with -C or without
            arithmetic.compare_cas = NEVER
        arithmetic.new_cas = None
    elif cls is BinStore:
        store: BinStore = request  # type: ignore[assignment]
        store.cas = 0
    elif cls is BinDelete or cls is BinDelta:
        binary: BinDelete | BinDelta = request  # type: ignore[assignment]
        if binary.cas:
            binary.cas = NEVER


def _response(response: Response, item_size_max: int) -> Response:
    """``response`` with every CAS a client would see set to 0."""
    cls = type(response)
    if cls is Values:
        values: Values = response  # type: ignore[assignment]
        if values.with_cas:
            return Values([(key, flags, 0, data) for key, flags, _, data in values.hits], True)
    elif cls is MetaReply:
        meta: MetaReply = response  # type: ignore[assignment]
        meta.flags = [b"c0" if flag[:1] == b"c" else flag for flag in meta.flags]
    elif cls is BinaryReply:
        binary: BinaryReply = response  # type: ignore[assignment]
        binary.cas = 0
    elif cls is MetaDebugReply:
        debug: MetaDebugReply = response  # type: ignore[assignment]
        debug.cas = 0
        debug.size -= CAS_SIZE
        debug.slab_class = slabs.class_id(debug.size, item_size_max)
    return response


def without_cas(
    execute: Callable[[Request], Response], item_size_max: int
) -> Callable[[Request], Response]:
    """``execute`` as memcached -C answers (see the module docstring).

    Args:
        execute: the executor.
        item_size_max: memcached's ``-I`` as configured (``me``'s slab classes).
    """

    def run(request: Request) -> Response:
        _request(request)
        return _response(execute(request), item_size_max)

    return run
