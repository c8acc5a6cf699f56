"""S3-FIFO over the write order: the rules of its small and main queues, pure.

Yang et al., "FIFO queues are all you need for cache eviction" (SOSP 2023): new items enter
a small probationary FIFO (a tenth of the cache); an item read again before it leaves the
small queue moves to a main FIFO, whose items carry a frequency of 0-3 and get a second
chance (the frequency decremented) when they reach its head; the others are evicted and
their keys remembered in a ghost FIFO, so that a key written again soon after goes to the
main queue. Most items a cache admits are never read again: the small queue evicts them
after a short stay, before they push out the items that are.

How the engine holds it (``storage.index``, the ``age`` family):

* The small queue is the write order the engine already has: every write puts its version's
  entry at position = its CAS, below ``index.MAIN_BASE``. So a write does nothing it did
  not do before (no lookup, no extra entry).
* The main queue is the positions from ``MAIN_BASE``: only the reclaimer writes there,
  moving an entry from the small queue's head (a promotion) or from the main queue's head
  (a second chance) to the main queue's tail, in the round's logged batch. The entry's
  value names the version's CAS and its frequency. A restart keeps both.
* "Read" is memcached's active bit, set by the fetch record a read already writes
  (``items.fetch_is_news``): one record per pass, after which reads write nothing. So the
  frequency counts the passes in which an item was read, not its reads: a pass with a read
  is worth ``READ_CREDIT``, one without costs 1 (the second chance), capped at
  ``MAX_FREQ``. An item read in every pass keeps 2, which carries it through two passes
  without a read; an item read once is back to 0 after one. Clearing the active bit is a
  rewrite of the item (its meta bits), logged, made only for an item read since the last
  one; an item that moves without having been read moves its entry only.
* The ghost (``ghost.GhostKeys``, in memory) is consulted when the small queue's head is
  judged rather than at the write (the write path does no lookup): a key evicted from the
  small queue and written again is promoted the first time its new entry reaches the head,
  read or not. With the small queue a tenth of the cache, that is a short delay.

The small queue's size is measured in writes, not bytes: it is full when its head entry is
older than ``SMALL_SHARE`` of the live items, counted in CAS uniques (each write takes one;
``writes_since``). Stale entries (a blind ``set``'s predecessors) and uniques taken by
writes that left no entry make it read a little fuller than it is; a round then takes from
the small queue a little earlier. A restart skips the rest of the last run's reserved block
of uniques (``storage.cas``, up to 2**20): ``writes_since`` leaves out the gap of the last
restart, so a small queue written across it is not taken for full until it is empty. (A
queue spanning several restarts reads fuller by the earlier gaps, so its entries from
before them are taken first, which FIFO order does anyway.)
"""

from __future__ import annotations

from typing import Final

SMALL_SHARE: Final = 0.10  # of the live items: the paper's 10% (its sensitivity study)
MAX_FREQ: Final = 3  # the paper's 2-bit frequency
READ_CREDIT: Final = 2  # a pass with a read (one fetch record): +2, then -1 for the pass


def writes_since(position: int, newest: int, resumed: int, last_before: int) -> int:
    """About how many writes were made after the one at ``position`` (its CAS unique).

    Args:
        position: a small-queue entry's position.
        newest: the last CAS unique handed out.
        resumed: the unique this run started after (``Engine.cas_resumed_at``).
        last_before: the last small-queue position at or before ``resumed`` (the newest
            write of the runs before this one; 0 if none).
    """
    if position > resumed:
        return newest - position
    return newest - resumed + max(last_before - position, 0)


def small_is_full(written_since_head: int, items: int) -> bool:
    """Whether the small queue holds its share: its head was written ``SMALL_SHARE`` of
    the live items ago or earlier (``writes_since``)."""
    return written_since_head >= SMALL_SHARE * items


def promoted(read: bool, remembered: bool) -> bool:
    """Whether the small queue's head moves to the main queue: read since it was written,
    or its key was evicted from the small queue recently (in the ghost)."""
    return read or remembered


def kept_freq(freq: int, read: bool) -> int | None:
    """The frequency a main-queue item is requeued with when its entry reaches the head,
    or None: evict it. ``read``: read since it was last moved."""
    credit = min(freq + READ_CREDIT if read else freq, MAX_FREQ)
    return credit - 1 if credit > 0 else None
