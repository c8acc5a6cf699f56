"""Where a request's CPU goes, without sockets: ``python -m bench.hotpath [--profile]``.

Drives the same objects the server composes (``MemcacheConnection`` -> the instrumented
``Executor`` on a real ``Engine`` in a temp dir -> ``send``) with workload 1's traffic (1 KB
values, 90% get / 10% set over pre-loaded keys), one request per ``receive_data`` as an
unpipelined client sends them, and prints microseconds per request for each stage. The
rest of a request's cost is the trio data plane (``receive_some``/``send_all`` and their
syscalls), which ``python -m bench --only 1`` shows as server CPU per request.

CPU time per request (``time.process_time``) does not depend on what else the machine runs,
so it is the figure to compare before and after a change on a shared machine.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import tempfile
import time

from petracache.commands.executor import Executor
from petracache.commands.stats import ServerInfo
from petracache.config import StorageSettings
from petracache.observability.counters import Counters
from petracache.observability.metrics import RequestMetrics
from petracache.protocol.connection import NEED_DATA, Execute, MemcacheConnection
from petracache.storage.engine import Engine

WRITE_LIMIT = 256 * 1024  # server.write_buffer_size


def traffic(count: int, keys: int, value_size: int, get_ratio: float) -> list[bytes]:
    """Request bytes, one request per element, like an unpipelined client's reads."""
    rng = random.Random(1)
    value = b"x" * value_size
    out = []
    for _ in range(count):
        key = b"key:%010d" % rng.randrange(keys)
        if rng.random() < get_ratio:
            out.append(b"get " + key + b"\r\n")
        else:
            out.append(b"set %b 0 0 %d\r\n%b\r\n" % (key, value_size, value))
    return out


def run(execute: Execute, requests: list[bytes], stage: str) -> tuple[float, int]:
    """CPU seconds for ``requests`` through parse only, or through ``process`` (parse +
    execute + encode, as the data plane runs them)."""
    conn = MemcacheConnection()
    replies = 0
    start = time.process_time()
    for data in requests:
        conn.receive_data(data)
        if stage == "parse":
            while conn.next_request() is not NEED_DATA:
                pass
            continue
        while True:
            batch = conn.process(execute, WRITE_LIMIT)
            replies += len(batch.data)
            if not batch.more:
                break
    return time.process_time() - start, replies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--value-size", type=int, default=1024)
    parser.add_argument("--get-ratio", type=float, default=0.9)
    parser.add_argument("--profile", action="store_true", help="cProfile the full path")
    args = parser.parse_args(argv)
    # RocksDB may still be deleting obsolete files just after close: cleanup is best effort.
    with tempfile.TemporaryDirectory(
        prefix="petracache-hotpath-", ignore_cleanup_errors=True
    ) as tmp:
        engine = Engine(StorageSettings(db_path=tmp))
        try:
            executor = Executor(
                engine, Counters(), ServerInfo(max_connections=1, item_size_max=1 << 20)
            )
            instrumented = RequestMetrics().instrument(executor.execute)
            run(instrumented, traffic(args.keys, args.keys, args.value_size, 0.0), "full")
            load = traffic(args.requests, args.keys, args.value_size, args.get_ratio)
            n = len(load)
            for stage, execute in (
                ("parse", instrumented),
                ("parse+execute+encode", executor.execute),
                ("parse+execute+encode+metrics", instrumented),
            ):
                seconds, _ = run(execute, load, stage)
                print(f"{stage:30} {seconds * 1e6 / n:7.2f} us/request")
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                run(instrumented, load, "full")
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        finally:
            engine.close()


if __name__ == "__main__":
    main()
