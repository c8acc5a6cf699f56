"""The benchmark suite: petracache against memcached 1.6, same machine, same run.

Strategy: both servers run at once on loopback, each pinned to core 0 (memcached ``-t 1``),
the C load generator on core 1. For every workload the two servers are measured in
alternating order (memcached first in even rounds, petracache first in odd ones), so drift
on a shared machine hits both alike; the table reports the mean throughput over rounds and
the median of each latency percentile. Only ratios within one run are meaningful.

Workloads (issue 6):

1. PetraCache's: 1 KB values, 90% get / 10% set, 20 connections, no pipelining, keys
   pre-loaded so gets hit.
2. The same with pipelines of 32.
3. 100-byte values, 1,000 connections, a fixed offered rate of half petracache's
   throughput in (1), latency timed from each request's scheduled send (p99.9 SLO 5 ms).
4. Multi-get of 100 keys (100-byte values).
5. Write-only: 1 KB sets (the write-ahead log's cost; petracache's default durability).
6. Reads over a dataset 5x petracache's block cache (block cache misses; RocksDB reads go
   to its SST files, which the OS page cache may hold).

Then a restart test: load N items, restart, and measure restart-to-ready time, the hit
ratio of the first minute of reads, and petracache's bytes on disk per item.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import LOADGEN_CPUS, SERVER_CPUS, LoadResult, Memcached, Petracache, run_loadgen
from tests.harness import RawClient

MIB = 1024 * 1024
SETTLE = 1.0  # seconds between runs: 1,000 closing connections must not overlap the next run


@dataclass(frozen=True, slots=True)
class Sizes:
    """Everything that scales the suite's run time (see README for the full-size figures)."""

    duration: float = 8.0  # measured seconds per run
    warmup: float = 1.0  # seconds before measuring
    rounds: int = 2  # runs per server per workload, alternating order
    keys: int = 100_000  # pre-loaded keys for workloads 1-5
    disk_block_cache: int = 16 * MIB  # workload 6's block cache ...
    disk_keys: int = 80_000  # ... and its dataset of 1 KB items (about 5x the cache)
    restart_items: int = 2_000_000  # items held by the server that is restarted
    restart_value: int = 100  # their value size
    hit_window: float = 60.0  # seconds of reads after the restart ("first minute")
    memcached_hit_window: float = 10.0  # memcached forgets everything; 10 s shows it


FULL = Sizes()
SMOKE = Sizes(
    duration=1.0,
    warmup=0.2,
    rounds=1,
    keys=2_000,
    disk_block_cache=1 * MIB,
    disk_keys=5_000,
    restart_items=20_000,
    hit_window=1.0,
    memcached_hit_window=1.0,
)


@dataclass(frozen=True, slots=True)
class Dataset:
    """Pre-loaded keys shared by the workloads that run on it."""

    name: str
    keys: int
    value_size: int
    petracache_env: tuple[tuple[str, str], ...] = ()
    flush_to_disk: bool = False  # restart petracache after loading: memtables -> SST files


@dataclass(frozen=True, slots=True)
class Workload:
    key: str
    title: str
    dataset: str
    args: tuple[str, ...]
    rate_of: str = ""  # open loop at a share of petracache's throughput in this workload
    min_ratio: float = 0.0  # target: petracache ops/s >= min_ratio x memcached's
    max_p999_ms: float = 0.0  # target: petracache p99.9 below this
    rate_share: float = 0.5  # with rate_of: the share of that throughput offered
    max_ms: float = 0.0  # target: no petracache request slower than this


def datasets(sizes: Sizes) -> dict[str, Dataset]:
    return {
        "1k": Dataset("1k", sizes.keys, 1024),
        "100b": Dataset("100b", sizes.keys, 100),
        "disk": Dataset(
            "disk",
            sizes.disk_keys,
            1024,
            (
                ("PETRACACHE_STORAGE__BLOCK_CACHE_SIZE", str(sizes.disk_block_cache)),
                # the data set stays 5x what petracache may keep in memory: a disk workload
                ("PETRACACHE_STORAGE__HOT_CACHE_SIZE", str(sizes.disk_block_cache)),
            ),
            flush_to_disk=True,
        ),
    }


