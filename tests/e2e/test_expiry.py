"""Background reclaim end to end: a real server, real RocksDB, counters read through ``stats``.

Short intervals come from the environment (``PETRACACHE_STORAGE__REAPER_INTERVAL``), so the
reaper runs every 50 ms; waits poll ``stats`` until a counter arrives (bounded, not timed).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import PetracacheProcess, RawClient

pytestmark = pytest.mark.integration

FAST = {
    "PETRACACHE_STORAGE__REAPER_INTERVAL": "0.05",
    "PETRACACHE_STORAGE__WRITE_BUFFER_SIZE": str(256 * 1024),
    "PETRACACHE_STORAGE__TARGET_FILE_SIZE_BASE": str(256 * 1024),
}
VALUE = b"v" * 1000
WAIT = 20.0  # upper bound for background work on a loaded CI machine


def stats(client: RawClient) -> dict[str, int]:
    out = {}
    for line in client.call(b"stats\r\n").split(b"\r\n"):
        parts = line.split()
        if len(parts) == 3 and parts[0] == b"STAT" and parts[2].isdigit():
            out[parts[1].decode()] = int(parts[2])
    return out


def wait_for(client: RawClient, name: str, value: int) -> dict[str, int]:
    deadline = time.monotonic() + WAIT
    while True:
        current = stats(client)
        if current.get(name, 0) >= value or time.monotonic() > deadline:
            return current
        time.sleep(0.05)


def set_many(client: RawClient, keys: list[bytes], exptime: int, value: bytes = VALUE) -> None:
    for start in range(0, len(keys), 200):
        chunk = keys[start : start + 200]
        client.call(
            b"".join(
                b"set %b 0 %d %d noreply\r\n%b\r\n" % (k, exptime, len(value), value) for k in chunk
            )
        )


def get(client: RawClient, key: bytes) -> bytes | None:
    reply = client.call(b"get %b\r\n" % key)
    if reply == b"END\r\n":
        return None
    header, _, rest = reply.partition(b"\r\n")
    size = int(header.split()[3])
    return rest[:size]


@pytest.fixture
def fast_server(tmp_path: Path) -> Iterator[PetracacheProcess]:
    with PetracacheProcess(tmp_path / "pc", env=FAST) as proc:
        yield proc


def test_expired_items_are_reaped_without_being_read(fast_server: PetracacheProcess) -> None:
    client = fast_server.client()
    keys = [b"ttl:%d" % i for i in range(300)]
    set_many(client, keys, exptime=1)
    set_many(client, [b"forever"], exptime=0)
    after = wait_for(client, "expired_reaped", 300)
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
    wait_for(client, "expired_reaped", 1)
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
    after = wait_for(client, "flushed_reaped", 400)
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
        counters = wait_for(client, "evictions", 1)
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
