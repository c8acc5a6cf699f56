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

from petracache.commands.executor import Executor
from petracache.commands.stats import ServerInfo
from petracache.config import StorageSettings
from petracache.observability.counters import Counters
from petracache.observability.request_metrics import RequestMetrics
from petracache.protocol.requests import Get, Request, Store
from petracache.protocol.responses import Response, Values
from petracache.rules.verbs import StoreMode
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
        requests: list[Request] = [
            Store(StoreMode.SET, b"key%d" % (i % 1000), 0, 0, b"x" * 100) for i in range(n // 10)
        ]
        requests += [Get([b"key%d" % (i % 1000)], return_cas=False) for i in range(n - n // 10)]
        results: dict[str, list[float]] = {"plain": [], "timed": []}
        variants = [("plain", plain), ("timed", timed)]
        for r in range(rounds):
            for name, fn in variants if r % 2 == 0 else variants[::-1]:  # alternate the order
                start = time.perf_counter()
                for request in requests:
                    fn(request)
                results[name].append((time.perf_counter() - start) / n * 1e9)
        engine.close()
    # min: the run least disturbed by the other processes sharing the machine
    return min(results["plain"]), min(results["timed"])


def wrapper_only(n: int, rounds: int) -> float:
    """Best-of-rounds ns the wrapper adds around a trivial execute (no engine at all)."""
    hit = Values([(b"k", 0, 1, b"v")], False)

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


def server_cpu(proc: PetracacheProcess) -> tuple[float, int]:
    """(CPU seconds the server used, requests it executed), from its own ``stats``."""
    client = proc.client()
    text = client.call(b"stats\r\n").decode()
    client.close()
    stats = dict(line.split(" ")[1:3] for line in text.splitlines() if line.startswith("STAT"))
    cpu = float(stats["rusage_user"]) + float(stats["rusage_system"])
    return cpu, int(stats["cmd_get"]) + int(stats["cmd_set"])


def end_to_end(seconds: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Per variant: (median ops/s, median server CPU microseconds per request).

    CPU per request is the steadier figure on a shared machine: other processes steal
    throughput, but they do not add to the server's own CPU time.
    """
    tps: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name in ("off", "on") if r % 2 == 0 else ("on", "off"):
                env = {"PETRACACHE_METRICS__ENABLED": "false" if name == "off" else "true"}
                with PetracacheProcess(Path(tmp) / f"{name}{r}", env=env) as proc:
                    cpu0, ops0 = server_cpu(proc)
                    tps[name].append(memcaslap(proc.port, seconds))
                    cpu1, ops1 = server_cpu(proc)
                    cpu[name].append((cpu1 - cpu0) / max(ops1 - ops0, 1) * 1e6)
    return {name: (statistics.median(tps[name]), statistics.median(cpu[name])) for name in tps}


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
    e2e = end_to_end(args.seconds, args.rounds)
    (off_tps, off_cpu), (on_tps, on_cpu) = e2e["off"], e2e["on"]
    print(
        f"memcaslap: sidecar off {off_tps:.0f} ops/s, {off_cpu:.1f} us CPU/request; "
        f"on {on_tps:.0f} ops/s, {on_cpu:.1f} us CPU/request "
        f"({100 * (on_cpu / off_cpu - 1):+.1f}% CPU per request)"
    )


if __name__ == "__main__":
    main()
