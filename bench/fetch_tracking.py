"""What recording fetches costs a plain get: ``python -m bench.fetch_tracking``.

``Engine.get`` records each hit for the meta protocol (fetched bit, last access time) but
writes only on an item's first fetch and then at most once per 60 s. This compares it with
``Engine.lookup`` (the same read without any fetch bookkeeping) on hot items in the same run,
in CPU time per call (``time.process_time``, stable on a shared machine), and counts the
RocksDB writes the hot gets made (expected: 0).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

from petracache.config import StorageSettings
from petracache.rules.verbs import StoreMode
from petracache.storage.engine import Engine

KEYS = 1000
ROUNDS = 200
REPEATS = 5


def per_call_ns(call: Callable[[bytes], object], keys: list[bytes]) -> float:
    start = time.process_time()
    for _ in range(ROUNDS):
        for key in keys:
            call(key)
    return (time.process_time() - start) / (ROUNDS * len(keys)) * 1e9


def main() -> None:
    with tempfile.TemporaryDirectory() as path:
        engine = Engine(StorageSettings(db_path=path))
        keys = [b"key:%d" % i for i in range(KEYS)]
        for key in keys:
            engine.store(StoreMode.SET, key, 0, 0, b"x" * 100)
            engine.fetch(key)  # the first fetch: the one write it costs
        writes = engine.sequence.writes
        calls: dict[str, Callable[[bytes], object]] = {
            "get (records fetches)": engine.fetch,
            "read (no bookkeeping)": lambda key: engine.read(key, engine.now()),
        }
        best = {name: float("inf") for name in calls}
        for _ in range(REPEATS):
            for name, call in calls.items():
                best[name] = min(best[name], per_call_ns(call, keys))
        for name, ns in best.items():
            print(f"{name:26} {ns / 1000:6.2f} us/call (best of {REPEATS})")
        reads = 2 * REPEATS * ROUNDS * KEYS
        print(f"writes during {reads:,} hot reads: {engine.sequence.writes - writes}")
        engine.close()


if __name__ == "__main__":
    main()
