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

from petracache.rules.sizes import CAS_SIZE, ITEM_HEADER_SIZE

CHUNK_MIN = 48  # memcached -n
GROWTH_FACTOR = 1.25  # memcached -f
CHUNK_ALIGN = 8  # CHUNK_ALIGN_BYTES
SLAB_CHUNK_MAX = 512 * 1024  # settings.slab_chunk_size_max: slab_page_size / 2
CLASS_ID_MAX = 63  # MAX_NUMBER_OF_SLAB_CLASSES - 1: the highest id lru_crawler accepts


def _class_sizes() -> tuple[int, ...]:
    sizes: list[int] = []
    size = float(ITEM_HEADER_SIZE + CHUNK_MIN)
    while size < SLAB_CHUNK_MAX / GROWTH_FACTOR:
        whole = int(size)
        if whole % CHUNK_ALIGN:
            whole += CHUNK_ALIGN - whole % CHUNK_ALIGN
        sizes.append(whole)
        size = whole * GROWTH_FACTOR
    sizes.append(SLAB_CHUNK_MAX)
    return tuple(sizes)


CLASS_SIZES = _class_sizes()  # CLASS_SIZES[i] is the chunk size of class i + 1


def item_total(key_length: int, flags: int, data_length: int) -> int:
    """memcached's ``ITEM_ntotal``: header, key + NUL, flags (if any), data + CRLF, CAS."""
    suffix = 4 if flags else 0
    return ITEM_HEADER_SIZE + key_length + 1 + suffix + data_length + 2 + CAS_SIZE


def class_id(total: int) -> int:
    """The slab class memcached would store an item of ``total`` bytes in (1-based)."""
    for index, size in enumerate(CLASS_SIZES):
        if total <= size:
            return index + 1
    return len(CLASS_SIZES)
