"""Hit ratio and throughput of each eviction policy on read-through traces under a disk bound.

``python -m bench.eviction [--smoke | --large] [--traces zipf0.9,zipf1.1,scan]
[--policies s3fifo,clock,fifo] [--requests N] [--only-bound]``

A read-through cache: every request is a ``get``; on a miss the client ``set``s the key
(``--value-size`` bytes, no TTL). Traces, over ``--keys`` keys:

* ``zipf0.9``, ``zipf1.1``: keys drawn from a Zipf distribution of that exponent (rank r
  has weight 1/r**s; ranks are shuffled over the key names so popularity is not key order).
* ``scan``: the Zipf(0.9) trace with a one-off scan in the middle: ``--scan`` keys never
  seen before or after, each requested once (a backup job, a crawler), which a FIFO or an
  LRU lets push the hot set out.

Two scales: ``max_disk_bytes`` = 24 MiB over 150,000 keys (the default), and ``--large``,
256 MiB over proportionally more keys, requests and scan keys (x 32/3). Both set the
memtable and SST file size to a twelfth of the bound (2 MiB at 24 MiB) unless
``--only-bound``, which sets the bound alone (what a new user does).

Each trace runs against petracache once per policy (``storage.eviction``; the first is the
default), and against memcached 1.6 (segmented LRU) given the memory that holds as many
items as petracache held on average under the first policy (its ``curr_items``, sampled
every 0.25 s once the warm-up is over: a disk-bound cache holds between 40% and 55% of its
bound's worth, so its count at any one moment is a draw from that sawtooth); memcached's
chunk size is read from ``stats slabs``. The hit ratio is counted after a warm-up (the first
``WARMUP`` of the requests); for ``scan`` also over the Zipf requests after the scan (how
fast the hot set comes back), the whole rest and its first ``--scan`` requests. Requests go
out in batches of ``BATCH`` (one multi-get, then one pipelined write of the misses' sets
with the next batch); a key requested twice in a batch counts as a hit the second time (it
would have been set).

The data directory is listed every 0.25 s during each petracache run: the peak of its SST
plus WAL bytes against the bound, at the write rate of the trace (the misses), is printed
with the hit ratios.

``--smoke`` runs every trace and policy at a small scale (the test suite runs it).
"""

from __future__ import annotations

import argparse
import itertools
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import Memcached, Petracache, process_cpu_seconds
from bench.reclaim import Sampler, listing, stats
from tests.harness import RawClient

MiB = 1024 * 1024
BATCH = 50  # requests per multi-get
WARMUP = 0.2  # share of the requests before the hit ratio is counted
POLICIES = ("s3fifo", "clock", "fifo")  # the default first: memcached's memory follows it
TRACES = ("zipf0.9", "zipf1.1", "scan")
SCAN_KEY_BASE = 10_000_000  # scan keys are numbered from here: never in the Zipf key space


@dataclass(frozen=True)
class Scale:
    keys: int
    requests: int
    scan: int
    bound: int
    value_size: int
    write_buffer: int


FULL = Scale(
    keys=150_000, requests=600_000, scan=60_000, bound=24 * MiB, value_size=400,
    write_buffer=2 * MiB,
)  # fmt: skip
LARGE = Scale(
    keys=1_600_000, requests=6_400_000, scan=640_000, bound=256 * MiB, value_size=400,
    write_buffer=256 * MiB // 12,
)  # fmt: skip
SMOKE = Scale(
    keys=6_000, requests=20_000, scan=3_000, bound=2 * MiB, value_size=400,
    write_buffer=256 * 1024,
)  # fmt: skip


def trace(name: str, scale: Scale, seed: int = 16) -> tuple[list[int], int]:
    """The key numbers of trace ``name`` and the index at which the post-scan window begins
    (0 for traces without a scan)."""
    exponent = 0.9 if name in ("zipf0.9", "scan") else float(name.removeprefix("zipf"))
    rng = random.Random(seed)
    cumulative = list(itertools.accumulate(1.0 / r**exponent for r in range(1, scale.keys + 1)))
    names = list(range(scale.keys))
    rng.shuffle(names)  # rank -> key number, so popularity is not key order
    ranks = rng.choices(range(scale.keys), cum_weights=cumulative, k=scale.requests)
    keys = [names[r] for r in ranks]
    if name != "scan":
        return keys, 0
    middle = scale.requests // 2
    scan = list(range(SCAN_KEY_BASE, SCAN_KEY_BASE + scale.scan))
    return [*keys[:middle], *scan, *keys[middle:]], middle + scale.scan


