"""The ghost of recently evicted keys (``storage.reclaim.ghost``): what it remembers, for how
long, how often it is wrong, and what it costs in memory."""

from __future__ import annotations

import tracemalloc

from petracache.storage.reclaim.ghost import BITS_PER_KEY, FALSE_POSITIVES, GENERATION, GhostKeys


def keys(start: int, count: int) -> list[bytes]:
    return [b"key:%d" % i for i in range(start, start + count)]


def test_it_remembers_the_last_capacity_keys_in_generations() -> None:
    ghost = GhostKeys(3000)  # two filters of 2,000 keys
    added = keys(0, 6000)
    for key in added:
        ghost.add(key)
    # The current filter holds the last 2,000, the previous one the 2,000 before.
    assert all(key in ghost for key in added[2000:])
    forgotten = sum(key in ghost for key in added[:2000])
    assert forgotten <= 2000 * 2 * FALSE_POSITIVES * 2


def test_false_positives_stay_near_the_design_rate() -> None:
    ghost = GhostKeys(30_000)
    for key in keys(0, 40_000):  # both filters full
        ghost.add(key)
    unseen = keys(1_000_000, 20_000)
    rate = sum(key in ghost for key in unseen) / len(unseen)
    assert rate <= 2 * FALSE_POSITIVES, rate


def test_a_full_filter_has_the_documented_false_positive_rate() -> None:
    ghost = GhostKeys(150_000)  # filters of 100,000 keys
    for key in keys(0, 100_000):  # the first one full, no second yet
        ghost.add(key)
    unseen = keys(1_000_000, 100_000)
    rate = sum(key in ghost for key in unseen) / len(unseen)
    assert 0.002 < rate < FALSE_POSITIVES, rate  # 0.41% with these keys


def test_resize_applies_from_the_next_generation() -> None:
    ghost = GhostKeys(300)  # 200 keys a filter
    ghost.add(b"first")
    ghost.resize(3000)
    for key in keys(0, 200):  # the 200th starts a filter sized for 2,000
        ghost.add(key)
    for key in keys(200, 1999):
        ghost.add(key)
    assert all(key in ghost for key in keys(0, 2199))
    assert ghost.nbytes == (200 + 2000) * BITS_PER_KEY // 8


def test_resize_applies_at_once_while_empty() -> None:
    ghost = GhostKeys()
    ghost.resize(3000)
    assert ghost.nbytes == 2000 * BITS_PER_KEY // 8


def test_only_bytes_are_remembered() -> None:
    ghost = GhostKeys(10)
    ghost.add(b"1")
    assert "1" not in ghost
    assert b"1" in ghost


def test_memory_per_remembered_key() -> None:
    capacity = 30_000
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        ghost = GhostKeys(capacity)
        for key in keys(0, int(capacity * GENERATION) * 2):  # both filters allocated
            ghost.add(key)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    allocated = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert ghost.nbytes == 2 * (int(capacity * GENERATION) * BITS_PER_KEY // 64 * 8)
    # 2.67 bytes of bit array per key of capacity (docs/internals.md quotes this figure);
    # the objects around them are a fixed kilobyte or so.
    assert round(ghost.nbytes / capacity, 2) == 2.67
    assert allocated - ghost.nbytes < 4096, allocated
