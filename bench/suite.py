"""The benchmark suite: petracache against memcached 1.6, same machine, same run.

Strategy: both servers run at once on loopback, each pinned to core 0 (memcached ``-t 1``),
the C load generator on core 1. For every workload the two servers are measured in
alternating order (memcached first in even rounds, petracache first in odd ones), so drift
on a shared machine hits both alike; the table reports the mean throughput over rounds and
the median of each latency percentile. Only ratios within one run are meaningful.

Workloads (issues 6 and 25); keys are pre-loaded, so every get hits. Workloads 1-4 give
petracache as much memory for hot items as memcached gets (``storage.hot_cache_size`` =
memcached's ``-m``); 5, 7 and 8 run petracache with the defaults a user gets (no override:
the default 64 MiB of hot items, which 100,000 x 1 KB items do not fit in; exact item
counts on; WAL on), against memcached with the same ``-m`` as the others:

1. PetraCache's: 1 KB values, 90% get / 10% set, 20 connections, no pipelining.
2. The same with pipelines of 32.
3. 100-byte values, 1,000 connections, a fixed offered rate of half petracache's
   throughput in (1), latency timed from each request's scheduled send; 3q: a quarter.
4. Multi-get of 100 keys (100-byte values).
5. Write-only: 1 KB sets, default settings (the write-ahead log's cost, and with exact
   counts a read of the old version per overwrite the hot items do not hold).
6. Reads over a dataset 5x petracache's block cache (block cache misses; RocksDB reads go
   to its SST files, which the OS page cache may hold).
7. Write-heavy mix: 1 KB, 50% get / 50% set, 20 connections, default settings.
8. PetraCache's line (1 KB, 90/10, 20 connections) with the default hot-cache size: reads
   the hot items do not hold go to RocksDB.

Targets (ratios of ops/s against memcached in the same run): 1 >= 0.6x, 2 >= 1.2x,
5 >= 0.5x, 6 >= 0.5x, 7 >= 0.55x, 8 >= 0.5x; 3 and 3q: p99.9 < max(5 ms, 1.5x memcached's
p99.9 in the same run) and no request over 100 ms.

The Redis anchor (``python -m bench``, not the pytest smoke test; skipped with one line when
``redis-server`` is not installed): workload 5's traffic, from the same load generator
speaking RESP (``loadgen -r``: the same keys, values and connections), against
``redis-server --appendonly yes --appendfsync everysec --save ""`` (the guarantee of
petracache's default durability: an acknowledged write survives ``kill -9``), pinned to
the server core and measured in the same alternating rounds as workload 5; its server CPU
per set (AOF rewrite children included) is reported beside memcached's and petracache's.

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
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    LOADGEN_CPUS,
    SERVER_CPUS,
    LoadResult,
    Memcached,
    Petracache,
    Redis,
    run_loadgen,
)
from tests.harness import RawClient

MIB = 1024 * 1024
SETTLE = 1.0  # seconds between runs: 1,000 closing connections must not overlap the next run


@dataclass(frozen=True, slots=True)
class Sizes:
    """Everything that scales the suite's run time (see README for the full-size figures)."""

    duration: float = 8.0  # measured seconds per run
    warmup: float = 1.0  # seconds before measuring
    rounds: int = 2  # runs per server per workload, alternating order
    keys: int = 100_000  # pre-loaded keys for workloads 1-5, 7 and 8
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
    # petracache may keep as many bytes of hot items as memcached may hold (its -m); False:
    # petracache's default storage.hot_cache_size (what a user gets), memcached's -m unchanged
    equal_memory: bool = True


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
    # target: p99.9 below max(max_p999_ms, this x memcached's p99.9 in the same run)
    p999_vs_memcached: float = 0.0
    redis_anchor: bool = False  # with the anchor on: Redis takes this traffic too


