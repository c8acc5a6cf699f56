"""petracache behind a real router: Debian's twemproxy (nutcracker), three instances, ketama.

What a deployment relies on, checked through the proxy:

* 10,000 keys written through the proxy all read back, each stored on exactly one instance;
* an instance stopped with SIGTERM and restarted on its data directory serves every key it
  owned again (persistence means no cold shard after a restart);
* an instance killed with SIGKILL is ejected by the proxy (auto_eject_hosts), the other
  shards keep serving, and once restarted on the same port it is taken back and serves its
  keys again (the write-ahead log kept every acknowledged write);
* ``petracache-cluster run`` starts N instances plus nutcracker from one command.

The router config comes from ``petracache.cluster.plan.nutcracker_yaml``, the same generator the
scale-out helper and the README use.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from petracache.cluster.cli import find_nutcracker
from petracache.cluster.plan import Instance, nutcracker_yaml
from tests.harness import (
    NutcrackerProcess,
    PetracacheProcess,
    RawClient,
    free_port,
    free_port_pair,
    wait_for_port,
    wait_until,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(find_nutcracker() is None, reason="nutcracker is not installed"),
]

POOL = "petracache"
RETRY_MS = 300  # server_retry_timeout: how soon an ejected server is tried again


@dataclass
class Cluster:
    servers: list[PetracacheProcess]
    proxy: NutcrackerProcess


def set_many(client: RawClient, items: dict[bytes, bytes], batch: int = 500) -> None:
    """Pipelined sets, ``batch`` at a time; every one must be STORED."""
    keys = list(items)
    for start in range(0, len(keys), batch):
        chunk = keys[start : start + batch]
        client.send(
            b"".join(b"set %b 0 0 %d\r\n%b\r\n" % (k, len(items[k]), items[k]) for k in chunk)
        )
        for _ in chunk:
            assert client.read_line() == b"STORED\r\n"


def get_many(client: RawClient, keys: list[bytes], batch: int = 100) -> dict[bytes, bytes]:
    """Multi-gets of ``batch`` keys (the proxy splits each across the shards)."""
    found: dict[bytes, bytes] = {}
    for start in range(0, len(keys), batch):
        client.send(b"get " + b" ".join(keys[start : start + batch]) + b"\r\n")
        while True:
            line = client.read_line()
            if line == b"END\r\n":
                break
            word, key, _flags, nbytes = line.split()
            assert word == b"VALUE", line
            found[key] = client.read_exact(int(nbytes) + 2)[:-2]
    return found


def get_one(proxy: NutcrackerProcess, key: bytes) -> bytes:
    """The first reply line for ``key`` through a fresh proxy connection."""
    client = proxy.client()
    try:
        client.send(b"get %b\r\n" % key)
        line = client.read_line()
        if line.startswith(b"VALUE "):
            client.read_until(b"END\r\n")
        return line
    finally:
        client.close()


def owners(cluster: Cluster, keys: list[bytes]) -> list[set[bytes]]:
    """Which keys each instance holds, read from the instances directly."""
    return [set(get_many(server.client(), keys)) for server in cluster.servers]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("nutcracker")
    servers = [PetracacheProcess(root / f"pc-{i}", args=["-p", str(free_port())]) for i in range(3)]
    proxy = None
    try:
        for server in servers:
            server.start()
        instances = [
            Instance(f"pc-{i}", "127.0.0.1", s.port, 0, s.db_path) for i, s in enumerate(servers)
        ]
        config = nutcracker_yaml(
            instances,
            listen="{listen}",
            pool=POOL,
            server_failure_limit=1,
            server_retry_timeout_ms=RETRY_MS,
            timeout_ms=2000,
        )
        proxy = NutcrackerProcess(root / "proxy", config)
        yield Cluster(servers, proxy)
    finally:
        if proxy is not None:
            proxy.stop()
        for server in servers:
            server.__exit__()


def test_ten_thousand_keys_and_a_sigterm_restart(cluster: Cluster) -> None:
    items = {b"k:%05d" % i: b"value-%d" % i for i in range(10_000)}
    keys = list(items)
    client = cluster.proxy.client()
    set_many(client, items)
    assert get_many(client, keys) == items

    shards = owners(cluster, keys)
    assert sum(len(shard) for shard in shards) == len(keys)  # each key on exactly one
    assert all(shard for shard in shards)  # ketama spread them over all three

    restarted = cluster.servers[1]
    port = restarted.port
    restarted.restart(signal.SIGTERM)
    assert restarted.port == port
    probe = sorted(shards[1])[0]
    wait_until(lambda: get_one(cluster.proxy, probe).startswith(b"VALUE "))
    assert get_many(cluster.proxy.client(), keys) == items  # no cold shard
    assert set(get_many(restarted.client(), keys)) == shards[1]


def test_kill_9_ejection_and_recovery(cluster: Cluster) -> None:
    items = {b"e:%04d" % i: b"%d" % (i * 7) for i in range(1000)}
    keys = list(items)
    set_many(cluster.proxy.client(), items)
    shards = owners(cluster, keys)
    victim = cluster.servers[2]
    victim_keys = sorted(shards[2])
    others = [k for k in keys if k not in shards[2]]
    assert victim_keys
    assert others
    ejects_before = int(cluster.proxy.stats()[POOL]["server_ejects"])  # type: ignore[index]

    victim.kill()
    # Requests for the dead shard fail until the proxy ejects it; then they go to the
    # remaining servers (a miss, never an error) and the other shards keep serving.
    wait_until(lambda: get_one(cluster.proxy, victim_keys[0]) == b"END\r\n")
    wait_until(
        lambda: int(cluster.proxy.stats()[POOL]["server_ejects"]) > ejects_before  # type: ignore[index]
    )
    survivors = get_many(cluster.proxy.client(), others)
    assert survivors == {k: items[k] for k in others}

    victim.start()  # same port, same data directory
    wait_until(lambda: get_one(cluster.proxy, victim_keys[0]).startswith(b"VALUE "))
    assert get_many(cluster.proxy.client(), keys) == items
    assert set(get_many(victim.client(), keys)) == shards[2]


def test_cluster_helper_runs_instances_behind_nutcracker(tmp_path: Path) -> None:
    base, router = free_port_pair(), free_port()
    command = [sys.executable, "-m", "petracache.cluster", "run", "-n", "2"]
    command += ["--base-port", str(base), "--admin-base-port", "0"]
    command += ["--data-dir", str(tmp_path), "--router-port", str(router)]
    command += ["--router-stats-port", str(free_port())]
    env = {**os.environ, "PETRACACHE_METRICS__LISTEN_ADDR": "127.0.0.1:0"}
    log = (tmp_path / "cluster.log").open("wb")
    proc = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        for port in (base, base + 1, router):
            wait_for_port(port)
        client = RawClient(router)
        items = {b"c:%d" % i: b"%d" % i for i in range(200)}
        set_many(client, items)
        wait_until(lambda: get_many(RawClient(router), list(items)) == items)
        direct = [set(get_many(RawClient(p), list(items))) for p in (base, base + 1)]
        assert all(direct)  # both instances hold a share
        assert (tmp_path / "mcrouter.json").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0  # every child shut down cleanly
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the helper and every instance it started
            proc.wait()
        log.close()
