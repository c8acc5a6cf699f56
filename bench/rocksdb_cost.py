"""RocksDB's own CPU per 1 KB write and read, with the server's options: the floor under the
RocksDB path. ``python -m bench.rocksdb_cost [--keys N] [--ops N]``

Opens a database the way the server does (``storage.rocks.open_db`` with default
``StorageSettings``: WAL on, the same memtables, block cache and Bloom filters), pre-loads
``--keys`` 1 KB items, then in this one process:

* ``put``: ``--ops`` random overwrites in ``WriteBatch``es of 10 (about what one reactor
  pass commits under workload 5), each batch one ``write`` with the WAL;
* ``get``: ``--ops`` random reads, first with the memtables holding recent writes (as
  workloads 7 and 8 see them), then after a flush and reopen with a small block cache (as
  workload 6 sees them);

and prints the process CPU per operation (``getrusage``: every thread, so RocksDB's flushes
and compactions count, as they do in the server's CPU) minus the same loop without the
RocksDB call (the key choice and the batch's ``put``). Compare it with memcached's whole
CPU per request in ``python -m bench`` (workload 5's row): what the server adds on top is
the protocol, the hot items, the counts and the kernel's socket work.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import tempfile
from collections.abc import Callable
from pathlib import Path

from petracache.config import StorageSettings
from petracache.storage import rocks

VALUE_SIZE = 1024 + 26  # a 1 KB item as stored (storage.codec's header)
BATCH = 10
SMALL_CACHE = 16 * 1024 * 1024  # workload 6's block cache


def cpu_seconds() -> float:
    """CPU of every thread of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def per_op(run: Callable[[], None], baseline: Callable[[], None], ops: int) -> float:
    """Microseconds of CPU per operation of ``run`` beyond ``baseline``."""
    start = cpu_seconds()
    run()
    middle = cpu_seconds()
    baseline()
    end = cpu_seconds()
    return 1e6 * ((middle - start) - (end - middle)) / ops


class Load:
    """Random 1 KB puts and gets over pre-loaded keys (``run``: with RocksDB calls, or
    without them for the baseline)."""

    def __init__(self, keys: int, ops: int) -> None:
        self.names = [b"key:%08d" % i for i in range(keys)]
        self.value = os.urandom(VALUE_SIZE)
        self.ops = ops
        self.rng = random.Random(1)
        self.options = rocks.write_options()

    def fill(self, db: rocks.RocksDB) -> None:
        batch = rocks.new_batch()
        for i, name in enumerate(self.names):
            batch.put(name, self.value)
            if i % 100 == 99:
                rocks.commit_batch(db, batch, self.options)
                batch = rocks.new_batch()
        rocks.commit_batch(db, batch, self.options)

    def puts(self, db: rocks.RocksDB | None) -> Callable[[], None]:
        def run() -> None:
            names, keys, rng = self.names, len(self.names), self.rng
            batch = rocks.new_batch()
            for i in range(self.ops):
                batch.put(names[rng.randrange(keys)], self.value)
                if i % BATCH == BATCH - 1:
                    if db is not None:
                        rocks.commit_batch(db, batch, self.options)
                    batch = rocks.new_batch()

        return run

    def gets(self, db: rocks.RocksDB | None) -> Callable[[], None]:
        def run() -> None:
            names, keys, rng = self.names, len(self.names), self.rng
            for _ in range(self.ops):
                name = names[rng.randrange(keys)]
                if db is not None:
                    db.get(name)

        return run


def measure(path: Path, keys: int, ops: int) -> dict[str, float]:
    """CPU per put, per get from memtables and per get from SST files (see the module)."""
    load = Load(keys, ops)
    db = rocks.open_db(StorageSettings(db_path=str(path)))
    load.fill(db)
    figures = {"put": per_op(load.puts(db), load.puts(None), ops)}
    load.gets(db)()  # warm the block cache
    figures["get, memtables"] = per_op(load.gets(db), load.gets(None), ops)
    db.flush(True)
    db.close()
    del db
    gc.collect()  # the column-family handles keep RocksDB's lock until released
    small = rocks.open_db(StorageSettings(db_path=str(path), block_cache_size=SMALL_CACHE))
    load.gets(small)()
    figures["get, SST files"] = per_op(load.gets(small), load.gets(None), ops)
    small.close()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rocksdb_cost", description=__doc__)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--ops", type=int, default=300_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="petracache-rocksdb-cost-") as tmp:
        figures = measure(Path(tmp) / "db", args.keys, args.ops)
    for name, micros in figures.items():
        print(f"{name}: {micros:.2f} us of CPU per operation")


if __name__ == "__main__":
    main()
