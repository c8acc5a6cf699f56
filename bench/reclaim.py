"""Background reclaim measured on a real server: expiry, the disk bound, memory.

``python -m bench.reclaim [expiry] [burst] [capacity] [rss] [writecost] [walrelease] [--items N]
[--dir D] [--server-path P]``

* expiry: a working set is preloaded; a read/write load on it (``bench/loadgen.c``, 20
  connections, 90% gets) runs for 10 s alone (the "before" figures), then again for 60 s
  from the start of the TTL writes: ``--items`` items with a 5 s TTL, written over one
  pipelined connection (they expire, and are reaped, continuously from 5 s after the first
  write). SST bytes on disk are sampled every 0.5 s: the baseline (the working set alone),
  at the end of the TTL writes, at the last expiry (5 s after the last TTL write), and the
  seconds from then until they are back within 10% of the baseline.
* burst: the same items, all with one absolute deadline a little after the writes end, so
  the whole backlog comes due at once; the load is measured just before it (nothing to reap)
  and during the reaping, on the same server and data.
* capacity: ``max_disk_bytes`` = ``--bound``; 3x the bound is written (1 KiB values, a third
  of the keys rewritten); the database directory is listed every 0.25 s and its bytes split
  into SST, WAL and other files (the samples over the bound and around the peak are
  printed); at the end every key is read and must return its latest written value or a miss.
* walrelease (only when named): issue 16's scenario, 60 MB of 1 KB items with a 3 s TTL on
  an otherwise idle server; the directory (SST, WAL, other) over time, and the p99.9 of a
  light set load through it (``bench_wal_release``).
* writecost (only when named): the engine's own cost of a ``set``, in-process, with and
  without the expiry index, with and without a TTL.
* rss: block cache ``--cache``, a dataset of 5x that, then random reads over it (most miss
  the cache and go to disk); the server's VmRSS/VmHWM are read from /proc.

The server runs pinned to one core (``bench.common``); the machine is shared, so compare the
before/during ratios of one run rather than absolute figures across runs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import LoadResult, Petracache, run_loadgen
from tests.harness import RawClient

MiB = 1024 * 1024
TTL = 5
CHUNK = 500  # pipelined commands per write
SMALL_BUFFERS = {  # so data reaches SST files (and the disk figures) at bench scale
    "PETRACACHE_STORAGE__WRITE_BUFFER_SIZE": str(8 * MiB),
    "PETRACACHE_STORAGE__TARGET_FILE_SIZE_BASE": str(8 * MiB),
}


def sst_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.glob("*.sst"))


def dir_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.rglob("*") if p.is_file())


def listing(db: Path) -> tuple[int, int, int, int]:
    """The directory's bytes by kind: (total, SST, WAL, other), from one listing."""
    sst = wal = other = 0
    for p in db.rglob("*"):
        try:
            size = p.stat().st_size if p.is_file() else 0
        except FileNotFoundError:  # deleted between the listing and the stat
            continue
        if p.suffix == ".sst":
            sst += size
        elif p.suffix == ".log" and p.parent == db and p.stem.isdigit():
            wal += size
        else:
            other += size
    return sst + wal + other, sst, wal, other


def stats(client: RawClient) -> dict[str, str]:
    out = {}
    for line in client.call(b"stats\r\n").split(b"\r\n"):
        parts = line.split()
        if len(parts) == 3 and parts[0] == b"STAT":
            out[parts[1].decode()] = parts[2].decode()
    return out


def write_items(
    client: RawClient, keys: Iterator[bytes], value: Callable[[bytes], bytes], exptime: int
) -> int:
    """Pipelined ``set ... noreply`` in chunks, each fenced by ``version``; returns count."""
    count = 0
    chunk: list[bytes] = []
    for key in keys:
        data = value(key)
        chunk.append(b"set %b 0 %d %d noreply\r\n%b\r\n" % (key, exptime, len(data), data))
        if len(chunk) == CHUNK:
            client.call(b"".join(chunk))
            count += len(chunk)
            chunk = []
    if chunk:
        client.call(b"".join(chunk))
        count += len(chunk)
    return count


class Sampler:
    """Samples ``probe()`` every ``period`` seconds in a thread: [(t, value), ...]."""

    def __init__(self, probe: Callable[[], Any], period: float) -> None:
        self.probe = probe
        self.period = period
        self.samples: list[tuple[float, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self.t0, self.probe()))
            self._stop.wait(self.period)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def background_load(port: int, args: list[str]) -> Iterator[dict[str, LoadResult]]:
    out: dict[str, LoadResult] = {}
    thread = threading.Thread(target=lambda: out.update(r=run_loadgen(port, args)))
    thread.start()
    try:
        yield out
    finally:
        thread.join()


