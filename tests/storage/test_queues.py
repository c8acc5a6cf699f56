"""S3-FIFO's rules (``storage.reclaim.queues``), pure, and a model of the queues built on them.

``Queues`` is the reclaimer's S3-FIFO without RocksDB: the same rules, the same rounds
(from a high mark down to a low one, as ``eviction_control`` runs them), the same ghost,
and a read that sets the active bit once per pass, as the fetch record does. Items are
equal-sized, so capacity is an item count. The model's tests pin down what the policy
promises (a scan does not flush the hot set, a read in the small queue promotes, the ghost
admits, frequency carries an item through unread passes), and its hit ratio on a Zipf
trace against FIFO and CLOCK run in the same model.
"""

from __future__ import annotations

import itertools
import random
from collections import deque

import pytest

from petracache.storage.reclaim import queues
from petracache.storage.reclaim.ghost import GhostKeys


class Queues:
    """A cache of ``high`` items evicting to ``low`` in rounds, under ``policy``."""

    def __init__(self, policy: str, high: int, low: int) -> None:
        self.policy = policy
        self.high, self.low = high, low
        self.small: deque[tuple[int, int]] = deque()  # (position, key): the write order
        self.main: deque[int] = deque()
        self.read: dict[int, bool] = {}  # key -> active bit; the keys held
        self.freq: dict[int, int] = {}  # main-queue keys' frequency
        self.ghost = GhostKeys(high)
        self.newest = 0  # the last position (CAS unique) handed out
        self.evicted: list[int] = []
        self.requeued: list[int] = []  # keys given another pass in the main queue

    def __contains__(self, key: int) -> bool:
        return key in self.read

    def get(self, key: int) -> bool:
        """A read-through get: True on a hit, else the key is written."""
        if key in self.read:
            self.read[key] = True
            return True
        self.write(key)
        return False

    def write(self, key: int) -> None:
        self.newest += 1
        self.small.append((self.newest, key))
        self.read[key] = False
        if len(self.read) >= self.high:
            self.round()

    def round(self) -> None:
        while len(self.read) > self.low:
            if self.policy == "s3fifo":
                self._s3fifo_step()
                continue
            _, key = self.small.popleft()
            if self.policy == "clock" and self.read[key]:
                self.read[key] = False
                self.newest += 1
                self.small.append((self.newest, key))
            else:
                self._evict(key)

    def _s3fifo_step(self) -> None:
        items = len(self.read)
        small = self.small
        written = self.newest - small[0][0] if small else 0
        if small and (not self.main or queues.small_is_full(written, items)):
            _, key = small.popleft()
            read = self.read[key]
            if queues.promoted(read, not read and _name(key) in self.ghost):
                self._to_main(key, 0)
            else:
                self._evict(key)
                self.ghost.add(_name(key))
            return
        key = self.main.popleft()
        freq = queues.kept_freq(self.freq.pop(key), self.read[key])
        if freq is None:
            self._evict(key)
        else:
            self._to_main(key, freq)
            self.requeued.append(key)

    def _to_main(self, key: int, freq: int) -> None:
        self.main.append(key)
        self.freq[key] = freq
        self.read[key] = False

    def _evict(self, key: int) -> None:
        del self.read[key]
        self.evicted.append(key)


def _name(key: int) -> bytes:
    return b"%d" % key


def zipf(keys: int, requests: int, exponent: float, seed: int = 16) -> list[int]:
    rng = random.Random(seed)
    weights = list(itertools.accumulate(1.0 / r**exponent for r in range(1, keys + 1)))
    return rng.choices(range(keys), cum_weights=weights, k=requests)


def hit_ratio(policy: str, trace: list[int], high: int, warm: int) -> float:
    cache = Queues(policy, high, high * 40 // 55)
    hits = [cache.get(key) for key in trace]
    return sum(hits[warm:]) / len(hits[warm:])


# -- the rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("freq", "read", "kept"),
    [
        (0, False, None),  # never read since it moved: evicted
        (0, True, 1),  # read in this pass: +2, -1 for the pass
        (1, False, 0),
        (1, True, 2),
        (2, True, 2),  # capped at MAX_FREQ before the pass's -1
        (3, False, 2),
        (3, True, 2),
    ],
)
def test_main_queue_frequency(freq: int, read: bool, kept: int | None) -> None:
    assert queues.kept_freq(freq, read) == kept


