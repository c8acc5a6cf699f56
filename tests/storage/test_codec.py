"""The value format (``storage.codec``): every field round-trips at the ends of its range,
format 1 still decodes, and short or unknown values are refused."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, strategies as st

from petracache.storage import codec
from petracache.storage.errors import CorruptValue
from petracache.storage.items import Item

U32 = st.integers(0, (1 << 32) - 1)


def fields(item: Item) -> tuple[int, int, int, int, bytes, int, int]:
    return (
        item.flags,
        item.deadline,
        item.stored_at,
        item.cas,
        item.data,
        item.last_access,
        item.bits,
    )


@given(
    U32, U32, U32, st.integers(0, (1 << 64) - 1), st.binary(max_size=64), U32, st.integers(0, 255)
)
def test_every_field_round_trips(
    flags: int, deadline: int, stored_at: int, cas: int, data: bytes, last_access: int, bits: int
) -> None:
    item = Item(flags, deadline, stored_at, cas, data, last_access, bits)
    raw = codec.encode_item(item)
    layout = (codec.FORMAT_V2, flags, deadline, stored_at, cas, last_access, bits)
    assert raw == struct.pack("<BIIIQIB", *layout) + data  # the layout of the docstring
    assert codec.encode(flags, deadline, stored_at, cas, data, last_access, bits) == raw
    assert fields(codec.decode(raw)) == fields(item)


def test_last_access_defaults_to_the_stored_time() -> None:
    assert codec.encode(1, 2, 3, 4, b"x") == codec.encode(1, 2, 3, 4, b"x", 3)


def test_a_field_out_of_range_is_refused() -> None:
    with pytest.raises(struct.error):
        codec.encode(1 << 32, 0, 0, 1, b"x")


def test_format_1_decodes_with_its_stored_time_as_last_access() -> None:
    raw = struct.pack("<BIIIQ", codec.FORMAT_V1, 7, 1 << 31, 1_700_000_000, (1 << 64) - 1)
    item = codec.decode(raw + b"data")
    assert fields(item) == (7, 1 << 31, 1_700_000_000, (1 << 64) - 1, b"data", 1_700_000_000, 0)


@pytest.mark.parametrize(
    "raw", [b"", b"\x02" + bytes(codec.HEADER_SIZE - 2), b"\x01" + bytes(10), b"\x09" + bytes(40)]
)
def test_short_or_unknown_values_are_refused(raw: bytes) -> None:
    with pytest.raises(CorruptValue):
        codec.decode(raw)
