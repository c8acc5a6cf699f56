"""The eviction controller (``storage.reclaim.eviction_control``) on its own: pure, with a
settable timer and a fake disk, no RocksDB.

Each test is one rule of the module docstring, written in terms of its constants, so a
retuned constant keeps the tests while a broken rule fails one. Usages sit a few bytes
either side of a mark (``below``/``reaching``), clear of the marks' float rounding.
"""

from __future__ import annotations

import math

import pytest

from petracache.storage.reclaim.eviction_control import (
    FIRST_ROUND_SECONDS,
    GARBAGE_INTERVAL,
    GROWTH_SMOOTHING,
    HIGH_WATER,
    LOW_WATER,
    MAX_ROUND,
    EvictionControl,
)
from tests.storage.engines import Clock

BOUND = 10_000_000
HIGH = HIGH_WATER * BOUND  # usage plus lead at which a round starts
LOW = LOW_WATER * BOUND  # what a round aims for
LEAD_CAP = (HIGH_WATER - LOW_WATER) * BOUND
ROUND_CAP = MAX_ROUND * BOUND
S = GROWTH_SMOOTHING


def below(mark: float) -> int:
    """A usage just under ``mark``."""
    return math.floor(mark) - 2


def reaching(mark: float) -> int:
    """A usage just over ``mark``."""
    return math.ceil(mark) + 2


class Disk:
    """The usage function: returns ``used`` and counts the measurements."""

    def __init__(self) -> None:
        self.used = 0
        self.measured = 0

    def __call__(self) -> int:
        self.measured += 1
        return self.used


class Rig:
    """A controller with its settable timer (seconds, from 0) and fake disk."""

    def __init__(self) -> None:
        self.timer = Clock(0.0)
        self.disk = Disk()
        self.control = EvictionControl(BOUND, self.timer)

    def at(self, when: float, used: int, live: int | None = None) -> bool:
        """Ask whether a round is due at time ``when`` with ``used`` bytes on disk, of which
        ``live`` are live data (None: unknown)."""
        self.timer.now = when
        self.disk.used = used
        return self.control.due(self.disk, lambda: live)

    @property
    def target(self) -> int:
        return self.control.target

    def over_bound(self) -> bool:
        return self.control.over_bound

    def waits_compaction(self) -> bool:
        return self.control.waits_compaction


@pytest.fixture
def rig() -> Rig:
    return Rig()


# -- when a round starts and what it aims for ------------------------------------------------


def test_below_high_water_no_round_starts(rig: Rig) -> None:
    assert not rig.at(0, 0)
    assert not rig.at(0, below(HIGH))
    assert rig.target == 0


def test_at_high_water_a_round_aims_for_low_water(rig: Rig) -> None:
    used = reaching(HIGH)
    assert rig.at(0, used)
    assert rig.target == pytest.approx(used - LOW, abs=1)


def test_a_running_round_stays_due_without_measuring(rig: Rig) -> None:
    assert rig.at(0, reaching(HIGH))
    target = rig.target
    rig.disk.used = 0  # whatever the disk says meanwhile, the round runs to its end
    for _ in range(3):
        assert rig.control.due(rig.disk)
    assert rig.disk.measured == 1
    assert rig.target == target


def test_one_round_evicts_at_most_max_round_of_the_bound(rig: Rig) -> None:
    used = reaching(LOW + ROUND_CAP)  # more above LOW_WATER than one round may take
    assert used > HIGH
    assert rig.at(0, used)
    assert rig.target == pytest.approx(ROUND_CAP, abs=1)


def test_inflated_usage_cannot_empty_the_cache(rig: Rig) -> None:
    """Garbage (evicted but not yet compacted, replayed WAL) counts as usage; however much
    of it there is, a round evicts at most MAX_ROUND of the bound, then measures again."""
    assert rig.at(0, 10 * BOUND)
    assert rig.over_bound()
    assert rig.target == pytest.approx(ROUND_CAP, abs=1)


def test_over_bound_is_the_last_measurement_against_the_bound(rig: Rig) -> None:
    rig.at(0, BOUND - 1)
    assert not rig.over_bound()
    rig.control.end_round(0)
    rig.at(0, BOUND)
    assert rig.over_bound()
    rig.control.end_round(0)
    rig.at(0, below(HIGH))
    assert not rig.over_bound()


# -- the end of a round and its compaction ---------------------------------------------------


def test_no_new_round_while_the_last_ones_compaction_runs(rig: Rig) -> None:
    assert rig.at(0, reaching(HIGH))
    assert rig.control.end_round(evicted=1000)
    assert rig.waits_compaction()
    assert not rig.at(1, 2 * BOUND)  # far over the bound: still no round before it is done
    assert rig.disk.measured == 1  # not even measured
    rig.control.compacted()
    assert not rig.waits_compaction()
    assert rig.at(2, 2 * BOUND)
    assert rig.disk.measured == 2