@dataclass
class Run:
    """One trace against one server."""

    server: str
    hits: bytearray  # per request: 1 hit, 0 miss
    seconds: float
    items_held: int = 0
    mean_items: float = 0.0  # curr_items on average after the warm-up (petracache)
    peak_dir: int = 0  # SST + WAL bytes (what the bound covers), petracache only
    peak_usage_share: float = 0.0  # of the bound
    server_cpu_s: float = 0.0  # the server's CPU time over the trace (robust to a busy box)

    def ratio(self, start: int, end: int | None = None) -> float:
        """The hit ratio over requests ``start`` to ``end``."""
        window = self.hits[start:end]
        return sum(window) / len(window) if window else 0.0

    @property
    def requests_per_s(self) -> float:
        return len(self.hits) / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s * 1e6 / len(self.hits) if len(self.hits) else 0.0


def batches(keys: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(keys), BATCH):
        yield keys[start : start + BATCH]


def replay(client: RawClient, keys: list[int], value: bytes) -> tuple[bytearray, float]:
    """Run the read-through trace; returns per-request hits and the seconds it took."""
    hits = bytearray(len(keys))
    pending = b""  # the previous batch's sets (noreply), sent with this batch's get
    header = b" 0 0 %d noreply\r\n" % len(value)
    t0 = time.perf_counter()
    done = 0
    for batch in batches(keys):
        names = [b"k:%d" % k for k in batch]
        distinct = list(dict.fromkeys(names))
        client.send(pending + b"get " + b" ".join(distinct) + b"\r\n")
        reply = client.read_until(b"END\r\n")
        found = {line.split()[1] for line in reply.split(b"\r\n") if line.startswith(b"VALUE ")}
        seen: set[bytes] = set()
        sets = []
        for i, name in enumerate(names):
            if name in found or name in seen:
                hits[done + i] = 1
            else:
                sets.append(b"set " + name + header + value + b"\r\n")
            seen.add(name)
        pending = b"".join(sets)
        done += len(batch)
    client.call(pending)
    return hits, time.perf_counter() - t0


def count_held(client: RawClient, keys: Sequence[int]) -> int:
    """How many of ``keys`` the server holds (multi-gets, after the run)."""
    held = 0
    for start in range(0, len(keys), 200):
        names = [b"k:%d" % k for k in keys[start : start + 200]]
        reply = client.call(b"get " + b" ".join(names) + b"\r\n")
        held += reply.count(b"\r\nVALUE ") + reply.startswith(b"VALUE ")
    return held


def run_petracache(
    workdir: Path, policy: str, keys: list[int], scale: Scale, only_bound: bool = False
) -> Run:
    env = {
        "PETRACACHE_STORAGE__MAX_DISK_BYTES": str(scale.bound),
        "PETRACACHE_STORAGE__EVICTION": policy,
        "PETRACACHE_STORAGE__BLOCK_CACHE_SIZE": str(16 * MiB),
    }
    if not only_bound:
        env["PETRACACHE_STORAGE__WRITE_BUFFER_SIZE"] = str(scale.write_buffer)
        env["PETRACACHE_STORAGE__TARGET_FILE_SIZE_BASE"] = str(scale.write_buffer)
    with Petracache(workdir / policy, env=env) as server:
        client = server.client(timeout=60)
        probe = server.client(timeout=60)
        db = server.db_path
        assert server.proc is not None
        cpu = process_cpu_seconds(server.proc.pid)
        with (
            Sampler(lambda: sum(listing(db)[1:3]), 0.25) as sampler,
            Sampler(lambda: int(stats(probe).get("curr_items", 0)), 0.25) as counts,
        ):
            hits, seconds = replay(client, keys, b"v" * scale.value_size)
        cpu = process_cpu_seconds(server.proc.pid) - cpu
        held = count_held(client, sorted(set(keys)))
        counters = stats(client)
    peak = max((v for _, v in sampler.samples), default=0)
    warm = [v for t, v in counts.samples if t >= seconds * WARMUP] or [held]
    run = Run(
        f"petracache {policy}",
        hits,
        seconds,
        items_held=held,
        mean_items=sum(warm) / len(warm),
        peak_dir=peak,
        peak_usage_share=peak / scale.bound,
        server_cpu_s=cpu,
    )
    run.server += (
        f" (evictions {counters.get('evictions')}, spared {counters.get('evicted_active')},"
        f" to main {counters.get('moves_to_main')})"
    )
    return run