def load_line(label: str, r: LoadResult) -> str:
    return (
        f"  {label:<28} {r.ops_per_sec:>9.0f} ops/s  p50 {r.p50_us / 1000:6.2f} ms  "
        f"p99 {r.p99_us / 1000:6.2f} ms  errors {r.errors}"
    )


def bench_expiry(workdir: Path, items: int, value_size: int) -> None:
    print(f"== expiry: {items:,} items x {value_size} B, TTL {TTL} s, under a 90% get load")
    working_set = 100_000
    with Petracache(workdir / "expiry", env=SMALL_BUFFERS) as server:
        db = server.db_path
        run_loadgen(server.port, ["-L", "-k", str(working_set), "-v", "100"])
        load = ["-c", "20", "-g", "0.9", "-k", str(working_set), "-v", "100", "-w", "1"]
        before = run_loadgen(server.port, [*load, "-t", "10"])
        time.sleep(2)
        baseline = sst_bytes(db)
        client = server.client(timeout=60)
        value = b"x" * value_size
        with (
            Sampler(lambda: sst_bytes(db), 0.5) as sampler,
            background_load(server.port, [*load, "-t", "60"]) as during,
        ):
            t_write = time.monotonic()
            write_items(client, (b"ttl:%d" % i for i in range(items)), lambda _: value, TTL)
            t_written = time.monotonic()
            at_write_end = sst_bytes(db)
            expiry_at = t_written + TTL  # the last item dies within 1 s (whole-second clock)
            time.sleep(max(expiry_at - time.monotonic(), 0))
            at_expiry = sst_bytes(db)
            recovered = None
            horizon = 240.0
            while time.monotonic() - expiry_at < horizon:
                if sst_bytes(db) <= baseline * 1.10:
                    recovered = time.monotonic() - expiry_at
                    break
                time.sleep(0.5)
            counters = stats(client)
        peak = max(v for _, v in sampler.samples)
    print(f"  write of {items:,} TTL items   {t_written - t_write:.1f} s")
    print(f"  SST bytes, working set only  {baseline / MiB:8.1f} MiB (baseline)")
    print(f"  SST bytes, end of TTL writes {at_write_end / MiB:8.1f} MiB (peak {peak / MiB:.1f})")
    print(f"  SST bytes, at last expiry    {at_expiry / MiB:8.1f} MiB")
    if recovered is None:
        print(f"  not back within 10% of baseline after {horizon:.0f} s")
    else:
        print(f"  back within 10% of baseline  {recovered:8.1f} s after the last expiry")
    print(load_line("load before TTL writes", before))
    print(load_line("load during writes+reaping", during["r"]))
    keys = ("expired_reaped", "get_expired", "reclaimed_bytes", "compacted_bytes")
    print("  " + "  ".join(f"{k} {counters.get(k)}" for k in keys))
    curve = [(round(t, 1), round(v / MiB, 1)) for t, v in sampler.samples[::4]]
    print(f"  SST MiB curve (t s, MiB), every 2 s: {json.dumps(curve)}")


def wait_back(db: Path, baseline: int, since: float, horizon: float = 240.0) -> float | None:
    """Seconds after ``since`` until the SST bytes are within 10% of ``baseline``."""
    while time.monotonic() - since < horizon:
        if sst_bytes(db) <= baseline * 1.10:
            return time.monotonic() - since
        time.sleep(0.25)
    return None


