"""What per-request metrics cost: the executor with and without ``RequestMetrics.instrument``.

Two measurements, each alternating the variants so machine noise hits both alike:

* in process: ``execute`` on a real engine (tmp dir), N gets and sets, ns per request;
* end to end: memcaslap (90% get / 10% set) against a real server with the sidecar on
  (instrumented) and off (not instrumented), ops/s.

Run: ``python -m bench.metrics_overhead [--seconds 5] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from petracache.config import StorageSettings
from petracache.counters import Counters
from petracache.executor import Executor
from petracache.metrics import RequestMetrics
from petracache.protocol.requests import Get, Request, Store, StoreMode
from petracache.protocol.responses import Hit, Response, Values
from petracache.stats import ServerInfo
from petracache.storage.engine import Engine
from tests.harness import PetracacheProcess


def in_process(n: int, rounds: int) -> tuple[float, float]:
    """Best-of-rounds ns/request for (plain, instrumented)."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(StorageSettings(db_path=tmp))
        executor = Executor(
            engine, Counters(), ServerInfo(max_connections=1, item_size_max=1 << 20)
        )
        plain = executor.execute
        timed = RequestMetrics().instrument(plain)
        requests = [
            Store(StoreMode.SET, b"key%d" % (i % 1000), 0, 0, b"x" * 100) for i in range(n // 10)
        ]
        requests += [Get([b"key%d" % (i % 1000)], return_cas=False) for i in range(n - n // 10)]
        results: dict[str, list[float]] = {"plain": [], "timed": []}
        for _ in range(rounds):
            for name, fn in (("plain", plain), ("timed", timed)):
                start = time.perf_counter()
                for request in requests:
                    fn(request)
                results[name].append((time.perf_counter() - start) / n * 1e9)
        engine.close()
    # min: the run least disturbed by the other processes sharing the machine
    return min(results["plain"]), min(results["timed"])


def wrapper_only(n: int, rounds: int) -> float:
    """Best-of-rounds ns the wrapper adds around a trivial execute (no engine at all)."""
    hit = Values([Hit(b"k", 0, 1, b"v")], False)

    def trivial(request: Request) -> Response:
        return hit

    timed = RequestMetrics().instrument(trivial)
    request = Get([b"k"], return_cas=False)
    best = {"plain": float("inf"), "timed": float("inf")}
    for _ in range(rounds):
        for name, fn in (("plain", trivial), ("timed", timed)):
            start = time.perf_counter()
            for _ in range(n):
                fn(request)
            best[name] = min(best[name], (time.perf_counter() - start) / n * 1e9)
    return best["timed"] - best["plain"]


def memcaslap(port: int, seconds: int) -> float:
    out = subprocess.run(
        [
            "memcaslap",
            f"--servers=127.0.0.1:{port}",
            f"--time={seconds}s",
            "--concurrency=16",
            "--threads=1",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    match = re.search(r"Run time: [\d.]+s Ops: \d+ TPS: (\d+)", out)
    assert match, out
    return float(match.group(1))


def end_to_end(seconds: int, rounds: int) -> tuple[float, float]:
    """Median ops/s for (sidecar off = not instrumented, sidecar on = instrumented)."""
    results: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name in ("off", "on"):
                env = {"PETRACACHE_METRICS__ENABLED": "false" if name == "off" else "true"}
                with PetracacheProcess(Path(tmp) / f"{name}{r}", env=env) as proc:
                    results[name].append(memcaslap(proc.port, seconds))
    return statistics.median(results["off"]), statistics.median(results["on"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    print(f"wrapper alone: +{wrapper_only(args.requests, args.rounds):.0f} ns/request")
    plain, timed = in_process(args.requests, args.rounds)
    print(
        f"in process: plain {plain:.0f} ns/req, instrumented {timed:.0f} ns/req "
        f"(+{timed - plain:.0f} ns, {100 * (timed / plain - 1):+.1f}%)"
    )
    off, on = end_to_end(args.seconds, args.rounds)
    print(
        f"memcaslap: sidecar off {off:.0f} ops/s, on {on:.0f} ops/s ({100 * (on / off - 1):+.1f}%)"
    )


if __name__ == "__main__":
    main()