def datasets(sizes: Sizes) -> dict[str, Dataset]:
    return {
        "1k": Dataset("1k", sizes.keys, 1024),
        "100b": Dataset("100b", sizes.keys, 100),
        "default": Dataset("default", sizes.keys, 1024, equal_memory=False),
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
    Workload("1", "1 KB, 90/10 get/set, 20 conns", "1k", ("-c", "20", "-g", "0.9"), "", 0.6, 5.0),
    Workload(
        "2",
        "1 KB, 90/10, 20 conns, pipeline 32",
        "1k",
        ("-c", "20", "-g", "0.9", "-P", "32"),
        "",
        1.2,
    ),
    Workload(
        "3",
        "100 B, 1000 conns, half the peak rate",
        "100b",
        ("-c", "1000", "-g", "0.9"),
        "1",
        0.0,
        5.0,
        max_ms=100.0,
        p999_vs_memcached=1.5,
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
        p999_vs_memcached=1.5,
    ),
    Workload("4", "multi-get of 100 keys, 20 conns", "100b", ("-c", "20", "-g", "1", "-m", "100")),
    Workload(
        "5",
        "1 KB sets only, 20 conns, default settings (WAL on)",
        "default",
        ("-c", "20", "-g", "0"),
        "",
        0.5,
        redis_anchor=True,
    ),
    Workload(
        "7",
        "1 KB, 50/50 get/set, 20 conns, default settings",
        "default",
        ("-c", "20", "-g", "0.5"),
        "",
        0.55,
    ),
    Workload(
        "8",
        "1 KB, 90/10, 20 conns, default hot-cache size",
        "default",
        ("-c", "20", "-g", "0.9"),
        "",
        0.5,
    ),
    Workload("6", "1 KB gets, dataset 5x block cache", "disk", ("-c", "20", "-g", "1"), "", 0.5),
)
SERVERS = ("memcached", "petracache")
ANCHOR = "redis"


@dataclass(slots=True)
class Row:
    """One workload's results for both servers (one LoadResult per round)."""

    workload: Workload
    offered_rate: float = 0.0
    runs: dict[str, list[LoadResult]] = field(
        default_factory=lambda: {server: [] for server in SERVERS}
    )

    def ops(self, server: str) -> float:
        return statistics.mean(r.ops_per_sec for r in self.runs[server])

    def latency_ms(self, server: str, name: str) -> float:
        return float(statistics.median(getattr(r, name) for r in self.runs[server])) / 1000.0

    def cpu_us(self, server: str) -> float:
        """Mean server CPU microseconds per request."""
        return statistics.mean(r.server_cpu_us_per_op for r in self.runs[server])

    def ratio(self, server: str = "petracache") -> float:
        base = self.ops("memcached")
        return self.ops(server) / base if base else 0.0

    def max_ms(self, server: str) -> float:
        return max(r.max_us for r in self.runs[server]) / 1000

    def p999_limit_ms(self) -> float:
        """The p99.9 target: max(max_p999_ms, p999_vs_memcached x memcached's p99.9)."""
        w = self.workload
        relative = w.p999_vs_memcached * self.latency_ms("memcached", "p999_us")
        return max(w.max_p999_ms, relative)

    def errors(self) -> int:
        return sum(r.errors for runs in self.runs.values() for r in runs)

    def verdict(self) -> str:
        w = self.workload
        checks = []
        if w.min_ratio:
            checks.append(self.ratio() >= w.min_ratio)
        if w.max_p999_ms:
            checks.append(self.latency_ms("petracache", "p999_us") < self.p999_limit_ms())
        if w.max_ms:
            checks.append(self.max_ms("petracache") < w.max_ms)
        if not checks:
            return "-"
        return "met" if all(checks) else "MISSED"

    def target(self) -> str:
        w = self.workload
        parts = []
        if w.min_ratio:
            parts.append(f">= {w.min_ratio}x")
        if w.max_p999_ms and w.p999_vs_memcached:
            parts.append(
                f"p99.9 < {self.p999_limit_ms():.2f} ms"
                f" (max of {w.max_p999_ms:g} ms, {w.p999_vs_memcached:g}x memcached's)"
            )
        elif w.max_p999_ms:
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