def bench_burst(workdir: Path, items: int, value_size: int) -> None:
    """Every item gets the same absolute deadline, set a little after the writes end.

    This isolates the reclaimer: the load is measured in a window after the writes and before
    the deadline (no writes, nothing to reap) and in a window from the deadline on (the
    whole backlog is due at once), on the same server and data.
    """
    print(f"== burst expiry: {items:,} items x {value_size} B, one shared deadline")
    working_set = 100_000
    with Petracache(workdir / "burst", env=SMALL_BUFFERS) as server:
        db = server.db_path
        run_loadgen(server.port, ["-L", "-k", str(working_set), "-v", "100"])
        load = ["-c", "20", "-g", "0.9", "-k", str(working_set), "-v", "100", "-w", "1"]
        time.sleep(2)
        baseline = sst_bytes(db)
        client = server.client(timeout=60)
        value = b"x" * value_size
        t0 = time.monotonic()  # calibrate the write rate on throwaway keys
        write_items(client, (b"cal:%d" % i for i in range(20_000)), lambda _: value, 1)
        rate = 20_000 / (time.monotonic() - t0)
        write_seconds = items / rate
        deadline_unix = int(time.time() + 2 * write_seconds + 15)
        deadline = time.monotonic() + (deadline_unix - time.time())
        keys = (b"ttl:%d" % i for i in range(items))
        write_items(client, keys, lambda _: value, deadline_unix)
        written = sst_bytes(db)
        wait = deadline - time.monotonic() - 11
        if wait < 0:
            print(f"  writes ran late by {-wait:.0f} s; rerun with fewer --items")
            return
        time.sleep(wait)
        quiet = run_loadgen(server.port, [*load, "-t", "9"])
        time.sleep(max(deadline - time.monotonic(), 0))
        at_deadline = sst_bytes(db)
        probe_client = server.client(timeout=60)
        reaped_before = int(stats(client)["expired_reaped"])

        def probe() -> tuple[int, int]:
            return sst_bytes(db), int(stats(probe_client)["expired_reaped"]) - reaped_before

        with (
            Sampler(probe, 0.5) as sampler,
            background_load(server.port, [*load, "-t", "10"]) as reaping,
        ):
            recovered = wait_back(db, baseline, deadline + 1)
        counters = stats(client)
        done = [t for t, (_, n) in sampler.samples if n >= items]
    print(f"  SST bytes, working set only  {baseline / MiB:8.1f} MiB (baseline)")
    print(f"  SST bytes, after the writes  {written / MiB:8.1f} MiB")
    print(f"  SST bytes, at the deadline   {at_deadline / MiB:8.1f} MiB")
    if recovered is None:
        print("  not back within 10% of baseline within 240 s")
    else:
        print(f"  back within 10% of baseline  {recovered:8.1f} s after the deadline (+1 s)")
    print(load_line("load, nothing to reap (9 s)", quiet))
    print(load_line("load while reaping (10 s)", reaping["r"]))
    if done:
        print(f"  all {items:,} reaped {done[0]:.1f} s after the deadline (0.5 s samples)")
    keys_ = ("expired_reaped", "get_expired", "reclaimed_bytes", "compacted_bytes")
    print("  " + "  ".join(f"{k} {counters.get(k)}" for k in keys_))
    curve = [(round(t, 1), round(v / MiB, 1), n) for t, (v, n) in sampler.samples[::2]]
    print(f"  from the deadline, every 1 s (t s, SST MiB, reaped): {json.dumps(curve)}")


def bench_capacity(workdir: Path, bound: int, value_size: int, server_path: str = "") -> None:
    total = 3 * bound
    writes = total // (value_size + 30)
    distinct = writes * 2 // 3
    where = f" (server from {server_path})" if server_path else ""
    print(
        f"== capacity: max_disk_bytes {bound / MiB:.0f} MiB, {total / MiB:.0f} MiB of writes{where}"
    )
    env = {**SMALL_BUFFERS, "PETRACACHE_STORAGE__MAX_DISK_BYTES": str(bound)}
    if server_path:
        env["PYTHONPATH"] = server_path
    env["PETRACACHE_STORAGE__WRITE_BUFFER_SIZE"] = str(4 * MiB)
    env["PETRACACHE_STORAGE__TARGET_FILE_SIZE_BASE"] = str(4 * MiB)
    latest: dict[bytes, int] = {}
    pad = b"p" * value_size

    def value(key: bytes) -> bytes:
        return b"%d:" % latest[key] + pad

    def keys() -> Iterator[bytes]:
        for i in range(writes):
            key = b"cap:%d" % (i % distinct)
            latest[key] = i
            yield key

    with Petracache(workdir / "capacity", env=env) as server:
        db = server.db_path
        client = server.client(timeout=60)
        with Sampler(lambda: listing(db), 0.25) as sampler:
            t0 = time.monotonic()
            write_items(client, keys(), value, 0)
            elapsed = time.monotonic() - t0
            time.sleep(3)
        hits = misses = stale = 0
        for key, version in latest.items():
            reply = client.call(b"get %b\r\n" % key)
            if reply == b"END\r\n":
                misses += 1
                continue
            data = reply.split(b"\r\n")[1]
            if data != b"%d:" % version + pad:
                stale += 1
            else:
                hits += 1
        counters = stats(client)
    peak_dir = max(v[0] for _, v in sampler.samples)
    peak_sst = max(v[1] for _, v in sampler.samples)
    peak_wal = max(v[2] for _, v in sampler.samples)
    at_peak = max(sampler.samples, key=lambda s: s[1][0])
    print(f"  {writes:,} writes of {value_size} B over {distinct:,} keys in {elapsed:.1f} s")
    print(
        f"  peak directory {peak_dir / MiB:.1f} MiB, peak SST {peak_sst / MiB:.1f} MiB, "
        f"peak WAL {peak_wal / MiB:.1f} MiB"
    )
    sst, wal, other = (b / MiB for b in at_peak[1][1:])
    print(
        f"  at the directory peak (t {at_peak[0]:.2f} s): "
        f"SST {sst:.1f}, WAL {wal:.1f}, other {other:.1f} MiB"
    )
    over = [
        (round(t, 2), *(round(b / MiB, 1) for b in v)) for t, v in sampler.samples if v[0] > bound
    ]
    print(f"  samples over the bound (t s, total, SST, WAL, other MiB): {json.dumps(over)}")
    near = [
        (round(t, 2), *(round(b / MiB, 1) for b in v))
        for t, v in sampler.samples
        if abs(t - at_peak[0]) <= 1.5
    ]
    print(f"  around the peak, every 0.25 s (t s, total, SST, WAL, other MiB): {json.dumps(near)}")
    print(f"  final directory {dir_bytes(db) / MiB:.1f} MiB, evictions {counters['evictions']}")
    print(f"  reads: {hits:,} latest value, {misses:,} miss, {stale} stale or corrupt")
    curve = [(round(t, 1), round(v[0] / MiB, 1)) for t, v in sampler.samples[::4]]
    print(f"  directory MiB curve (t s, MiB), every 1 s: {json.dumps(curve)}")


