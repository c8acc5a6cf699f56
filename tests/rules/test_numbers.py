"""memcached's ``safe_strto*`` acceptance rules (``rules.numbers``), case by case.

Every case is a quirk of C's ``strtoul``/``strtol``/``strtoull`` plus memcached's trailing-byte
check (``util.c``); the differential tests check the same quirks against a real memcached on
the wire, these pin them without one.
"""

from __future__ import annotations

import pytest

from petracache.rules.numbers import (
    INT_MAX,
    U64_MAX,
    parse_stored_counter,
    strtol32,
    strtoul32,
    strtoull,
)


@pytest.mark.parametrize(
    ("token", "value"),
    [
        (b"0", 0),
        (b"42", 42),
        (b"007", 7),
        (b"+5", 5),
        (b" \t5", 5),  # leading C whitespace
        (b"5\r", 5),  # a trailing C whitespace byte ends the number
        (b"5\t", 5),
        (b"-0", 0),  # a negative zero passes
        (b"18446744073709551615", U64_MAX),
        (b"00000000000000000000018446744073709551615", U64_MAX),  # leading zeros do not count
        (b"18446744073709551616", None),  # ERANGE
        (b"-1", None),  # a negative value reads as a huge unsigned with a '-': refused
        (b"", None),
        (b"x", None),
        (b"5x", None),  # junk after the digits
        (b"+", None),
        (b"18446744073709551615\t-", None),  # strchr finds the '-' after the digits
    ],
)
def test_strtoull(token: bytes, value: int | None) -> None:
    assert strtoull(token) == value


@pytest.mark.parametrize(
    ("token", "value"),
    [
        (b"4294967295", 0xFFFFFFFF),
        (b"4294967296", 0),  # stored into a uint32_t: truncated
        (b"4294967301", 5),
        (b"-1", None),
    ],
)
def test_strtoul32_truncates_to_32_bits(token: bytes, value: int | None) -> None:
    assert strtoul32(token) == value


@pytest.mark.parametrize(
    ("token", "value"),
    [
        (b"-1", -1),
        (b"2147483647", INT_MAX),
        (b"2147483648", -(2**31)),  # a 64-bit long stored into an int32_t wraps
        (b"4294967296", 0),
        (b"-2147483649", INT_MAX),
        (b"9223372036854775808", None),  # out of range of a 64-bit long
        (b"-9223372036854775808", 0),
        (b"12ab", None),
    ],
)
def test_strtol32_wraps_like_an_int32(token: bytes, value: int | None) -> None:
    assert strtol32(token) == value


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"10", 10),
        (b"10  ", 10),  # incr pads a shorter result with spaces
        (b"", None),  # memcached refuses an empty value
        (b"\x005", None),  # a C string ends at the NUL
        (b"7\x00junk", 7),
        (b"abc", None),
    ],
)
def test_parse_stored_counter(data: bytes, value: int | None) -> None:
    assert parse_stored_counter(data) == value