def memcached_megabytes(items: int, value_size: int) -> int:
    """memcached -m that holds ``items`` items of this size (1 MiB slab pages)."""
    with Memcached(memory_mb=64) as mc:
        client = RawClient(mc.port)
        client.call(b"set k:1 0 0 %d\r\n%b\r\n" % (value_size, b"v" * value_size))
        chunk = 0
        for line in client.call(b"stats slabs\r\n").split(b"\r\n"):
            parts = line.split()
            if len(parts) == 3 and parts[1].endswith(b":chunk_size"):
                chunk = int(parts[2])
        client.close()
    per_page = MiB // chunk
    return max(-(-items // per_page), 2)


def run_memcached(keys: list[int], megabytes: int, value_size: int) -> Run:
    with Memcached(memory_mb=megabytes) as mc:
        client = RawClient(mc.port, timeout=60)
        cpu = process_cpu_seconds(mc.proc.pid)
        hits, seconds = replay(client, keys, b"v" * value_size)
        cpu = process_cpu_seconds(mc.proc.pid) - cpu
        held = int(stats(client).get("curr_items", 0))
        client.close()
    return Run(f"memcached 1.6 LRU, -m {megabytes}", hits, seconds, held, server_cpu_s=cpu)


def report(name: str, runs: list[Run], scan_end: int, scan: int, total: int) -> None:
    warm = int(total * WARMUP)
    print(f"== {name}: {total:,} requests")
    for run in runs:
        line = (
            f"  {run.server:<70} hit ratio {run.ratio(warm):.3f}"
            f"  {run.requests_per_s:>7.0f} req/s  server CPU {run.cpu_us_per_request:5.1f} us/req"
            f"  items {run.items_held:,}"
        )
        if run.mean_items:
            line += f" (mean {run.mean_items:,.0f})"
        if scan_end:
            line += (
                f"  after the scan {run.ratio(scan_end):.3f}"
                f" (first {scan:,}: {run.ratio(scan_end, scan_end + scan):.3f})"
            )
        if run.peak_dir:
            line += f"  peak SST+WAL {run.peak_dir / MiB:.1f} MiB ({run.peak_usage_share:.0%})"
        print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> dict[str, list[Run]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    scales = parser.add_mutually_exclusive_group()
    scales.add_argument("--smoke", action="store_true")
    scales.add_argument("--large", action="store_true", help="256 MiB, 1.6 M keys")
    parser.add_argument("--traces", default=",".join(TRACES))
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--requests", type=int)
    parser.add_argument("--only-bound", action="store_true", help="set max_disk_bytes alone")
    parser.add_argument("--no-memcached", action="store_true")
    parser.add_argument("--dir", help="where the databases go (default: a temp dir)")
    opts = parser.parse_args(argv)
    scale = SMOKE if opts.smoke else LARGE if opts.large else FULL
    if opts.requests:
        scale = Scale(**{**scale.__dict__, "requests": opts.requests})
    out: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory(dir=opts.dir) as tmp:
        for name in opts.traces.split(","):
            keys, scan_end = trace(name, scale)
            runs = [
                run_petracache(Path(tmp) / name, policy, keys, scale, opts.only_bound)
                for policy in opts.policies.split(",")
            ]
            if not opts.no_memcached:
                items = round(runs[0].mean_items) or runs[0].items_held
                megabytes = memcached_megabytes(items, scale.value_size)
                runs.append(run_memcached(keys, megabytes, scale.value_size))
            report(name, runs, scan_end, scale.scan, len(keys))
            out[name] = runs
    return out


if __name__ == "__main__":
    main()
