"""Eviction after a burst of large writes never empties the cache (issue 26).

memcached's own t/chunked-items.t write sequence against ``-m 48`` (a 48 MiB disk bound)
and otherwise default settings (64 MiB memtables): a few 400 KB values, 100 values of about
512 KB each read back right after their set, 410 values of 200 KB-1 MB, then an ``append``
of 14 bytes to one key followed by a ``get`` of it, over and over. The burst leaves far more
dead data (overwritten and evicted values in the write-ahead log and the memtables) than
live data. Eviction must not take that garbage for live data: no ``get`` may miss right
after an acknowledged ``append``, evictions stop once live data is under the bound, and the
directory comes back under the bound within seconds.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.e2e.fast_reclaim import stats
from tests.harness import PetracacheProcess, RawClient, wait_until

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
BOUND_MIB = 48
APPEND_SECONDS = 8.0  # the append/get loop after the burst
APPENDS_PER_SECOND = 400
SETTLE_SECONDS = 15.0  # the directory is back under the bound within this


def store(client: RawClient, key: bytes, value: bytes) -> None:
    assert client.call(b"set %b 0 0 %d\r\n%b\r\n" % (key, len(value), value)) == b"STORED\r\n"


def fetch(client: RawClient, key: bytes) -> bytes | None:
    reply = client.call(b"get %b\r\n" % key)
    if reply == b"END\r\n":
        return None
    header, _, rest = reply.partition(b"\r\n")
    return rest[: int(header.split()[3])]


def burst(client: RawClient) -> None:
    """t/chunked-items.t's writes: big values, some read back at once."""
    rng = random.Random(26)
    for i in range(4):
        store(client, b"big:%d" % i, bytes([65 + i]) * (400 * 1024))
    for i in range(100):
        value = bytes([97 + i % 26]) * (512 * 1024 - rng.randrange(1024))
        store(client, b"chunk:%d" % i, value)
        assert fetch(client, b"chunk:%d" % i) == value
    for i in range(410):
        store(client, b"mixed:%d" % i, b"m" * rng.randrange(200 * 1024, 1000 * 1000))


def disk_bytes(server: PetracacheProcess) -> int:
    return sum(p.stat().st_size for p in server.db_path.rglob("*") if p.is_file())


def test_eviction_after_a_burst_of_large_writes_keeps_what_was_just_written(
    tmp_path: Path,
) -> None:
    with PetracacheProcess(tmp_path / "pc", args=["-m", str(BOUND_MIB)]) as server:
        client = server.client(timeout=30.0)
        burst(client)
        store(client, b"appended", b"start")
        expected = b"start"
        misses = 0
        evictions: list[int] = []
        end = time.monotonic() + APPEND_SECONDS
        while time.monotonic() < end:
            reply = client.call(b"append appended 0 0 14\r\n" + b"x" * 14 + b"\r\n")
            if reply == b"STORED\r\n":
                expected += b"x" * 14
                if fetch(client, b"appended") != expected:
                    misses += 1
            else:  # evicted before this append: store it again and go on
                store(client, b"appended", b"start")
                expected = b"start"
                misses += 1
            if len(expected) > 100_000:
                store(client, b"appended", b"start")
                expected = b"start"
            evictions.append(stats(client)["evictions"])
            time.sleep(1 / APPENDS_PER_SECOND)
        counters = stats(client)
        assert misses == 0, f"{misses} reads missed right after a write; stats {counters}"
        # Live data is a few KB once the burst is evicted: eviction must stop, not go on
        # evicting what is written (the last second of the loop evicted nothing).
        per_second = APPENDS_PER_SECOND // 2
        assert evictions[-1] == evictions[-min(per_second, len(evictions))], counters
        assert counters["curr_items"] >= 1
        bound = BOUND_MIB * MIB
        wait_until(
            lambda: disk_bytes(server) < bound,
            SETTLE_SECONDS,
            what=f"the data directory under {BOUND_MIB} MiB",
        )
