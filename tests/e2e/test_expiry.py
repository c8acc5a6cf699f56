"""Background reclaim end to end: a real server, real RocksDB, counters read through ``stats``.

Short intervals come from the environment (``FAST`` in ``fast_reclaim``), so the reaper runs
every 50 ms; waits poll ``stats`` until a counter arrives (bounded, not timed). The sleeps
left are not waits for a condition: a window in which nothing may happen, memcached's
one-second flush resolution, and pauses that let the evictor keep up with the writer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.fast_reclaim import FAST, VALUE, get, set_many, stats, wait_for_stat
from tests.harness import PetracacheProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def fast_server(tmp_path: Path) -> Iterator[PetracacheProcess]:
    with PetracacheProcess(tmp_path / "pc", env=FAST) as proc:
        yield proc


def test_expired_items_are_reaped_without_being_read(fast_server: PetracacheProcess) -> None:
    client = fast_server.client()
    keys = [b"ttl:%d" % i for i in range(300)]
    set_many(client, keys, exptime=1)
    set_many(client, [b"forever"], exptime=0)
    after = wait_for_stat(client, "expired_reaped", 300)
    assert after["expired_reaped"] == 300
    assert after["get_expired"] == 0  # nobody read them: the reaper found them
    assert after["reclaimed_bytes"] >= 300 * len(VALUE)
    assert get(client, b"ttl:7") is None
    assert get(client, b"forever") == VALUE
    assert stats(client)["get_expired"] == 0  # the miss found nothing left to expire


def test_touch_and_rewrite_outlive_the_first_deadline(fast_server: PetracacheProcess) -> None:
    client = fast_server.client()
    set_many(client, [b"a", b"b", b"c", b"gone"], exptime=1)
    assert client.call(b"touch a 100\r\n") == b"TOUCHED\r\n"
    set_many(client, [b"b"], exptime=0, value=b"new")
    assert client.call(b"gat 100 c\r\n").startswith(b"VALUE c 0 1000")
    wait_for_stat(client, "expired_reaped", 1)
    time.sleep(0.5)  # several more reaper passes over the stale entries
    assert get(client, b"a") == VALUE
    assert get(client, b"b") == b"new"
    assert get(client, b"c") == VALUE
    assert get(client, b"gone") is None
    assert stats(client)["expired_reaped"] == 1


def test_flush_all_space_is_reclaimed_in_background(fast_server: PetracacheProcess) -> None:
    client = fast_server.client()
    set_many(client, [b"f:%d" % i for i in range(400)], exptime=0)
    assert client.call(b"flush_all\r\n") == b"OK\r\n"
    time.sleep(1.1)  # memcached's flush rule has a one-second resolution
    set_many(client, [b"after"], exptime=0)
    after = wait_for_stat(client, "flushed_reaped", 400)
    assert after["flushed_reaped"] == 400
    assert get(client, b"after") == VALUE
    assert get(client, b"f:3") is None


def test_eviction_keeps_writes_working_and_never_serves_stale_data(tmp_path: Path) -> None:
    bound = 2 * 1024 * 1024
    env = {**FAST, "PETRACACHE_STORAGE__MAX_DISK_BYTES": str(bound)}
    with PetracacheProcess(tmp_path / "pc", env=env) as server:
        client = server.client()
        latest: dict[bytes, bytes] = {}
        for round_ in range(3):  # 3x the bound: 6,000 x 1 KiB, every key written twice
            for start in range(0, 3000, 200):
                keys = [b"e:%d" % i for i in range(start, start + 200)]
                value = b"%d:" % round_ + VALUE
                set_many(client, keys, exptime=0, value=value)
                latest.update(dict.fromkeys(keys, value))
            time.sleep(0.2)  # let the evictor look at the disk usage between rounds
        counters = wait_for_stat(client, "evictions", 1)
        assert counters["evictions"] > 0
        # The newest write survives. Checked first: every read below records a fetch, which
        # grows the disk usage (so eviction runs on) and spares the item read (clock).
        assert get(client, b"e:2999") == latest[b"e:2999"]
        hits = 0
        for key, value in latest.items():
            got = get(client, key)
            if got is not None:
                hits += 1
                assert got == value, key
        assert hits > 0
