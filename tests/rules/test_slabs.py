"""memcached's slab classes and item sizes, against figures read from memcached 1.6.18."""

from __future__ import annotations

import pytest

from petracache.rules.sizes import item_size as item_total
from petracache.rules.slabs import CLASS_SIZES, class_id

# (key, flags, value length) -> (cls, size) as memcached 1.6.18's metadump reported them.
OBSERVED = [
    (b"k0", 0, 0, 1, 61),
    (b"a", 5, 3, 1, 67),
    (b"k40", 0, 40, 2, 102),
    (b"k100", 0, 100, 4, 163),
    (b"k1000", 0, 1000, 12, 1064),
    (b"k2000", 0, 2000, 15, 2064),
    (b"k100000", 0, 100000, 32, 100066),
    (b"k400000", 0, 400000, 39, 400066),
    (b"k1048000", 0, 1048000, 39, 1048067),
]


@pytest.mark.parametrize(("key", "flags", "length", "cls", "size"), OBSERVED)
def test_class_and_size_match_memcached(
    key: bytes, flags: int, length: int, cls: int, size: int
) -> None:
    total = item_total(len(key), flags, length)
    assert (class_id(total), total) == (cls, size)


def test_chunk_sizes_match_stats_slabs() -> None:
    # memcached 1.6.18 "stats slabs" chunk_size for a few classes (1-based ids).
    for cls, chunk in [(1, 96), (2, 120), (3, 152), (12, 1184), (37, 315872), (39, 524288)]:
        assert CLASS_SIZES[cls - 1] == chunk
    assert len(CLASS_SIZES) == 39
