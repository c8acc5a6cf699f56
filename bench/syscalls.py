"""Syscalls per request of each server: ``python -m bench.syscalls [--seconds 3]``.

Runs workload 1's traffic (1 KB values, 90% get / 10% set, 20 connections, pre-loaded keys)
against memcached and petracache while ``strace -c -f`` counts the server's system calls,
and prints the count per request by call. strace slows the server down a lot; the counts
per request are what it is for, not the rate.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import Memcached, Petracache, run_loadgen
from bench.suite import preload

KEYS = 20_000
_ROW = re.compile(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$")


def count(port: int, pid: int, seconds: float, out: Path) -> tuple[int, dict[str, int]]:
    """(requests, {syscall: calls}) for one load run under ``strace -c``."""
    tracer = subprocess.Popen(
        ["strace", "-c", "-f", "-p", str(pid), "-o", str(out)], stderr=subprocess.DEVNULL
    )
    time.sleep(0.5)  # attached before the load starts
    args = ["-t", str(seconds), "-w", "0", "-k", str(KEYS), "-v", "1024", "-c", "20", "-g", "0.9"]
    result = run_loadgen(port, args)
    tracer.send_signal(signal.SIGINT)
    tracer.wait()
    calls: dict[str, int] = {}
    for line in out.read_text().splitlines():
        match = _ROW.match(line)
        if match and match.group(2) != "total":
            calls[match.group(2)] = int(match.group(1))
    return result.all_ops, calls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.syscalls", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="petracache-syscalls-") as tmp:
        pc = Petracache(Path(tmp) / "pc")
        with pc, Memcached() as mc:
            assert pc.proc is not None
            servers = {"memcached": (mc.port, mc.proc.pid), "petracache": (pc.port, pc.proc.pid)}
            for port, _pid in servers.values():
                preload(port, KEYS, 1024)
            for name, (port, pid) in servers.items():
                requests, calls = count(port, pid, args.seconds, Path(tmp) / f"{name}.strace")
                top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
                print(
                    f"{name}: {requests} requests, {sum(calls.values()) / requests:.2f} "
                    "syscalls/request: "
                    + ", ".join(f"{n / requests:.2f} {call}" for call, n in top)
                )


if __name__ == "__main__":
    main()