@pytest.mark.parametrize(
    ("read", "remembered", "moves"),
    [(False, False, False), (True, False, True), (False, True, True), (True, True, True)],
)
def test_small_queue_promotes_a_read_or_remembered_key(
    read: bool, remembered: bool, moves: bool
) -> None:
    assert queues.promoted(read, remembered) is moves


def test_small_queue_is_full_at_its_share_of_the_items() -> None:
    assert not queues.small_is_full(49, items=500)
    assert queues.small_is_full(50, items=500)  # 10%
    assert queues.small_is_full(0, items=0)  # nothing live


@pytest.mark.parametrize(
    ("position", "written"),
    [
        (1900, 100),  # written in this run: plain distance
        (1001, 999),
        (400, 200 + 1000),  # before the restart: its gap (600 -> 1000) left out
        (1000, 1000),  # the first unique this run hands out is 1001
        (700, 1000),  # an entry newer than last_before cannot be; counted from the restart
    ],
)
def test_writes_since_leaves_out_the_restart_gap(position: int, written: int) -> None:
    # The last run wrote up to 600 and had reserved up to 1000; this run is at 2000.
    assert queues.writes_since(position, newest=2000, resumed=1000, last_before=600) == written


# -- the model -------------------------------------------------------------------------------


def test_a_key_read_in_the_small_queue_moves_to_main_and_an_unread_one_is_evicted() -> None:
    cache = Queues("s3fifo", high=100, low=70)
    cache.write(-1)
    cache.write(-2)
    cache.get(-1)
    for key in range(200):
        cache.write(key)
    assert -1 in cache
    assert -1 in cache.main
    assert -2 not in cache
    assert cache.evicted[0] == -2


def test_the_ghost_sends_a_key_written_again_to_main_unread() -> None:
    cache = Queues("s3fifo", high=100, low=70)
    cache.write(-1)
    for key in range(100):
        cache.write(key)
    assert -1 not in cache
    cache.write(-1)  # written again while remembered, never read
    for key in range(100, 200):
        cache.write(key)
    assert -1 in cache.main


def test_frequency_carries_a_read_item_through_unread_passes() -> None:
    cache = Queues("s3fifo", high=100, low=70)
    fresh = itertools.count()
    cache.write(-1)
    while cache.freq.get(-1) != 2:  # read in every pass until it keeps the most it can
        cache.get(-1)
        cache.write(next(fresh))
    passes = cache.requeued.count(-1)
    while -1 in cache:  # no more reads
        cache.write(next(fresh))
    assert cache.requeued.count(-1) - passes == 2  # a pass for each unit of frequency


def test_a_scan_does_not_flush_the_hot_set() -> None:
    cache = Queues("s3fifo", high=1000, low=700)
    hot = list(range(200))
    for _ in range(5):
        for key in hot:
            cache.get(key)
        for key in range(10_000 + 1000 * _, 10_000 + 1000 * _ + 500):
            cache.get(key)
    for key in range(100_000, 110_000):  # a scan of ten times the cache, each key once
        cache.get(key)
    assert all(key in cache for key in hot)


def test_fifo_and_clock_let_the_scan_through() -> None:
    for policy in ("fifo", "clock"):
        cache = Queues(policy, high=1000, low=700)
        for key in range(200):
            cache.get(key)
            cache.get(key)
        for key in range(100_000, 110_000):
            cache.get(key)
        assert not any(key in cache for key in range(200)), policy


@pytest.mark.parametrize("exponent", [0.9, 1.1])
def test_hit_ratio_on_zipf_beats_fifo_and_clock(exponent: float) -> None:
    trace = zipf(keys=20_000, requests=80_000, exponent=exponent)
    warm = len(trace) // 5
    ratios = {p: hit_ratio(p, trace, high=2000, warm=warm) for p in ("s3fifo", "clock", "fifo")}
    assert ratios["s3fifo"] > ratios["clock"] > ratios["fifo"], ratios
    if exponent == 0.9:
        assert ratios["s3fifo"] >= ratios["fifo"] + 0.04, ratios
