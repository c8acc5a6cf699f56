"""memcached's item size rule (``rules.sizes``): header + key + suffix + data + CRLF + CAS."""

from __future__ import annotations

import pytest

from petracache.rules.sizes import DEFAULT_ITEM_SIZE_MAX, KEY_MAX_LENGTH, item_size_ok

LARGEST_VALUE = 1_048_516  # 1-byte key, flags 0, -I 1m: checked against memcached (differential)


@pytest.mark.parametrize(
    ("key_length", "flags", "data_length", "ok"),
    [
        (1, 0, LARGEST_VALUE, True),
        (1, 0, LARGEST_VALUE + 1, False),
        (1, 7, LARGEST_VALUE - 4, True),  # non-zero flags cost a 4-byte suffix
        (1, 7, LARGEST_VALUE - 3, False),
        (2, 0, LARGEST_VALUE, False),  # every key byte counts
        (KEY_MAX_LENGTH, 0, 0, True),
    ],
)
def test_item_size_ok(key_length: int, flags: int, data_length: int, ok: bool) -> None:
    assert item_size_ok(key_length, flags, data_length, DEFAULT_ITEM_SIZE_MAX) is ok


def test_limit_is_the_argument() -> None:
    assert item_size_ok(1, 0, 100, 1000)
    assert not item_size_ok(1, 0, 1000, 1000)
