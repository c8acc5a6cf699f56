"""memcached's operator surface against real processes: the stats groups and admin commands
compared with memcached 1.6.18, a memcached_exporter-style scrape, exact item figures, the
warm-restart rule after SIGTERM and after kill -9, and /metrics' process and build series.
"""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import MemcachedProcess, PetracacheProcess, RawClient, wait_until

pytestmark = pytest.mark.integration

CLASS_RE = re.compile(r"^(items:)?\d+:")


def stat_lines(client: RawClient, command: bytes) -> list[tuple[str, str]]:
    """``STAT name value`` pairs of one stats reply, read to its END line."""
    client.send(command + b"\r\n")
    rows: list[tuple[str, str]] = []
    while True:
        line = client.read_line().decode().rstrip("\r\n")
        if line == "END":
            return rows
        kind, name, value = line.split(" ", 2)
        assert kind == "STAT", line
        rows.append((name, value))


def class_fields(rows: list[tuple[str, str]]) -> list[str]:
    """The per-class field names of the first class in a stats slabs/items reply."""
    first = next(name for name, _ in rows if CLASS_RE.match(name))
    prefix = first[: first.rindex(":") + 1]
    return [name[len(prefix) :] for name, _ in rows if name.startswith(prefix)]


def write_twenty(client: RawClient) -> None:
    for _ in range(3):
        for i in range(20):
            assert client.call(b"set op%d 0 0 10\r\n0123456789\r\n" % i) == b"STORED\r\n"
    for i in range(20):
        client.send(b"get op%d\r\n" % i)
        assert client.read_until(b"END\r\n").startswith(b"VALUE")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RawClient, RawClient]]:
    """A fresh petracache and memcached, each with the same twenty items."""
    memcached = MemcachedProcess()
    with PetracacheProcess(tmp_path / "pc") as server:
        ours, theirs = server.client(), memcached.client()
        write_twenty(ours)
        write_twenty(theirs)
        yield ours, theirs
        ours.close()
        theirs.close()
    memcached.stop()


def test_stats_groups_have_memcached_fields_in_order(
    pair: tuple[RawClient, RawClient],
) -> None:
    ours, theirs = pair
    for group in (b"stats slabs", b"stats items"):
        a, b = stat_lines(ours, group), stat_lines(theirs, group)
        assert class_fields(a) == class_fields(b), group
        assert [n for n, _ in a if not CLASS_RE.match(n)] == [
            n for n, _ in b if not CLASS_RE.match(n)
        ]
    assert stat_lines(ours, b"stats sizes") == stat_lines(theirs, b"stats sizes")
    conns_ours = stat_lines(ours, b"stats conns")
    conns_theirs = stat_lines(theirs, b"stats conns")
    shape = [re.sub(r"^\d+:", "", n) for n, _ in conns_ours]
    assert shape == [re.sub(r"^\d+:", "", n) for n, _ in conns_theirs]


def test_cachedump_lines_and_errors_match_memcached(pair: tuple[RawClient, RawClient]) -> None:
    ours, theirs = pair
    ours.send(b"stats cachedump 1 5\r\n")
    dump = ours.read_until(b"END\r\n").split(b"\r\n")[:-2]
    assert len(dump) == 5
    assert all(re.fullmatch(rb"ITEM op\d+ \[10 b; 0 s\]", line) for line in dump)
    for line in (b"stats cachedump", b"stats cachedump x 1", b"stats cachedump 99 1"):
        assert ours.call(line + b"\r\n") == theirs.call(line + b"\r\n")
    assert ours.call(b"stats cachedump 5 1\r\n") == b"END\r\n"  # an empty class


def test_curr_items_and_bytes_are_exact(pair: tuple[RawClient, RawClient]) -> None:
    ours, _ = pair
    stats = dict(stat_lines(ours, b"stats"))
    assert stats["curr_items"] == "20"
    # key + 26-byte header + data, per item (docs/operations.md)
    assert int(stats["bytes"]) == sum(len(b"op%d" % i) + 26 + 10 for i in range(20))
    assert ours.call(b"delete op0\r\n") == b"DELETED\r\n"
    assert dict(stat_lines(ours, b"stats"))["curr_items"] == "19"


def test_memcached_exporter_scrape(pair: tuple[RawClient, RawClient]) -> None:
    """memcached_exporter sends these four on one connection and reads each to END."""
    ours, _ = pair
    stats = dict(stat_lines(ours, b"stats"))
    settings = dict(stat_lines(ours, b"stats settings"))
    slabs = dict(stat_lines(ours, b"stats slabs"))
    items = dict(stat_lines(ours, b"stats items"))
    assert settings["evictions"] == "off"  # no disk bound
    assert int(stats["limit_maxbytes"]) > 0
    assert slabs["active_slabs"] == "1"
    assert items["items:1:number"] == stats["curr_items"]


