"""The bounded, resumable item walk behind lru_crawler metadump (real RocksDB, fake clock)."""

from __future__ import annotations

from pathlib import Path

from petracache.rules.verbs import StoreMode
from petracache.storage.crawl import ItemCrawl
from petracache.storage.engine import Engine
from petracache.storage.items import FETCHED
from tests.storage.engines import Clock


def _fill(engine: Engine, count: int) -> None:
    for i in range(count):
        engine.store(StoreMode.SET, b"k%05d" % i, i, 0, b"v%d" % i)


def test_walk_lists_every_live_item_once_in_bounded_steps(engine: Engine) -> None:
    _fill(engine, 1000)
    walk = ItemCrawl(engine, batch=64)
    seen: list[bytes] = []
    steps = 0
    while not walk.done:
        items = walk.step()
        assert len(items) <= 64
        seen += [key for key, _item in items]
        steps += 1
    assert seen == [b"k%05d" % i for i in range(1000)]
    assert steps >= 1000 // 64
    assert walk.step() == []


def test_walk_skips_expired_and_flushed_items(engine: Engine, clock: Clock) -> None:
    engine.store(StoreMode.SET, b"short", 0, 10, b"x")
    engine.store(StoreMode.SET, b"forever", 0, 0, b"x")
    clock.now += 11
    assert [k for k, _ in ItemCrawl(engine).step()] == [b"forever"]
    engine.flush_all(0)
    clock.now += 1
    engine.store(StoreMode.SET, b"after", 0, 0, b"x")
    assert [k for k, _ in ItemCrawl(engine).step()] == [b"after"]


def test_walk_sees_keys_ahead_of_its_cursor_and_keeps_its_time_budget(engine: Engine) -> None:
    _fill(engine, 100)
    ticks = iter(range(10_000))
    walk = ItemCrawl(engine, batch=1000, budget=0.5, timer=lambda: float(next(ticks)))
    first = walk.step()  # the fake timer passes the budget at the first check (32 items)
    assert 0 < len(first) < 100
    engine.store(StoreMode.SET, b"zzz", 0, 0, b"late")  # ahead of the cursor
    rest: list[bytes] = []
    while not walk.done:
        rest += [k for k, _ in walk.step()]
    assert rest[-1] == b"zzz"
    assert len(first) + len(rest) == 101


def test_walk_of_an_empty_database(tmp_path: Path, engine: Engine) -> None:
    walk = ItemCrawl(engine)
    assert walk.step() == []
    assert walk.done


def test_walk_reports_the_fetch_state_the_hot_items_still_keep(engine: Engine) -> None:
    _fill(engine, 3)
    engine.fetch(b"k00001")  # recorded in the hot items only, for now (storage.hot)
    fetched = {key: bool(item.bits & FETCHED) for key, item in ItemCrawl(engine).step()}
    assert fetched == {b"k00000": False, b"k00001": True, b"k00002": False}