def bench_wal_release(workdir: Path, server_path: str = "") -> None:
    """Issue 16's scenario: 60 MB of 1 KB items with a 3 s TTL on an otherwise idle server.

    Default memtables (64 MiB), so the writes stay in the memtable and its WAL. The
    directory is listed every 0.5 s, from before the writes to 60 s after the last expiry.
    A light open-loop probe (4 connections, 500 sets/s of 100 B over 1,000 keys) measures
    the write path's p99.9 three times: alone before the TTL writes, for 20 s from the end
    of the writes (the expiry, the reaping, the flush and the compaction), and alone again
    at the end. ``server_path`` runs another checkout's server (its directory goes first on
    the server's PYTHONPATH), for a before/after comparison.
    """
    items = 60_000
    where = f" (server from {server_path})" if server_path else ""
    print(f"== wal release: {items:,} items x 1,000 B, TTL 3 s, idle server{where}")
    env = {"PYTHONPATH": server_path} if server_path else {}
    probe = ["-c", "4", "-g", "0", "-k", "1000", "-v", "100", "-R", "500", "-w", "1"]
    probes: list[tuple[str, LoadResult]] = []
    with Petracache(workdir / "walrelease", env=env) as server:
        db = server.db_path
        client = server.client(timeout=60)
        probes.append(("alone, before", run_loadgen(server.port, [*probe, "-t", "10"])))
        value = b"x" * 1000
        with Sampler(lambda: listing(db), 0.5) as sampler:
            write_items(client, (b"ttl:%d" % i for i in range(items)), lambda _: value, 3)
            expiry = time.monotonic() - sampler.t0 + 3
            with background_load(server.port, [*probe, "-t", "20"]) as during:
                pass
            probes.append(("from the writes' end, 20 s", during["r"]))
            probes.append(("alone, after", run_loadgen(server.port, [*probe, "-t", "10"])))
            time.sleep(max(expiry + 60 - (time.monotonic() - sampler.t0), 0))
        counters = stats(client)
    peak_t, peak = max(sampler.samples, key=lambda s: s[1][0])
    back = next(
        (t - expiry for t, v in sampler.samples if t > expiry and v[0] <= peak[0] / 4), None
    )
    end = sampler.samples[-1][1]
    print(f"  last expiry at t {expiry:.1f} s (writes began at t 0)")
    print(
        f"  peak directory {peak[0] / MiB:.1f} MiB at t {peak_t:.1f} s "
        f"(SST {peak[1] / MiB:.1f}, WAL {peak[2] / MiB:.1f}, other {peak[3] / MiB:.1f})"
    )
    if back is None:
        print("  not back to 25% of the peak within 60 s of the last expiry")
    else:
        print(f"  back to <= 25% of the peak {back:.1f} s after the last expiry")
    print(
        f"  60 s after expiry: {end[0] / MiB:.1f} MiB ({end[0] / peak[0]:.0%} of peak; "
        f"SST {end[1] / MiB:.1f}, WAL {end[2] / MiB:.1f}, other {end[3] / MiB:.1f})"
    )
    for label, r in probes:
        print(
            f"  sets, {label:<28} p50 {r.p50_us / 1000:.2f} ms  p99 {r.p99_us / 1000:.2f} ms"
            f"  p99.9 {r.p999_us / 1000:.2f} ms  max {r.max_us / 1000:.1f} ms  errors {r.errors}"
        )
    keys = ("expired_reaped", "reclaim_flushes", "compacted_bytes")
    print("  " + "  ".join(f"{k} {counters.get(k)}" for k in keys))
    curve = [
        (round(t - expiry, 1), round(v[0] / MiB, 1), round(v[2] / MiB, 1))
        for t, v in sampler.samples[::4]
    ]
    print(f"  (s from last expiry, directory MiB, WAL MiB), every 2 s: {json.dumps(curve)}")