ADMIN_LINES = [
    b"slabs automove 0",
    b"slabs automove 1",
    b"slabs automove 2",
    b"slabs automove 3",
    b"slabs automove x",
    b"slabs automove ratio 0.5",
    b"slabs automove ratio",
    b"slabs automove 1 noreply",
    b"slabs reassign 1 2",
    b"slabs reassign x 2",
    b"slabs reassign",
    b"slabs",
    b"slabs bogus 1",
    b"lru tune 10 20 0.1 2",
    b"lru tune 50 50 0.1 2",
    b"lru tune 10 20 0 2",
    b"lru tune x 20 0.1 2",
    b"lru mode flat",
    b"lru mode segmented",
    b"lru mode bogus",
    b"lru temp_ttl 0",
    b"lru temp_ttl x",
    b"lru bogus",
    b"lru",
    b"misbehave",
    b"debugtime 1",
    b"flush_all",
    b"flush_all x",
    b"shutdown bogus",
    b"cache_memlimit 1",
]


def test_admin_commands_reply_as_memcached_with_features_off(tmp_path: Path) -> None:
    """memcached with slab reassignment and watchers off (-o no_slab_reassign -W), flush_all
    off (-F) and shutdown on (-A) is the reference for the replies. (``watch`` is served:
    ``test_watch`` compares it with memcached's.)"""
    memcached = MemcachedProcess(["-o", "no_slab_reassign", "-W", "-F", "-A"])
    try:
        with PetracacheProcess(tmp_path / "pc", ["-F", "-A"]) as server:
            ours, theirs = server.client(), memcached.client()
            for line in ADMIN_LINES:
                assert ours.call(line + b"\r\n") == theirs.call(line + b"\r\n"), line
    finally:
        memcached.stop()


def test_shutdown_command_stops_the_server_when_enabled(tmp_path: Path) -> None:
    with PetracacheProcess(tmp_path / "pc", ["-A"]) as server:
        client = server.client()
        client.send(b"shutdown graceful\r\n")
        assert client.is_closed(wait=15)
        assert server.proc is not None
        assert server.proc.wait(15) == 0
        assert "shutdown graceful command received" in server.log()


def test_shutdown_refused_without_a(server: PetracacheProcess) -> None:
    assert server.client().call(b"shutdown\r\n") == b"ERROR: shutdown not enabled\r\n"


def _get(client: RawClient, key: bytes) -> bytes:
    client.send(b"get " + key + b"\r\n")
    return client.read_until(b"END\r\n")


@pytest.mark.parametrize("how", ["sigterm", "kill"])
def test_away_longer_than_max_warm_downtime_comes_back_cold(tmp_path: Path, how: str) -> None:
    env = {"PETRACACHE_STORAGE__MAX_WARM_DOWNTIME": "1"}
    server = PetracacheProcess(tmp_path / "pc", env=env).start()
    try:
        client = server.client()
        assert client.call(b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
        client.close()
        if how == "kill":
            server.kill()
        else:
            assert server.stop(signal.SIGTERM) == 0
        time.sleep(2.5)  # down for longer than the 1 s allowed: wall-clock time, by design
        server.start()
        client = server.client()
        assert _get(client, b"k") == b"END\r\n"
        assert dict(stat_lines(client, b"stats"))["cold_starts"] == "1"
        assert "cold start: down " in server.log()
        # What is written after the start is served; a quick restart stays warm.
        assert client.call(b"set k2 0 0 1\r\nw\r\n") == b"STORED\r\n"
        client.close()
        server.env["PETRACACHE_STORAGE__MAX_WARM_DOWNTIME"] = "60"  # a loaded machine is slow
        server.restart()
        client = server.client()
        assert _get(client, b"k2") == b"VALUE k2 0 1\r\nw\r\nEND\r\n"
        assert dict(stat_lines(client, b"stats"))["cold_starts"] == "0"
        client.close()
    finally:
        server.__exit__()


def test_item_count_survives_restart_and_is_rebuilt_after_kill(tmp_path: Path) -> None:
    server = PetracacheProcess(tmp_path / "pc").start()
    try:
        client = server.client()
        write_twenty(client)
        client.close()
        server.restart()
        client = server.client()
        assert dict(stat_lines(client, b"stats"))["curr_items"] == "20"
        client.close()
        server.kill()
        server.start()
        client = server.client()
        wait_until(lambda: dict(stat_lines(client, b"stats"))["curr_items"] == "20", 10)
        assert "counted 20 items" in server.log()
    finally:
        server.__exit__()


def test_metrics_has_process_and_build_info(server: PetracacheProcess) -> None:
    with urllib.request.urlopen(server.admin_url() + "/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "process_cpu_seconds_total" in text
    assert "process_open_fds" in text
    assert re.search(r'petracache_build_info\{[^}]*memcached="1\.6\.18"[^}]*\} 1\.0', text)
    assert "petracache_curr_items 0.0" in text


def test_cache_memlimit_moves_the_disk_bound(tmp_path: Path) -> None:
    with PetracacheProcess(tmp_path / "pc", ["-m", "64"]) as server:
        client = server.client()
        settings = dict(stat_lines(client, b"stats settings"))
        assert (settings["maxbytes"], settings["evictions"]) == (str(64 << 20), "on")
        assert client.call(b"cache_memlimit 100\r\n") == b"OK\r\n"
        assert dict(stat_lines(client, b"stats"))["limit_maxbytes"] == str(100 << 20)