WORKLOADS = (
    Workload("1", "1 KB, 90/10 get/set, 20 conns", "1k", ("-c", "20", "-g", "0.9"), "", 0.5, 5.0),
    Workload(
        "2",
        "1 KB, 90/10, 20 conns, pipeline 32",
        "1k",
        ("-c", "20", "-g", "0.9", "-P", "32"),
        "",
        0.9,
    ),
    Workload("5", "1 KB sets only, 20 conns (WAL on)", "1k", ("-c", "20", "-g", "0"), "", 0.4),
    Workload(
        "3",
        "100 B, 1000 conns, half the peak rate",
        "100b",
        ("-c", "1000", "-g", "0.9"),
        "1",
        0.0,
        5.0,
        max_ms=100.0,
    ),
    Workload(
        "3q",
        "100 B, 1000 conns, a quarter of the peak rate",
        "100b",
        ("-c", "1000", "-g", "0.9"),
        "1",
        0.0,
        5.0,
        rate_share=0.25,
        max_ms=100.0,
    ),
    Workload("4", "multi-get of 100 keys, 20 conns", "100b", ("-c", "20", "-g", "1", "-m", "100")),
    Workload("6", "1 KB gets, dataset 5x block cache", "disk", ("-c", "20", "-g", "1")),
)


@dataclass(slots=True)
class Row:
    """One workload's results for both servers (one LoadResult per round)."""

    workload: Workload
    offered_rate: float = 0.0
    runs: dict[str, list[LoadResult]] = field(
        default_factory=lambda: {"memcached": [], "petracache": []}
    )

    def ops(self, server: str) -> float:
        return statistics.mean(r.ops_per_sec for r in self.runs[server])

    def latency_ms(self, server: str, name: str) -> float:
        return float(statistics.median(getattr(r, name) for r in self.runs[server])) / 1000.0

    def cpu_us(self, server: str) -> float:
        """Mean server CPU microseconds per request."""
        return statistics.mean(r.server_cpu_us_per_op for r in self.runs[server])

    def ratio(self) -> float:
        base = self.ops("memcached")
        return self.ops("petracache") / base if base else 0.0

    def errors(self) -> int:
        return sum(r.errors for runs in self.runs.values() for r in runs)

    def verdict(self) -> str:
        w = self.workload
        checks = []
        if w.min_ratio:
            checks.append(self.ratio() >= w.min_ratio)
        if w.max_p999_ms:
            checks.append(self.latency_ms("petracache", "p999_us") < w.max_p999_ms)
        if w.max_ms:
            checks.append(max(r.max_us for r in self.runs["petracache"]) / 1000 < w.max_ms)
        if not checks:
            return "-"
        return "met" if all(checks) else "MISSED"

    def target(self) -> str:
        w = self.workload
        parts = []
        if w.min_ratio:
            parts.append(f">= {w.min_ratio}x")
        if w.max_p999_ms:
            parts.append(f"p99.9 < {w.max_p999_ms:g} ms")
        if w.max_ms:
            parts.append(f"max < {w.max_ms:g} ms")
        return ", ".join(parts) or "-"


@dataclass(slots=True)
class RestartResult:
    server: str
    items: int
    load_ops_per_sec: float
    stop_seconds: float
    ready_seconds: float
    hit_ratio: float
    window_seconds: float
    read_ops_per_sec: float
    disk_bytes_per_item: float = 0.0


def _loadgen_args(sizes: Sizes, dataset: Dataset, extra: tuple[str, ...]) -> list[str]:
    return [
        "-t", str(sizes.duration), "-w", str(sizes.warmup),
        "-k", str(dataset.keys), "-v", str(dataset.value_size), *extra,
    ]  # fmt: skip


def preload(port: int, keys: int, value_size: int) -> LoadResult:
    """Set keys 0..keys-1 once (pipelined), so the gets that follow hit."""
    args = ["-L", "-c", "8", "-P", "64", "-k", str(keys), "-v", str(value_size)]
    result = run_loadgen(port, args)
    if result.errors:
        raise RuntimeError(f"preload: {result.errors} sets failed")
    return result