def test_a_round_that_evicted_nothing_waits_for_no_compaction(rig: Rig) -> None:
    assert rig.at(0, reaching(HIGH))
    assert not rig.control.end_round(evicted=0)  # the index ran out: nothing to compact
    assert not rig.waits_compaction()
    assert rig.target == 0
    assert rig.at(0, reaching(HIGH))  # still over: the next round starts at once
    assert rig.disk.measured == 2


def test_end_round_ends_the_round_short_of_its_target(rig: Rig) -> None:
    assert rig.at(0, reaching(HIGH))
    rig.control.end_round(evicted=1)
    assert rig.target == 0
    rig.control.compacted()
    assert not rig.at(0, below(HIGH))


# -- the lead: what the writes add while a round and its compaction run ----------------------


def test_slow_writes_make_no_lead(rig: Rig) -> None:
    for second in range(10):  # the same usage, second after second
        assert not rig.at(second, below(HIGH))
    used = reaching(HIGH)
    assert rig.at(9, used)  # the same instant: only the learnt (zero) growth leads
    assert rig.target == pytest.approx(used - LOW, abs=1)


def test_a_fast_writer_starts_a_round_early_and_it_stops_lower() -> None:
    """From 0 to ``used`` in a second: the lead is the smoothed rate times the assumed
    first round (FIRST_ROUND_SECONDS), so the round starts that far below HIGH_WATER and
    aims that far below LOW_WATER."""
    mark = HIGH / (1 + S * FIRST_ROUND_SECONDS)  # used + S * used * FIRST = HIGH
    assert S * mark * FIRST_ROUND_SECONDS < LEAD_CAP  # premise: the cap plays no part
    short = Rig()
    short.at(0, 0)
    assert not short.at(1, below(mark))
    early = Rig()
    early.at(0, 0)
    used = reaching(mark)
    assert used < HIGH
    assert early.at(1, used)
    lead = S * used * FIRST_ROUND_SECONDS
    assert early.target == pytest.approx(used + lead - LOW, abs=2)


@pytest.mark.parametrize("samples", [1, 3, 20])
def test_the_growth_rate_is_smoothed(samples: int) -> None:
    """Each sample moves the learnt rate GROWTH_SMOOTHING of the way to the measured one,
    so a steady writer's rate after ``n`` samples is ``rate * (1 - (1 - S) ** n)``."""
    rate = 100_000  # bytes per second: slow enough that no round starts while learning
    rig = Rig()
    for second in range(samples + 1):
        assert not rig.at(second, second * rate)
    lead = rate * (1 - (1 - S) ** samples) * FIRST_ROUND_SECONDS
    # At the same instant (no new sample): a round starts that far below HIGH_WATER, and
    # not a few bytes further down.
    assert not rig.at(samples, below(HIGH - lead))
    used = reaching(HIGH - lead)
    assert rig.at(samples, used)
    assert rig.target == pytest.approx(used + lead - LOW, abs=2)


def test_a_shrinking_disk_is_no_negative_growth(rig: Rig) -> None:
    """Usage that falls between samples (a reap and its compaction) is zero growth, not
    negative: the next round starts at HIGH_WATER, not later."""
    rig.at(0, below(HIGH))
    assert not rig.at(1, 0)  # the disk emptied in a second
    used = reaching(HIGH)
    assert rig.at(1, used)  # the same instant: no new sample
    assert rig.target == pytest.approx(used - LOW, abs=1)


def test_the_lead_is_capped_at_the_gap_between_the_marks() -> None:
    """However fast the writes, a round starts no lower than LOW_WATER."""
    fastest = 0.001  # the whole gap and more in a millisecond
    short = Rig()
    short.at(0, 0)
    assert not short.at(fastest, below(HIGH - LEAD_CAP))
    over = Rig()
    over.at(0, 0)
    used = reaching(HIGH - LEAD_CAP)
    assert over.at(fastest, used)
    assert over.target == pytest.approx(used + LEAD_CAP - LOW, abs=2)


