"""Scale-out through a router: one petracache alone vs two behind nutcracker, same run.

``python -m bench.router [--seconds 10] [--concurrency 20] [--threads 2] [--value-size 1024]``

One petracache process serves from one core, so the way to use more cores is more instances
behind a router (see ``petracache.cluster.plan``). This runs memcaslap (libmemcached-tools; 90%
get, 10% set, fixed-size values) for the same duration against:

1. ``memcached``        -- memcached 1.6 with 1 thread, direct (the machine's yardstick);
2. ``petracache x1``    -- one petracache, direct;
3. ``nutcracker x1``    -- the same through nutcracker (the proxy's own cost);
4. ``nutcracker x2``    -- two petracache instances behind nutcracker, ketama.

and prints each throughput plus the ratios that answer the question: x2-behind-nutcracker
over x1-direct (what scale-out buys end to end) and over x1-behind-nutcracker (what the
second instance buys once the proxy is paid for). Every server, the proxy and memcaslap share
this host's cores, so the ratios, not the absolute figures, carry the result; to show where
the cores went, each run also reports the CPU each party used (user + system time from
/proc over the run's wall time, so 1.00 = one core busy the whole run).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from petracache.cluster.plan import Instance, nutcracker_yaml
from tests.harness import MemcachedProcess, NutcrackerProcess, PetracacheProcess

TPS_RE = re.compile(r"Run time: ([\d.]+)s Ops: (\d+) TPS: (\d+)")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Run:
    """One memcaslap run: throughput and the cores each party kept busy meanwhile."""

    tps: int
    server_cores: float
    proxy_cores: float
    loadgen_cores: float


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def memcaslap(
    port: int,
    load: tuple[int, int, int, int],
    servers: Sequence[int] = (),
    proxy: int | None = None,
) -> Run:
    """Run memcaslap against ``127.0.0.1:port``, accounting the CPU of the given pids."""
    seconds, concurrency, threads, size = load
    binary = shutil.which("memcaslap") or shutil.which("memaslap")
    if binary is None:
        raise SystemExit("memcaslap not found: apt-get install libmemcached-tools")
    cmd = [binary, "-s", f"127.0.0.1:{port}", "-t", f"{seconds}s", "-c", str(concurrency)]
    cmd += ["-T", str(threads), "-X", str(size)]
    watched = [*servers, *([proxy] if proxy else [])]
    before = {pid: cpu_seconds(pid) for pid in watched}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = {pid: cpu_seconds(pid) - before[pid] for pid in watched}
    matches = TPS_RE.findall(out)
    if not matches:
        raise RuntimeError(f"no TPS in memcaslap output:\n{out}")
    wall = float(matches[-1][0])
    loadgen = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    return Run(
        int(matches[-1][2]),
        sum(used[pid] for pid in servers) / wall,
        (used[proxy] / wall) if proxy else 0.0,
        loadgen / wall,
    )


@contextmanager
def petracache_pool(workdir: Path, count: int) -> Iterator[list[PetracacheProcess]]:
    servers = [PetracacheProcess(workdir / f"pc-{i}").start() for i in range(count)]
    try:
        yield servers
    finally:
        for server in servers:
            server.__exit__()


@contextmanager
def behind_nutcracker(
    workdir: Path, servers: list[PetracacheProcess]
) -> Iterator[NutcrackerProcess]:
    instances = [
        Instance(f"pc-{i}", "127.0.0.1", s.port, 0, s.db_path) for i, s in enumerate(servers)
    ]
    config = nutcracker_yaml(instances, listen="{listen}", auto_eject=False, timeout_ms=5000)
    proxy = NutcrackerProcess(workdir / "proxy", config)
    try:
        yield proxy
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
    results: dict[str, Run] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        memcached = MemcachedProcess()
        try:
            results["memcached"] = memcaslap(memcached.port, load, [memcached.proc.pid])
        finally:
            memcached.stop()
        with petracache_pool(root / "one", 1) as servers:
            pids = [s.proc.pid for s in servers if s.proc]
            results["petracache x1"] = memcaslap(servers[0].port, load, pids)
            with behind_nutcracker(root / "one", servers) as proxy:
                run = memcaslap(proxy.port, load, pids, proxy.proc.pid)
                results["nutcracker x1"] = run
        with (
            petracache_pool(root / "two", 2) as servers,
            behind_nutcracker(root / "two", servers) as proxy,
        ):
            pids = [s.proc.pid for s in servers if s.proc]
            results["nutcracker x2"] = memcaslap(proxy.port, load, pids, proxy.proc.pid)
    print(
        f"memcaslap -t {opts.seconds}s -c {opts.concurrency} -T {opts.threads} "
        f"-X {opts.value_size} (90% get / 10% set); {os.cpu_count()} cores"
    )
    print(f"{'target':<15} {'ops/s':>9} {'vs memcached':>13}   cores used: server proxy loadgen")
    base = results["memcached"].tps
    for name, r in results.items():
        print(
            f"{name:<15} {r.tps:>9} {r.tps / base:>13.2f}   "
            f"{r.server_cores:>18.2f} {r.proxy_cores:>5.2f} {r.loadgen_cores:>7.2f}"
        )
    x2 = results["nutcracker x2"].tps
    print(f"nutcracker x2 / petracache x1 direct:     {x2 / results['petracache x1'].tps:.2f}")
    print(f"nutcracker x2 / nutcracker x1:            {x2 / results['nutcracker x1'].tps:.2f}")


if __name__ == "__main__":
    main()