@contextmanager
def server_pair(workdir: Path, dataset: Dataset) -> Iterator[dict[str, Any]]:
    """memcached and petracache, both pre-loaded with ``dataset``; yields {name: server}."""
    memory_mb = max(256, dataset.keys * (dataset.value_size + 200) * 2 // MIB)
    # Equal memory: petracache may keep as many bytes of hot items as memcached may hold.
    env = {"PETRACACHE_STORAGE__HOT_CACHE_SIZE": str(memory_mb * MIB)}
    pc = Petracache(workdir / f"pc-{dataset.name}", env=env | dict(dataset.petracache_env))
    with Memcached(memory_mb=memory_mb) as mc, pc:
        preload(mc.port, dataset.keys, dataset.value_size)
        preload(pc.port, dataset.keys, dataset.value_size)
        if dataset.flush_to_disk:
            pc.restart()
        yield {"memcached": mc, "petracache": pc}


def run_workloads(
    sizes: Sizes, workdir: Path, only: set[str] | None, log: Callable[[str], None]
) -> list[Row]:
    """Run every selected workload; rows come back in the issue's order (1..6)."""
    rows: dict[str, Row] = {}
    sets = datasets(sizes)
    for name, dataset in sets.items():
        selected = [w for w in WORKLOADS if w.dataset == name and (not only or w.key in only)]
        if not selected:
            continue
        log(f"dataset {name}: {dataset.keys} keys x {dataset.value_size} B, pre-loading")
        with server_pair(workdir, dataset) as servers:
            for w in selected:
                row = rows[w.key] = Row(w)
                extra = w.args
                if w.rate_of:
                    peak = rows[w.rate_of].ops("petracache") if w.rate_of in rows else 0.0
                    if not peak:  # the reference workload was not run: measure the peak now
                        peak = run_loadgen(
                            servers["petracache"].port,
                            _loadgen_args(sizes, dataset, WORKLOADS[0].args),
                        ).ops_per_sec
                    row.offered_rate = round(peak * w.rate_share)
                    extra = (*extra, "-R", str(row.offered_rate))
                for rnd in range(sizes.rounds):
                    order = ["memcached", "petracache"]
                    if rnd % 2:
                        order.reverse()
                    for server in order:
                        result = run_loadgen(
                            servers[server].port,
                            _loadgen_args(sizes, dataset, extra),
                            server_pid=servers[server].proc.pid,
                        )
                        row.runs[server].append(result)
                        time.sleep(SETTLE)  # let the server close this run's connections
                        log(
                            f"  workload {w.key} {server:10} {result.ops_per_sec:10.0f} ops/s"
                            f"  p99.9 {result.p999_us / 1000:7.2f} ms"
                            f"  server cpu {result.server_cpu_us_per_op:6.1f} us/op"
                            f"  loadgen cpu {result.cpu_pct:.0f}%"
                            f"  max {result.max_us / 1000:.1f} ms"
                            + (f"  kernel {result.kernel}" if result.kernel else "")
                        )
    return [rows[w.key] for w in sorted(WORKLOADS, key=lambda w: w.key) if w.key in rows]


def _time_to_first_hit(port: int, key: bytes, deadline: float = 120.0) -> None:
    """Block until ``get key`` answers (with a hit or a miss): the server serves reads."""
    end = time.monotonic() + deadline
    while True:
        try:
            client = RawClient(port, timeout=5.0)
            try:
                client.send(b"get " + key + b"\r\n")
                client.read_until(b"END\r\n")
                return
            finally:
                client.close()
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.005)


def restart_petracache(sizes: Sizes, workdir: Path) -> RestartResult:
    """Load, SIGTERM, start again; time to the first served read, then a read window."""
    items, value = sizes.restart_items, sizes.restart_value
    pc = Petracache(workdir / "pc-restart")
    with pc:
        load = preload(pc.port, items, value)
        t0 = time.monotonic()
        pc.stop()
        stopped = time.monotonic() - t0
        disk = pc.disk_bytes()
        t0 = time.monotonic()
        pc.start()
        _time_to_first_hit(pc.port, b"key:0000000000")
        ready = time.monotonic() - t0
        reads = run_loadgen(
            pc.port,
            ["-t", str(sizes.hit_window), "-w", "0", "-c", "20", "-g", "1",
             "-k", str(items), "-v", str(value)],
        )  # fmt: skip
    return RestartResult(
        "petracache", items, load.ops_per_sec, stopped, ready, reads.hit_ratio,
        sizes.hit_window, reads.ops_per_sec, disk / items,
    )  # fmt: skip