def test_the_lead_uses_the_last_rounds_duration(rig: Rig) -> None:
    """A round is timed from its start to the end of its compaction, and the next lead is
    the growth rate times that duration: a short round, a short lead."""
    duration = FIRST_ROUND_SECONDS / 2
    assert rig.at(0, reaching(HIGH))  # a round on usage alone (no growth learnt yet)
    rig.control.end_round(evicted=1)
    rig.timer.now = duration
    rig.control.compacted()
    assert not rig.at(10, 0)  # a fresh baseline after the compaction
    mark = HIGH / (1 + S * duration)  # used + S * used * duration = HIGH
    assert S * mark * duration < LEAD_CAP  # premise: the cap plays no part
    first = below(mark)
    # Led by FIRST_ROUND_SECONDS this usage would start a round; led by the timed round
    # it must not.
    assert first + S * first * FIRST_ROUND_SECONDS > HIGH
    assert not rig.at(11, first)
    used = reaching(mark)
    assert rig.at(11, used)  # the same instant: growth still learnt from ``first``
    assert rig.target == pytest.approx(used + S * first * duration - LOW, abs=2)


def test_the_compactions_drop_is_not_a_rate(rig: Rig) -> None:
    """Growth is measured between rounds only: the last sample before a round and the first
    after its compaction are never compared (usage fell in between, by the eviction)."""
    rig.at(0, 0)
    used_at_round = reaching(HIGH)
    assert rig.at(10, used_at_round)  # a round on usage alone, and a growth sample
    growth = S * used_at_round / 10
    rig.control.end_round(evicted=1)
    rig.timer.now = 10 + FIRST_ROUND_SECONDS
    rig.control.compacted()  # the round took FIRST_ROUND_SECONDS: the duration is unchanged
    assert growth * FIRST_ROUND_SECONDS < LEAD_CAP  # premise: the cap plays no part
    # Usage fell to 0: compared with the sample before the round, that would be a zero
    # rate, and the learnt growth would lose GROWTH_SMOOTHING of itself.
    assert not rig.at(12, 0)
    lead = growth * FIRST_ROUND_SECONDS
    assert not rig.at(12, below(HIGH - lead))
    used = reaching(HIGH - lead)
    assert rig.at(12, used)
    assert rig.target == pytest.approx(used + lead - LOW, abs=2)


def test_a_compaction_outside_a_round_times_nothing_and_keeps_the_baseline(rig: Rig) -> None:
    """``compacted`` also follows compactions no round waited for (after reaping): they
    neither time a round nor break the growth measurement."""
    rig.at(0, 0)
    rig.timer.now = 0.5
    rig.control.compacted()
    assert not rig.waits_compaction()
    # From 0 to ``used`` in 2 s, measured across the compaction, led by FIRST_ROUND_SECONDS.
    mark = HIGH / (1 + S * FIRST_ROUND_SECONDS / 2)
    assert not rig.at(2, below(mark))
    lead = S * below(mark) / 2 * FIRST_ROUND_SECONDS
    used = reaching(mark)
    assert rig.at(2, used)
    assert rig.target == pytest.approx(used + lead - LOW, abs=2)


# -- garbage is not live data ------------------------------------------------------------------


def test_garbage_over_the_mark_is_reclaimed_not_evicted(rig: Rig) -> None:
    """Usage far over the bound with a few KB live (a burst of overwrites): no round, the
    garbage is flagged for a flush and compaction, and the next measurement waits for it."""
    assert not rig.at(0, 10 * BOUND, live=4096)
    assert rig.target == 0
    assert rig.control.garbage
    assert not rig.over_bound()
    rig.control.garbage = False  # the reclaimer took it
    measured = rig.disk.measured
    assert not rig.at(0.1, 10 * BOUND, live=4096)
    assert rig.disk.measured == measured  # waiting for the reclaim's compaction
    rig.control.compacted()
    assert not rig.at(0.2, reaching(HIGH), live=0)
    assert not rig.control.garbage  # at most once per GARBAGE_INTERVAL
    rig.control.compacted()
    assert not rig.at(GARBAGE_INTERVAL, reaching(HIGH), live=0)
    assert rig.control.garbage


def test_a_round_evicts_only_the_live_excess(rig: Rig) -> None:
    live = reaching(HIGH)
    assert rig.at(0, 2 * BOUND, live=live)
    assert not rig.control.garbage
    assert rig.target == pytest.approx(live - LOW, abs=1)
    assert not rig.over_bound()  # the live data is under the bound


def test_usage_is_evictable_when_live_data_is_unknown_or_larger(rig: Rig) -> None:
    """Unknown live data (a recount running): usage decides, as it must to keep the bound;
    live data larger than usage (compressed values) does not raise the target."""
    used = reaching(HIGH)
    assert rig.at(0, used, live=None)
    assert rig.target == pytest.approx(used - LOW, abs=1)
    rig.control.end_round(0)
    assert rig.at(0, used, live=3 * BOUND)
    assert rig.target == pytest.approx(used - LOW, abs=1)
