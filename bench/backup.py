"""Latency of a read/write load while online backups run (docs/runbook-backup.md).

``python -m bench.backup [--items N] [--value B] [--rate R] [--seconds S] [--dir D]``

A working set of ``--items`` values of ``--value`` bytes is loaded; an open-loop load
(``bench/loadgen.c``, 10 connections, 90% gets, ``--rate`` requests/s in total) runs for
``--seconds`` twice on the same server: alone, then with a ``POST /backup`` every 1.5 s from
the first second on (each backup is a RocksDB checkpoint; see ``storage.backup``). Printed:
p50/p99/p99.9/max of both runs and each backup's duration. The server is pinned to one core
(``bench.common``); the machine may be shared, so compare the two runs of one invocation.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.common import LoadResult, Petracache, run_loadgen

TOKEN = "bench-backup"  # POST /backup's bearer token (metrics.token_file)


def _backups(url: str, start: float, every: float, until: float, out: list[float]) -> None:
    time.sleep(start)
    deadline = time.monotonic() + until - start
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            url, data=b"", method="POST", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            out.append(json.loads(reply.read())["seconds"])
        time.sleep(every)


def _row(name: str, r: LoadResult) -> str:
    return (
        f"{name:<16} {r.ops_per_sec:>9.0f} {r.p50_us:>8.0f} {r.p99_us:>8.0f} "
        f"{r.p999_us:>8.0f} {r.max_us:>8.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--value", type=int, default=512)
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        token = Path(tmp) / "admin.token"
        token.write_text(TOKEN + "\n")
        env = {
            "PETRACACHE_METRICS__LISTEN_ADDR": "127.0.0.1:0",
            "PETRACACHE_METRICS__TOKEN_FILE": str(token),
        }
        server = Petracache(Path(tmp) / "pc", env=env)
        with server:
            keys = ["-k", str(args.items), "-v", str(args.value)]
            run_loadgen(server.port, [*keys, "-L", "-c", "4"])
            load = [*keys, "-c", "10", "-g", "0.9", "-R", str(args.rate), "-w", "1"]
            load += ["-t", str(args.seconds)]
            alone = run_loadgen(
                server.port, load, server_pid=server.proc.pid if server.proc else None
            )
            took: list[float] = []
            runner = threading.Thread(
                target=_backups,
                args=(server.admin_url() + "/backup", 1.0, 1.5, args.seconds + 1.0, took),
            )
            runner.start()
            during = run_loadgen(server.port, load)
            runner.join()
            size = sum(p.stat().st_size for p in server.db_path.rglob("*") if p.is_file())
    print(
        f"items {args.items} x {args.value} B ({size / 2**20:.0f} MiB on disk), "
        f"{args.rate} req/s offered, {args.seconds} s per run"
    )
    print(f"{'run':<16} {'ops/s':>9} {'p50 us':>8} {'p99 us':>8} {'p99.9 us':>8} {'max us':>8}")
    print(_row("no backup", alone))
    print(_row(f"{len(took)} backups", during))
    print("backup seconds: " + ", ".join(f"{t:.3f}" for t in took))


if __name__ == "__main__":
    main()
