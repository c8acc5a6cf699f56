"""Item transitions: memcached's rules for what a command does to an item, as pure functions.

Strategy: every protocol (classic text, meta, mcrouter) changes items only through these
functions, as memcached sends ``set`` and ``ms`` through one ``do_store_item`` and ``incr`` and
``ma`` through one ``do_add_delta`` (memcached ``items.c``, ``proto_text.c``). Each takes the
live item as read (``None`` when there is none), the request's parameters and the clock, and
returns the new version to write, or why there is none. The engine reads, applies and writes
(``Engine.store``, ``Engine.delta``, ``Engine.touch``, ``Engine.fetch``, ``Engine.delete``);
the meta protocol's flags reach them as options of those operations.

Invariants:

* Pure, except that a new version takes its CAS unique from ``next_cas`` only once it is
  certain to be written (a refused store burns no id, as in memcached).
* A store of any kind clears the stale and win-token state; only a fetch, a touch or an
  invalidation sets it.
* ``stored_at`` moves only with a new version (store, delta, touch); state changes keep it,
  so delayed flush_all treats them as no modification.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final, final

from mypy_extensions import mypyc_attr

from petracache.rules.numbers import U64_MAX, parse_stored_counter
from petracache.rules.sizes import item_size_ok
from petracache.rules.verbs import StoreMode

# Meta bits (memcached's ITEM_FETCHED, ITEM_STALE, ITEM_TOKEN_SENT, ITEM_KEY_BINARY).
FETCHED: Final = 1
STALE: Final = 2
WIN_SENT: Final = 4
KEY_BINARY: Final = 8
# memcached's ITEM_ACTIVE: set by a fetch, cleared when eviction gives the item a second
# chance (``storage.reclaim``). Separate from FETCHED, which the meta ``h`` flag reports and
# which must not be cleared behind a client's back.
ACTIVE: Final = 16


_FIELDS: Final = ("flags", "deadline", "stored_at", "cas", "data", "last_access", "bits")


@final
@mypyc_attr(acyclic=True, free_list_len=1)
class Item:
    """A decoded item. Immutable by convention: every change makes a new one (``replace``),
    but for one: a read records its fetch in the hot entry itself (``HotItems.fetched``),
    which the hot items own.

    A plain class, not a ``NamedTuple``: in the compiled build it is a native class, whose
    attributes are read at a fixed offset, where a ``NamedTuple``'s are looked up on its
    type at every read, and every request reads several (docs/internals.md). It holds
    only ints and bytes, so it can never be part of a reference cycle: compiled, it is
    ``acyclic`` (never tracked by the garbage collector), and the last one freed is kept
    for the next (``free_list_len=1``: a set frees the version it replaces).
    """

    __slots__ = _FIELDS

    def __init__(
        self,
        flags: int,
        deadline: int,
        stored_at: int,
        cas: int,
        data: bytes,
        last_access: int = 0,
        bits: int = 0,
    ) -> None:
        self.flags = flags
        self.deadline = deadline
        self.stored_at = stored_at
        self.cas = cas
        self.data = data
        self.last_access = last_access
        self.bits = bits

    def replace(
        self,
        *,
        flags: int | None = None,
        deadline: int | None = None,
        stored_at: int | None = None,
        cas: int | None = None,
        data: bytes | None = None,
        last_access: int | None = None,
        bits: int | None = None,
    ) -> Item:
        """A copy with the given fields changed."""
        return Item(
            self.flags if flags is None else flags,
            self.deadline if deadline is None else deadline,
            self.stored_at if stored_at is None else stored_at,
            self.cas if cas is None else cas,
            self.data if data is None else data,
            self.last_access if last_access is None else last_access,
            self.bits if bits is None else bits,
        )

    def fields(self) -> tuple[int, int, int, int, bytes, int, int]:
        """The fields in order (what equality compares)."""
        return (
            self.flags,
            self.deadline,
            self.stored_at,
            self.cas,
            self.data,
            self.last_access,
            self.bits,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Item):
            return NotImplemented
        return self.fields() == other.fields()

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, Item):
            return NotImplemented
        return self.fields() != other.fields()

    __hash__ = None  # type: ignore[assignment]  # mutable in principle: not a dict key

    def __repr__(self) -> str:
        values = ", ".join(
            f"{name}={value!r}" for name, value in zip(_FIELDS, self.fields(), strict=True)
        )
        return f"Item({values})"


def new_item(
    flags: int,
    deadline: int,
    stored_at: int,
    cas: int,
    data: bytes,
    last_access: int,
    bits: int,
) -> Item:
    """``Item(...)`` with every field given (the decoder's and the rules' constructor)."""
    return Item(flags, deadline, stored_at, cas, data, last_access, bits)


# memcached's ITEM_UPDATE_INTERVAL: an item's access time is only moved when it is older.
ACCESS_UPDATE_INTERVAL: Final = 60
# What a fetch records: the fetched bit (meta ``h``) and the active bit (eviction's second
# chance, cleared only by a requeue, so a hot item pays one hint write per requeue).
READ_BITS: Final = FETCHED | ACTIVE


class StoreResult(enum.Enum):
    """Why a store wrote nothing (``STORED`` is the one success, for callers that count)."""

    STORED = "stored"
    NOT_STORED = "not_stored"
    EXISTS = "exists"
    NOT_FOUND = "not_found"


class DeleteResult(enum.Enum):
    """Why a delete removed nothing."""

    NOT_FOUND = "not_found"
    EXISTS = "exists"  # the caller's CAS did not match


class DeltaResult(enum.Enum):
    """Why incr/decr wrote nothing."""

    NOT_FOUND = "not_found"
    NON_NUMERIC = "non_numeric"
    EXISTS = "exists"  # the caller's CAS did not match (binary incr/decr with a CAS)


# -- fetch ---------------------------------------------------------------------------------------


def fetch_is_news(item: Item, now: int) -> bool:
    """Whether a read of ``item`` changes its recorded state (so it costs a write).

    True at most once for the fetched and active bits (again once after each eviction
    requeue clears the active bit) and then once per ``ACCESS_UPDATE_INTERVAL``: a plain
    ``get`` of a hot item never writes.
    """
    return item.bits & READ_BITS != READ_BITS or item.last_access < now - ACCESS_UPDATE_INTERVAL


def accessed(last_access: int, now: int) -> int:
    """The access time after an access at ``now``: moved only if older than the interval."""
    return now if last_access < now - ACCESS_UPDATE_INTERVAL else last_access


def fetch_state(item: Item, now: int) -> tuple[int, int]:
    """(access time, meta bits) of ``item`` after a fetch at ``now``: fetched and active
    bits set, access time moved if it was old."""
    return accessed(item.last_access, now), item.bits | READ_BITS


def with_fetch_state(item: Item, last_access: int, bits: int) -> Item:
    """``item`` with the fetch state (access time, meta bits) recorded for it since."""
    return new_item(
        item.flags, item.deadline, item.stored_at, item.cas, item.data, last_access, bits
    )


def only_fetch_differs(new: Item, old: Item) -> bool:
    """Whether ``new`` differs from ``old`` in fetch state alone (a hint, see ``Engine``)."""
    return (
        new.flags == old.flags
        and new.deadline == old.deadline
        and new.stored_at == old.stored_at
        and new.cas == old.cas
        and new.data == old.data
        and (new.bits | READ_BITS) == (old.bits | READ_BITS)
    )


# -- touch ---------------------------------------------------------------------------------------


def touched(item: Item, deadline: int, now: int) -> Item:
    """touch/gat: a new TTL, same CAS and data; the touch counts as a fetch and a write."""
    return item.replace(
        deadline=deadline,
        stored_at=now,
        last_access=accessed(item.last_access, now),
        bits=item.bits | READ_BITS,
    )


# -- store ---------------------------------------------------------------------------------------


def created(flags: int, deadline: int, data: bytes, now: int, cas: int, bits: int = 0) -> Item:
    """A brand-new version (set, add, vivify): accessed now."""
    return new_item(flags, deadline, now, cas, data, now, bits)


def store(
    mode: StoreMode,
    old: Item | None,
    key: bytes,
    flags: int,
    deadline: int,
    data: bytes,
    now: int,
    item_size_max: int,
    next_cas: Callable[[], int],
    *,
    compare: int = 0,
    cas: int = 0,
    binary_key: bool = False,
    invalidate: bool = False,
    vivify: int | None = None,
) -> Item | StoreResult:
    """memcached's do_store_item: the version a store writes, or why it writes none.

    Args:
        mode: the verb; ``CAS`` compares ``compare`` with the live item's CAS.
        old: the live item, or None.
        key, flags, deadline, data: the request's item (``deadline`` already absolute).
        item_size_max: append/prepend may not grow the item past it (memcached -I).
        next_cas: the CAS source, called only when the store succeeds and ``cas`` is 0.
        compare: for append/prepend, a non-zero CAS that must match (meta ``C``; memcached
            compares nothing for C0); for ``CAS``, the unique to match (0 never matches).
        cas: the new version's CAS (meta ``E``); 0 takes the next one.
        binary_key: meta ``b``: the key was sent base64-encoded (``k`` echoes it so).
        invalidate: meta ``I``: a ``CAS`` with a CAS older than the live one still stores,
            keeping the TTL and win state and marking the item stale.
        vivify: meta ``N``: an append/prepend to a missing key creates it with this deadline.
    """
    bits = KEY_BINARY if binary_key else 0
    if mode is StoreMode.SET:
        pass
    elif mode is StoreMode.CAS:
        if old is None:
            return StoreResult.NOT_FOUND
        if old.cas != compare:
            if not (invalidate and compare and compare < old.cas):
                return StoreResult.EXISTS
            # A stale write: keeps the TTL and the win state, marks the item stale.
            deadline = old.deadline
            bits |= STALE | (old.bits & WIN_SENT)
    elif mode is StoreMode.ADD:
        if old is not None:
            return StoreResult.NOT_STORED
    elif old is None:
        if vivify is None or mode is StoreMode.REPLACE:
            return StoreResult.NOT_STORED
        deadline = vivify
    elif mode is not StoreMode.REPLACE:  # append/prepend to a live item
        if compare and compare != old.cas:
            return StoreResult.EXISTS
        # memcached keeps the old flags and TTL; the new ones are parsed but ignored.
        data = old.data + data if mode is StoreMode.APPEND else data + old.data
        if not item_size_ok(len(key), old.flags, len(data), item_size_max):
            return StoreResult.NOT_STORED
        flags, deadline, bits = old.flags, old.deadline, 0
    return new_item(flags, deadline, now, cas or next_cas(), data, now, bits)


# -- delta ---------------------------------------------------------------------------------------


def delta(
    item: Item,
    amount: int,
    incr: bool,
    now: int,
    next_cas: Callable[[], int],
    *,
    compare: int = 0,
    cas: int = 0,
) -> Item | DeltaResult:
    """memcached's do_add_delta: incr wraps at 2**64, decr stops at 0.

    The checks run in memcached's order: an empty value is non-numeric before a CAS is
    compared (``compare``: a non-zero CAS the item must have; 0 compares nothing), and the
    number is parsed after that. When the new number is not longer than the old value it
    is written in place, right-padded with spaces to the old length, keeping the item's
    state bits (stale, say) and access time; otherwise it is a fresh item (no bits,
    accessed now). Flags and TTL are kept either way. The CAS comes from ``cas`` (meta
    ``E``) or else ``next_cas``. The caller reads the number back with ``int(new.data)``
    (which ignores the padding) or ``new.data.rstrip()``.
    """
    if not item.data:
        return DeltaResult.NON_NUMERIC
    if compare and compare != item.cas:
        return DeltaResult.EXISTS
    value = parse_stored_counter(item.data)
    if value is None:
        return DeltaResult.NON_NUMERIC
    value = (value + amount) & U64_MAX if incr else max(value - amount, 0)
    digits = b"%d" % value
    size = len(item.data)
    if len(digits) < size:
        digits = digits.ljust(size)
    cas = cas or next_cas()
    if len(digits) == size:
        return item.replace(
            data=digits, stored_at=now, cas=cas, last_access=accessed(item.last_access, now)
        )
    return new_item(item.flags, item.deadline, now, cas, digits, now, 0)


# -- meta state ----------------------------------------------------------------------------------


def invalidated(item: Item, deadline: int, cas: int) -> Item:
    """md with ``I``: the item stays, marked stale with a new CAS; its win token is reset."""
    return item.replace(deadline=deadline, cas=cas, bits=(item.bits | STALE) & ~WIN_SENT)


def wins_token(item: Item, won: bool) -> bool:
    """Whether an mg of ``item`` gets the win token (``W``): the request won it (N created
    the item, R found it due for recache), or the item is stale and no token went out."""
    return won or (bool(item.bits & STALE) and not item.bits & WIN_SENT)


def meta_fetched(item: Item, deadline: int, won: bool, record: bool, now: int) -> Item:
    """mg's new state: the TTL its T/N flags left, the win token marked sent if this fetch
    won it, and (``record``) the fetch recorded."""
    bits = item.bits | WIN_SENT if won else item.bits
    last_access = item.last_access
    if record:
        bits |= READ_BITS
        last_access = accessed(last_access, now)
    return item.replace(deadline=deadline, bits=bits, last_access=last_access)
