"""Write throughput of the three durability levels, 50 writing connections, same run.

``python -m bench.durability [--seconds 10] [--connections 50] [--value-size 100]``

Each level gets a fresh petracache (pinned to the server core, see ``bench.common``) and
the C load generator runs set-only (``-g 0``), closed loop, one request in flight per
connection. The figure that matters is the ratio to ``wal`` measured in the same run: the
machine is shared, so absolute numbers move between runs. Also printed: the device the data
directory is on (``df``), since the cost of an fsync is the device's.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from bench.common import LoadResult, Petracache, run_loadgen

LEVELS = ("none", "wal", "fsync")


def measure(
    level: str, workdir: Path, seconds: float, connections: int, size: int
) -> tuple[LoadResult, float]:
    """One level: a fresh server, a set-only closed-loop load; the result and sets per fsync."""
    with Petracache(workdir / level, args=["--durability", level]) as server:
        args = ["-g", "0", "-c", str(connections), "-t", str(seconds), "-w", "1"]
        args += ["-v", str(size), "-k", "100000"]
        result = run_loadgen(server.port, args)
        stats = dict(
            line.split()[1:3]
            for line in server.client().call(b"stats\r\n").decode().splitlines()
            if line.startswith("STAT ")
        )
        fsyncs = int(stats.get("wal_fsyncs", 0))
        per_fsync = int(stats["cmd_set"]) / fsyncs if fsyncs else 0.0
        return result, per_fsync


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--dir", help="where the databases go (default: a temp dir)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=opts.dir) as tmp:
        workdir = Path(tmp)
        device = subprocess.run(
            ["df", "--output=source,fstype", str(workdir)], capture_output=True, text=True
        ).stdout.split("\n")[1]
        print(f"data directory on: {device}")
        results = {
            level: measure(level, workdir, opts.seconds, opts.connections, opts.value_size)
            for level in LEVELS
        }
    base = results["wal"][0].ops_per_sec
    print(
        f"{'level':<7} {'sets/s':>10} {'vs wal':>7} {'p50 us':>8} {'p99 us':>9} "
        f"{'errors':>6} {'sets/fsync':>10}"
    )
    for level, (r, per_fsync) in results.items():
        print(
            f"{level:<7} {r.ops_per_sec:>10.0f} {r.ops_per_sec / base:>7.2f} "
            f"{r.p50_us:>8.0f} {r.p99_us:>9.0f} {r.errors:>6} {per_fsync:>10.1f}"
        )


if __name__ == "__main__":
    main()
