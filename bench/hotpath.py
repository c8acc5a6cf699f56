"""Where a request's CPU goes, without sockets: ``python -m bench.hotpath [--profile]``.

Drives the same objects the server composes (``MemcacheConnection`` -> the instrumented
``Executor`` on a real ``Engine`` in a temp dir -> ``send``) with workload 1's traffic (1 KB
values, 90% get / 10% set over pre-loaded keys), one request per ``receive_data`` as an
unpipelined client sends them, and prints microseconds per request for each stage. The
rest of a request's cost is the trio data plane (``receive_some``/``send_all`` and their
syscalls), which ``python -m bench --only 1`` shows as server CPU per request.

CPU time per request (``time.process_time``) does not depend on what else the machine runs,
so it is the figure to compare before and after a change on a shared machine. It still
varies from run to run there (caches shared with other work, RocksDB's background
threads), so every stage runs ``--repeat`` times, in rotating order, after one warm-up
pass of the same traffic (the first gets of a freshly loaded key record its first fetch,
a write the later passes do not make), and the median and the minimum are printed.
``--pipeline N`` sends N requests per read, as workload 2 does.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import statistics
import tempfile
import time
from collections.abc import Callable

from petracache.commands.executor import Executor
from petracache.commands.stats import ServerInfo
from petracache.config import StorageSettings
from petracache.observability.counters import Counters
from petracache.observability.request_metrics import RequestMetrics
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


def pipelined(requests: list[bytes], depth: int) -> list[bytes]:
    """``depth`` requests per read, as a pipelining client sends them."""
    return [b"".join(requests[i : i + depth]) for i in range(0, len(requests), depth)]


def run(
    execute: Execute,
    requests: list[bytes],
    stage: str,
    clock: Callable[[], float] = time.process_time,
) -> tuple[float, int]:
    """CPU seconds for ``requests`` through parse only, or through ``process`` (parse +
    execute + encode, as the data plane runs them)."""
    conn = MemcacheConnection()
    replies = 0
    start = clock()
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
    return clock() - start, replies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--value-size", type=int, default=1024)
    parser.add_argument("--get-ratio", type=float, default=0.9)
    parser.add_argument("--pipeline", type=int, default=1, help="requests per read")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each stage")
    parser.add_argument(
        "--clock",
        choices=("process", "thread"),
        default="process",
        help="CPU time of the process, or of this thread only (without RocksDB's background "
        "flushes and compactions, which the sets cause at their own pace)",
    )
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
            clock = time.thread_time if args.clock == "thread" else time.process_time
            n = args.requests
            load = traffic(n, args.keys, args.value_size, args.get_ratio)
            load = pipelined(load, args.pipeline)
            run(instrumented, load, "full")  # warm-up: first fetches recorded, caches filled
            stages: list[tuple[str, Execute]] = [
                ("parse", instrumented),
                ("parse+execute+encode", executor.execute),
                ("parse+execute+encode+metrics", instrumented),
            ]
            times: dict[str, list[float]] = {stage: [] for stage, _ in stages}
            for i in range(args.repeat):
                for stage, execute in stages[i % 3 :] + stages[: i % 3]:
                    seconds, _ = run(execute, load, stage, clock)
                    times[stage].append(seconds * 1e6 / n)
            for stage, us in times.items():
                print(
                    f"{stage:30} {statistics.median(us):7.2f} us/request"
                    f" (min {min(us):.2f}, {len(us)} runs)"
                )
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
