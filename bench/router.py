"""Scale-out through a router: one petracache alone vs two behind nutcracker, same run.

``python -m bench.router [--seconds 10] [--concurrency 20] [--threads 2] [--value-size 1024]``

One petracache process serves from one core, so the way to use more cores is more instances
behind a router (see ``petracache.cluster``). This runs memcaslap (libmemcached-tools; 90%
get, 10% set, fixed-size values) for the same duration against:

1. ``memcached``        -- memcached 1.6 with 1 thread, direct (the machine's yardstick);
2. ``petracache x1``    -- one petracache, direct;
3. ``nutcracker x1``    -- the same through nutcracker (the proxy's own cost);
4. ``nutcracker x2``    -- two petracache instances behind nutcracker, ketama.

and prints each throughput plus the ratios that answer the question: x2-behind-nutcracker
over x1-direct (what scale-out buys end to end) and over x1-behind-nutcracker (what the
second instance buys once the proxy is paid for). Every server, the proxy and memcaslap share
this host's cores, so the ratios, not the absolute figures, carry the result.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from petracache.cluster import Instance, nutcracker_yaml
from tests.harness import MemcachedProcess, NutcrackerProcess, PetracacheProcess

TPS_RE = re.compile(r"Run time: ([\d.]+)s Ops: (\d+) TPS: (\d+)")


def memcaslap(port: int, seconds: int, concurrency: int, threads: int, size: int) -> int:
    """Run memcaslap against ``127.0.0.1:port``; returns its final TPS (ops per second)."""
    binary = shutil.which("memcaslap") or shutil.which("memaslap")
    if binary is None:
        raise SystemExit("memcaslap not found: apt-get install libmemcached-tools")
    cmd = [binary, "-s", f"127.0.0.1:{port}", "-t", f"{seconds}s", "-c", str(concurrency)]
    cmd += ["-T", str(threads), "-X", str(size)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120).stdout
    matches = TPS_RE.findall(out)
    if not matches:
        raise RuntimeError(f"no TPS in memcaslap output:\n{out}")
    return int(matches[-1][2])


@contextmanager
def petracache_pool(workdir: Path, count: int) -> Iterator[list[PetracacheProcess]]:
    servers = [PetracacheProcess(workdir / f"pc-{i}").start() for i in range(count)]
    try:
        yield servers
    finally:
        for server in servers:
            server.__exit__()


@contextmanager
def behind_nutcracker(workdir: Path, servers: list[PetracacheProcess]) -> Iterator[int]:
    instances = [
        Instance(f"pc-{i}", "127.0.0.1", s.port, 0, s.db_path) for i, s in enumerate(servers)
    ]
    config = nutcracker_yaml(instances, listen="{listen}", auto_eject=False, timeout_ms=5000)
    proxy = NutcrackerProcess(workdir / "proxy", config)
    try:
        yield proxy.port
    finally:
        proxy.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--value-size", type=int, default=1024)
    opts = parser.parse_args()
    load = (opts.seconds, opts.concurrency, opts.threads, opts.value_size)
    results: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        memcached = MemcachedProcess()
        try:
            results["memcached"] = memcaslap(memcached.port, *load)
        finally:
            memcached.stop()
        with petracache_pool(root / "one", 1) as servers:
            results["petracache x1"] = memcaslap(servers[0].port, *load)
            with behind_nutcracker(root / "one", servers) as port:
                results["nutcracker x1"] = memcaslap(port, *load)
        with (
            petracache_pool(root / "two", 2) as servers,
            behind_nutcracker(root / "two", servers) as port,
        ):
            results["nutcracker x2"] = memcaslap(port, *load)
    print(
        f"memcaslap -t {opts.seconds}s -c {opts.concurrency} -T {opts.threads} "
        f"-X {opts.value_size} (90% get / 10% set)"
    )
    print(f"{'target':<15} {'ops/s':>9} {'vs memcached':>13}")
    for name, tps in results.items():
        print(f"{name:<15} {tps:>9} {tps / results['memcached']:>13.2f}")
    x2 = results["nutcracker x2"]
    print(f"nutcracker x2 / petracache x1 direct:     {x2 / results['petracache x1']:.2f}")
    print(f"nutcracker x2 / nutcracker x1:            {x2 / results['nutcracker x1']:.2f}")


if __name__ == "__main__":
    main()
