"""Server CPU per request of one petracache build on one workload, for A/B runs of builds.

``python -m bench.server_cpu [--mode sets|mixed|reads] [--seconds S] [--perf FILE] [VAR=VALUE ...]``

Starts the petracache of the interpreter running this module (so run it with each build's
venv in turn, alternating, for an A/B on a shared machine), with its defaults and the
``PETRACACHE_*`` variables given, pre-loads 100,000 1 KB items, runs 20 connections of the
load generator (sets only, 50/50, or 90/10 gets) pinned as in ``python -m bench``, and
prints ops/s and the server's CPU microseconds per request. ``--perf FILE`` records the
server with ``perf record -g`` meanwhile. Server CPU per request does not depend much on
what else the machine runs, which ops/s does: compare the CPU figure.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from bench.common import Petracache, run_loadgen
from bench.suite import preload

KEYS = 100_000
VALUE = 1024
GET_RATIO = {"sets": "0", "mixed": "0.5", "reads": "0.9"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.server_cpu", description=__doc__)
    parser.add_argument("--mode", choices=sorted(GET_RATIO), default="sets")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--perf", type=Path, help="perf record the server into this file")
    parser.add_argument("env", nargs="*", help="PETRACACHE_*=VALUE for the server")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    with (
        tempfile.TemporaryDirectory(prefix="petracache-cpu-") as tmp,
        Petracache(Path(tmp), env=env) as server,
    ):
        preload(server.port, KEYS, VALUE)
        assert server.proc is not None
        pid = server.proc.pid
        perf = None
        if args.perf is not None:
            record = ["perf", "record", "-F", "999", "-g", "-p", str(pid), "-o", str(args.perf)]
            perf = subprocess.Popen(
                [*record, "--", "sleep", str(args.seconds)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        load = ["-t", str(args.seconds), "-w", "1", "-c", "20", "-g", GET_RATIO[args.mode]]
        result = run_loadgen(
            server.port, [*load, "-k", str(KEYS), "-v", str(VALUE)], server_pid=pid
        )
        if perf is not None:
            perf.wait()
        print(
            f"{args.mode}: {result.ops_per_sec:.0f} ops/s,"
            f" server cpu {result.server_cpu_us_per_op:.1f} us/op"
        )


if __name__ == "__main__":
    main()
