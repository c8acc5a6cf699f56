"""The item transitions (``storage.items``): pure functions, tested without a database."""

from __future__ import annotations

import itertools

import pytest

from petracache.rules.verbs import StoreMode
from petracache.storage import items
from petracache.storage.items import (
    FETCHED,
    KEY_BINARY,
    STALE,
    WIN_SENT,
    DeltaResult,
    Item,
    StoreResult,
)

NOW = 1_700_000_000
MAX = 1 << 20
OLD = Item(flags=3, deadline=NOW + 100, stored_at=NOW - 10, cas=7, data=b"ab", last_access=NOW - 10)


def store(
    mode: StoreMode, old: Item | None, data: bytes = b"xy", **kw: int | bool | None
) -> Item | StoreResult:
    cas = itertools.count(100)
    return items.store(mode, old, b"k", 5, NOW + 50, data, NOW, MAX, lambda: next(cas), **kw)  # type: ignore[arg-type]


def test_set_writes_the_request_as_a_new_version() -> None:
    assert store(StoreMode.SET, OLD) == Item(5, NOW + 50, NOW, 100, b"xy", NOW, 0)


@pytest.mark.parametrize(
    ("mode", "old", "compare", "result"),
    [
        (StoreMode.ADD, OLD, 0, StoreResult.NOT_STORED),
        (StoreMode.REPLACE, None, 0, StoreResult.NOT_STORED),
        (StoreMode.APPEND, None, 0, StoreResult.NOT_STORED),
        (StoreMode.PREPEND, None, 0, StoreResult.NOT_STORED),
        (StoreMode.CAS, None, 7, StoreResult.NOT_FOUND),
        (StoreMode.CAS, OLD, 8, StoreResult.EXISTS),
        (StoreMode.CAS, OLD, 0, StoreResult.EXISTS),  # 0 never matches
        (StoreMode.APPEND, OLD, 8, StoreResult.EXISTS),  # meta C on append
    ],
)
def test_refusals_burn_no_cas(
    mode: StoreMode, old: Item | None, compare: int, result: StoreResult
) -> None:
    def no_cas() -> int:
        raise AssertionError("a refused store must not take a CAS")

    got = items.store(mode, old, b"k", 5, NOW + 50, b"x", NOW, MAX, no_cas, compare=compare)
    assert got is result


def test_append_and_prepend_keep_old_flags_and_ttl_and_clear_bits() -> None:
    old = OLD.replace(bits=STALE | WIN_SENT)
    assert store(StoreMode.APPEND, old) == Item(3, NOW + 100, NOW, 100, b"abxy", NOW, 0)
    assert store(StoreMode.PREPEND, old).data == b"xyab"  # type: ignore[union-attr]


def test_append_past_the_item_size_limit_is_not_stored() -> None:
    big = b"x" * (MAX - 64)
    assert store(StoreMode.APPEND, OLD, big) is StoreResult.NOT_STORED


def test_cas_match_and_meta_stale_write() -> None:
    assert store(StoreMode.CAS, OLD, compare=7).cas == 100  # type: ignore[union-attr]
    stale = store(StoreMode.CAS, OLD.replace(bits=WIN_SENT), compare=6, invalidate=True)
    assert isinstance(stale, Item)
    assert (stale.deadline, stale.bits) == (NOW + 100, STALE | WIN_SENT)


def test_meta_vivify_creates_on_append_and_explicit_cas_and_bits() -> None:
    got = store(StoreMode.APPEND, None, vivify=NOW + 9, cas=42, binary_key=True)
    assert got == Item(5, NOW + 9, NOW, 42, b"xy", NOW, KEY_BINARY)


@pytest.mark.parametrize(
    ("data", "amount", "incr", "digits"),
    [
        (b"10", 5, True, b"15"),
        (b"10", 3, False, b"7 "),  # in place, right-padded
        (b"5", 10, False, b"0"),  # clamped at 0
        (b"18446744073709551615", 2, True, b"1                   "),  # wraps at 2**64
        (b"99", 1, True, b"100"),  # grew: a fresh item
    ],
)
def test_delta(data: bytes, amount: int, incr: bool, digits: bytes) -> None:
    item = OLD.replace(data=data, bits=STALE)
    new = items.delta(item, amount, incr, NOW, lambda: 9)
    assert isinstance(new, Item)
    assert (new.data, new.cas, new.stored_at, new.flags, new.deadline) == (
        digits,
        9,
        NOW,
        3,
        NOW + 100,
    )
    assert new.bits == (STALE if len(digits) == len(data) else 0)


def test_delta_of_non_numeric_data() -> None:
    assert items.delta(OLD, 1, True, NOW, lambda: 9) is DeltaResult.NON_NUMERIC


def test_fetch_is_recorded_once_then_every_60_seconds() -> None:
    seen = items.with_fetch_state(OLD, *items.fetch_state(OLD, NOW))
    assert (seen.bits & FETCHED, seen.last_access) == (FETCHED, NOW - 10)
    assert not items.fetch_is_news(seen, NOW + 50)
    assert items.fetch_is_news(seen, NOW + 51)
    assert items.only_fetch_differs(seen, OLD)
    assert not items.only_fetch_differs(seen.replace(deadline=0), OLD)


def test_touch_keeps_cas_and_data() -> None:
    got = items.touched(OLD, NOW + 500, NOW)
    assert got == OLD.replace(deadline=NOW + 500, stored_at=NOW, bits=items.READ_BITS)


def test_meta_state_transitions() -> None:
    assert items.wins_token(OLD.replace(bits=STALE), False)
    assert not items.wins_token(OLD.replace(bits=STALE | WIN_SENT), False)
    got = items.meta_fetched(OLD, NOW + 1, True, False, NOW)
    assert (got.deadline, got.bits, got.last_access) == (NOW + 1, WIN_SENT, NOW - 10)
    gone = items.invalidated(OLD.replace(bits=WIN_SENT), NOW + 3, 99)
    assert (gone.deadline, gone.cas, gone.bits) == (NOW + 3, 99, STALE)