def rss_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(rest.split()[0])
    return out


def bench_rss(workdir: Path, cache: int, value_size: int) -> None:
    keys = 5 * cache // value_size
    print(f"== rss: block cache {cache / MiB:.0f} MiB, dataset {keys:,} x {value_size} B")
    env = {**SMALL_BUFFERS, "PETRACACHE_STORAGE__BLOCK_CACHE_SIZE": str(cache)}
    with Petracache(workdir / "rss", env=env) as server:
        assert server.proc is not None
        idle = rss_kib(server.proc.pid)
        run_loadgen(server.port, ["-L", "-k", str(keys), "-v", str(value_size)])
        loaded = rss_kib(server.proc.pid)
        reads = run_loadgen(
            server.port, ["-c", "20", "-g", "1", "-k", str(keys), "-v", str(value_size), "-t", "20"]
        )
        after = rss_kib(server.proc.pid)
        on_disk = dir_bytes(server.db_path)
    print(f"  on disk {on_disk / MiB:.1f} MiB")
    idle_mib, loaded_mib = idle["VmRSS"] / 1024, loaded["VmRSS"] / 1024
    print(f"  RSS idle {idle_mib:.0f} MiB, after load {loaded_mib:.0f} MiB,")
    print(
        f"  after 20 s of random reads {after['VmRSS'] / 1024:.0f} MiB "
        f"(peak {after['VmHWM'] / 1024:.0f} MiB); hit ratio {reads.hit_ratio:.3f}"
    )
    print(load_line("random reads", reads))


def bench_write_cost(workdir: Path, n: int = 100_000) -> None:
    """In-process engine cost of a ``set``, with and without the expiry index."""
    from petracache.config import StorageSettings
    from petracache.rules.verbs import StoreMode
    from petracache.storage.engine import Engine

    print(f"== write cost: Engine.store(SET), {n:,} new keys x 100 B, in-process")
    for index_on in (False, True):
        for exptime in (0, 3600):
            path = workdir / f"cost-{index_on}-{exptime}"
            engine = Engine(StorageSettings(db_path=str(path), enable_ttl_compaction=index_on))
            t0 = time.perf_counter()
            for i in range(n):
                engine.store(StoreMode.SET, b"key:%d" % i, 0, exptime, b"x" * 100)
            per_set = (time.perf_counter() - t0) / n * 1e6
            engine.close()
            del engine
            print(f"  enable_ttl_compaction={index_on!s:<5} exptime={exptime:<5} {per_set:5.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=["expiry", "burst", "capacity", "rss"])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--bound", type=int, default=64 * MiB)
    parser.add_argument("--cache", type=int, default=16 * MiB)
    parser.add_argument("--dir", help="where the databases go (default: a temp dir)")
    parser.add_argument(
        "--server-path", default="", help="walrelease, capacity: run another checkout's server"
    )
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=opts.dir) as tmp:
        workdir = Path(tmp)
        if "expiry" in opts.parts:
            bench_expiry(workdir, opts.items, opts.value_size)
        if "burst" in opts.parts:
            bench_burst(workdir, opts.items, opts.value_size)
        if "capacity" in opts.parts:
            bench_capacity(workdir, opts.bound, 1000, opts.server_path)
        if "rss" in opts.parts:
            bench_rss(workdir, opts.cache, 1000)
        if "writecost" in opts.parts:
            bench_write_cost(workdir)
        if "walrelease" in opts.parts:
            bench_wal_release(workdir, opts.server_path)


if __name__ == "__main__":
    main()
