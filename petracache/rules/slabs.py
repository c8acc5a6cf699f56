"""memcached 1.6's slab classes, so ``lru_crawler metadump`` reports the ``cls=`` and
``size=`` memcached would for the same item.

petracache has no slabs; these numbers only describe an item as memcached would store it.
From memcached ``slabs.c`` ``slabs_init`` with the defaults (``-n 48``, ``-f 1.25``, 1 MiB
pages, ``slab_chunk_max`` = half a page): the first class holds ``sizeof(item)`` + 48 = 96
bytes, each next class is 1.25 times larger rounded up to 8 bytes, until a class would pass
``slab_chunk_max / 1.25``; the last class (39) is ``slab_chunk_max`` itself. ``slabs_clsid``
gives an item the smallest class that fits it; larger (chunked) items report the last class.
Checked against memcached 1.6.18's ``stats slabs`` and metadump output (tests/rules).
"""

from __future__ import annotations

import functools
from typing import Final

from petracache.rules.sizes import DEFAULT_ITEM_SIZE_MAX, ITEM_HEADER_SIZE

CHUNK_MIN: Final = 48  # memcached -n
GROWTH_FACTOR: Final = 1.25  # memcached -f
CHUNK_ALIGN: Final = 8  # CHUNK_ALIGN_BYTES
SLAB_CHUNK_MAX: Final = 512 * 1024  # settings.slab_chunk_size_max: slab_page_size / 2
CLASS_ID_MAX: Final = 63  # MAX_NUMBER_OF_SLAB_CLASSES - 1: the highest id lru_crawler accepts


@functools.cache
def class_sizes(chunk_max: int = SLAB_CHUNK_MAX) -> tuple[int, ...]:
    """Chunk sizes of classes 1.. for a ``slab_chunk_max`` (half the item size limit)."""
    sizes: list[int] = []
    size = float(ITEM_HEADER_SIZE + CHUNK_MIN)
    while size < chunk_max / GROWTH_FACTOR:
        whole = int(size)
        if whole % CHUNK_ALIGN:
            whole += CHUNK_ALIGN - whole % CHUNK_ALIGN
        sizes.append(whole)
        size = whole * GROWTH_FACTOR
    sizes.append(chunk_max)
    return tuple(sizes)


CLASS_SIZES: Final = class_sizes()  # CLASS_SIZES[i] is the chunk size of class i + 1 (-I 1m)


def class_id(total: int, item_size_max: int = DEFAULT_ITEM_SIZE_MAX) -> int:
    """The slab class memcached would store an item of ``total`` bytes in (1-based).

    ``total`` is ``rules.sizes.item_size``; memcached's largest chunk is half its item size
    limit (``-I``), so the classes depend on it.
    """
    sizes = class_sizes(max(item_size_max // 2, 1))
    for index, size in enumerate(sizes):
        if total <= size:
            return index + 1
    return len(sizes)