def preload(port: int, keys: int, value_size: int, resp: bool = False) -> LoadResult:
    """Set keys 0..keys-1 once (pipelined), so the gets that follow hit (``resp``: Redis)."""
    args = ["-L", "-c", "8", "-P", "64", "-k", str(keys), "-v", str(value_size)]
    args += ["-r"] if resp else []
    result = run_loadgen(port, args)
    if result.errors:
        raise RuntimeError(f"preload: {result.errors} sets failed")
    return result


@contextmanager
def server_pair(workdir: Path, dataset: Dataset, redis: bool = False) -> Iterator[dict[str, Any]]:
    """memcached and petracache (and with ``redis`` the Redis anchor), all pre-loaded with
    ``dataset``; yields {name: server}."""
    memory_mb = max(256, dataset.keys * (dataset.value_size + 200) * 2 // MIB)
    env: dict[str, str] = {}
    if dataset.equal_memory:
        # petracache may keep as many bytes of hot items as memcached may hold
        env["PETRACACHE_STORAGE__HOT_CACHE_SIZE"] = str(memory_mb * MIB)
    pc = Petracache(workdir / f"pc-{dataset.name}", env=env | dict(dataset.petracache_env))
    with ExitStack() as stack:
        servers: dict[str, Any] = {
            "memcached": stack.enter_context(Memcached(memory_mb=memory_mb)),
            "petracache": stack.enter_context(pc),
        }
        preload(servers["memcached"].port, dataset.keys, dataset.value_size)
        preload(pc.port, dataset.keys, dataset.value_size)
        if dataset.flush_to_disk:
            pc.restart()
        if redis:
            rd = servers[ANCHOR] = stack.enter_context(Redis(workdir / f"redis-{dataset.name}"))
            preload(rd.port, dataset.keys, dataset.value_size, resp=True)
            rd.settle()  # the preload's AOF rewrite is not the first run's
        yield servers


def run_workloads(
    sizes: Sizes,
    workdir: Path,
    only: set[str] | None,
    log: Callable[[str], None],
    redis_anchor: bool = False,
) -> list[Row]:
    """Run every selected workload; rows come back in key order (1, 2, 3, 3q, 4..8).

    With ``redis_anchor``, Redis takes the traffic of the workloads marked ``redis_anchor``
    (workload 5) in the same alternating rounds, if ``redis-server`` is installed.
    """
    rows: dict[str, Row] = {}
    sets = datasets(sizes)
    anchored = [w for w in WORKLOADS if w.redis_anchor and (not only or w.key in only)]
    if redis_anchor and anchored and not Redis.available():
        log("redis anchor: redis-server is not installed (apt-get install redis-server), skipped")
        redis_anchor = False
    for name, dataset in sets.items():
        selected = [w for w in WORKLOADS if w.dataset == name and (not only or w.key in only)]
        if not selected:
            continue
        with_redis = redis_anchor and any(w.redis_anchor for w in selected)
        log(
            f"dataset {name}: {dataset.keys} keys x {dataset.value_size} B, pre-loading"
            + (", with the Redis anchor" if with_redis else "")
        )
        with server_pair(workdir, dataset, redis=with_redis) as servers:
            for w in selected:
                row = rows[w.key] = Row(w)
                names = list(SERVERS)
                if w.redis_anchor and ANCHOR in servers:
                    names.append(ANCHOR)
                    row.runs[ANCHOR] = []
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
                    order = names[::-1] if rnd % 2 else names
                    for server in order:
                        result = _measure(servers[server], sizes, dataset, extra)
                        row.runs[server].append(result)
                        time.sleep(SETTLE)  # let the server close this run's connections
                        log(
                            f"  workload {w.key} {server:10} {result.ops_per_sec:10.0f} ops/s"
                            f"  p99.9 {result.p999_us / 1000:7.2f} ms"
                            f"  server cpu {result.server_cpu_us_per_op:6.1f} us/op"
                            f"  loadgen cpu {result.cpu_pct:.0f}%"
                            f"  max {result.max_us / 1000:.1f} ms"
                            + (
                                f"  aof rewrites {result.aof_rewrites}"
                                if result.aof_rewrites
                                else ""
                            )
                            + (f"  kernel {result.kernel}" if result.kernel else "")
                        )
    return [rows[w.key] for w in sorted(WORKLOADS, key=lambda w: w.key) if w.key in rows]


def _measure(server: Any, sizes: Sizes, dataset: Dataset, extra: tuple[str, ...]) -> LoadResult:
    """One run against ``server``; Redis gets RESP and is charged its AOF rewrites."""
    args = _loadgen_args(sizes, dataset, extra)
    if not isinstance(server, Redis):
        return run_loadgen(server.port, args, server_pid=server.proc.pid)
    rewrites = server.aof_rewrites()
    result = run_loadgen(
        server.port, [*args, "-r"], server_pid=server.proc.pid, settle=server.settle
    )
    result.aof_rewrites = server.aof_rewrites() - rewrites
    return result


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


def _latencies(row: Row, server: str) -> str:
    """p50 / p99 / p99.9 (medians over rounds) / max (over rounds), in ms."""
    names = ("p50_us", "p99_us", "p999_us")
    return " / ".join(f"{row.latency_ms(server, n):.2f}" for n in names) + (
        f" / {row.max_ms(server):.1f}"
    )


def summary(row: Row) -> dict[str, Any]:
    """The table's figures for one workload (what the JSON's readers want first)."""
    return {
        "ratio": round(row.ratio(), 3),
        "target": row.target(),
        "verdict": row.verdict(),
        "servers": {
            server: {
                "ops_per_sec": round(row.ops(server), 1),
                "ratio_to_memcached": round(row.ratio(server), 3),
                "server_cpu_us_per_op": round(row.cpu_us(server), 2),
                "p999_ms": round(row.latency_ms(server, "p999_us"), 3),
                "max_ms": round(row.max_ms(server), 3),
            }
            for server, runs in row.runs.items()
            if runs
        },
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
        lat = {s: _latencies(row, s) for s in SERVERS}
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
    anchored = [row for row in rows if row.runs.get(ANCHOR)]
    if anchored:
        out += [
            "",
            "| the Redis anchor: workload # traffic | server | ops/s | ratio to memcached"
            " | p50 / p99 / p99.9 / max ms | server CPU us/request"
            " | of which forked children (AOF rewrites) | CPU per request vs memcached's"
            " | AOF rewrites |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|",
        ]
        for row in anchored:
            for server in (*SERVERS, ANCHOR):
                runs = row.runs[server]
                children = statistics.mean(
                    r.server_children_cpu_s * 1e6 / r.all_ops if r.all_ops else 0.0 for r in runs
                )
                out.append(
                    f"| {row.workload.key}: {row.workload.title} | {server}"
                    f" | {row.ops(server):,.0f} | {row.ratio(server):.2f}"
                    f" | {_latencies(row, server)} | {row.cpu_us(server):.1f}"
                    f" | {children:.1f} | {row.cpu_us(server) / row.cpu_us('memcached'):.2f}x"
                    f" | {sum(r.aof_rewrites for r in runs)} |"
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
    redis_anchor: bool = False,
) -> tuple[list[Row], list[RestartResult]]:
    rows = run_workloads(sizes, workdir, only, log, redis_anchor)
    restarts: list[RestartResult] = []
    if restart:
        log(f"restart test: {sizes.restart_items} items x {sizes.restart_value} B")
        restarts.append(restart_petracache(sizes, workdir))
        restarts.append(restart_memcached(sizes))
    return rows, restarts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 1 s runs (for tests)")
    parser.add_argument("--only", help="comma-separated workload numbers, e.g. 1,2 or 5,7,8,6")
    parser.add_argument("--no-restart", action="store_true", help="skip the restart test")
    parser.add_argument(
        "--no-redis",
        action="store_true",
        help="skip the Redis anchor (workload 5's traffic against redis-server, if installed)",
    )
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
        rows, restarts = run_suite(
            sizes, Path(tmp), only, not args.no_restart, redis_anchor=not args.no_redis
        )
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
                            "summary": summary(r),
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