def restart_memcached(sizes: Sizes) -> RestartResult:
    """The same for memcached: it comes back empty."""
    items, value = sizes.restart_items, sizes.restart_value
    memory_mb = max(256, items * (value + 100) * 2 // MIB)
    mc = Memcached(memory_mb=memory_mb)
    try:
        load = preload(mc.port, items, value)
        t0 = time.monotonic()
        mc.stop()
        stopped = time.monotonic() - t0
        t0 = time.monotonic()
        mc = Memcached(memory_mb=memory_mb)
        _time_to_first_hit(mc.port, b"key:0000000000")
        ready = time.monotonic() - t0
        reads = run_loadgen(
            mc.port,
            ["-t", str(sizes.memcached_hit_window), "-w", "0", "-c", "20", "-g", "1",
             "-k", str(items), "-v", str(value)],
        )  # fmt: skip
    finally:
        mc.stop()
    return RestartResult(
        "memcached", items, load.ops_per_sec, stopped, ready, reads.hit_ratio,
        sizes.memcached_hit_window, reads.ops_per_sec,
    )  # fmt: skip


def machine() -> dict[str, str]:
    """What the README's table header needs: nproc, CPU model, Python, date."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": f"{os.getloadavg()[0]:.1f}",
        "server_cpus": SERVER_CPUS or "unpinned",
        "loadgen_cpus": LOADGEN_CPUS or "unpinned",
    }


def render(rows: list[Row], restarts: list[RestartResult], info: dict[str, str]) -> str:
    """The Markdown tables that go into README.md."""
    out = [
        f"Machine: {info['nproc']} x {info['cpu']}, Python {info['python']}, {info['date']}; "
        f"servers on CPU {info['server_cpus']}, load generator on CPU {info['loadgen_cpus']}; "
        f"load average {info['load_average']} at the start, {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| # | workload | memcached ops/s | petracache ops/s | ratio"
        " | memcached p50 / p99 / p99.9 / max ms | petracache p50 / p99 / p99.9 / max ms"
        " | server CPU us/op (mc / pc) | server cores used (mc / pc)"
        " | loadgen CPU % (mc / pc) | target | |",
        "|---|---|---:|---:|---:|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        w = row.workload
        title = w.title + (f" ({row.offered_rate:.0f} req/s offered)" if row.offered_rate else "")
        lat = {
            s: " / ".join(f"{row.latency_ms(s, n):.2f}" for n in ("p50_us", "p99_us", "p999_us"))
            + f" / {max(r.max_us for r in row.runs[s]) / 1000:.1f}"
            for s in ("memcached", "petracache")
        }
        cpu = " / ".join(
            f"{statistics.mean(r.cpu_pct for r in row.runs[s]):.0f}"
            for s in ("memcached", "petracache")
        )
        server_cpu = f"{row.cpu_us('memcached'):.1f} / {row.cpu_us('petracache'):.1f}"
        cores = " / ".join(
            f"{statistics.mean(r.server_cores for r in row.runs[s]):.2f}"
            for s in ("memcached", "petracache")
        )
        errors = f" ({row.errors()} errors)" if row.errors() else ""
        out.append(
            f"| {w.key} | {title} | {row.ops('memcached'):,.0f} | {row.ops('petracache'):,.0f} "
            f"| {row.ratio():.2f} | {lat['memcached']} | {lat['petracache']} "
            f"| {server_cpu} | {cores} | {cpu} | {row.target()} | {row.verdict()}{errors} |"
        )
    if restarts:
        out += [
            "",
            "| restart of a server holding N items | items | load ops/s | stop s"
            " | restart-to-ready s | hit ratio (reads right after restart)"
            " | bytes on disk per item |",
            "|---|---:|---:|---:|---:|---|---:|",
        ]
        for r in restarts:
            disk = f"{r.disk_bytes_per_item:.0f}" if r.disk_bytes_per_item else "-"
            out.append(
                f"| {r.server} | {r.items:,} | {r.load_ops_per_sec:,.0f} | {r.stop_seconds:.2f} "
                f"| {r.ready_seconds:.2f} | {r.hit_ratio:.4f} over {r.window_seconds:g} s "
                f"({r.read_ops_per_sec:,.0f} gets/s) | {disk} |"
            )
    return "\n".join(out)


def run_suite(
    sizes: Sizes,
    workdir: Path,
    only: set[str] | None = None,
    restart: bool = True,
    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True),
) -> tuple[list[Row], list[RestartResult]]:
    rows = run_workloads(sizes, workdir, only, log)
    restarts: list[RestartResult] = []
    if restart:
        log(f"restart test: {sizes.restart_items} items x {sizes.restart_value} B")
        restarts.append(restart_petracache(sizes, workdir))
        restarts.append(restart_memcached(sizes))
    return rows, restarts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 1 s runs (for tests)")
    parser.add_argument("--only", help="comma-separated workload numbers, e.g. 1,2")
    parser.add_argument("--no-restart", action="store_true", help="skip the restart test")
    parser.add_argument("--duration", type=float, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, help="runs per server per workload")
    parser.add_argument("--restart-items", type=int, help="items for the restart test")
    parser.add_argument("--json", type=Path, help="also write raw results here")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    overrides = {
        "duration": args.duration,
        "rounds": args.rounds,
        "restart_items": args.restart_items,
    }
    sizes = Sizes(**{**asdict(sizes), **{k: v for k, v in overrides.items() if v is not None}})
    only = set(args.only.split(",")) if args.only else None
    info = machine()
    with tempfile.TemporaryDirectory(prefix="petracache-bench-") as tmp:
        rows, restarts = run_suite(sizes, Path(tmp), only, not args.no_restart)
    print(render(rows, restarts, info))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "sizes": asdict(sizes),
                    "workloads": [
                        {
                            "workload": asdict(r.workload),
                            "offered_rate": r.offered_rate,
                            "runs": {s: [asdict(x) for x in v] for s, v in r.runs.items()},
                        }
                        for r in rows
                    ],
                    "restart": [asdict(r) for r in restarts],
                },
                indent=2,
            )
        )
    return 1 if any(r.errors() for r in rows) else 0
