"""Shared benchmark plumbing: pinned servers, the C load generator, its JSON results.

Every benchmark script uses these so both servers are started, pinned and measured the
same way:

* ``Memcached`` and ``Petracache`` start a real server on loopback pinned (``taskset``) to
  ``SERVER_CPUS`` -- one core each, memcached with one worker thread (``-t 1``); petracache's
  RocksDB background threads inherit the same affinity.
* ``build_loadgen()`` compiles ``bench/loadgen.c`` once per source version (into the temp
  dir, so concurrent runs and a read-only checkout both work) and ``run_loadgen()`` runs it
  pinned to ``LOADGEN_CPUS`` and returns its ``LoadResult``.

Servers reuse ``tests.harness`` (the one shared way to start real processes) and only
add the ``taskset`` prefix.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from bench import kernel
from tests.harness import PetracacheProcess, free_port, wait_for_port

BENCH_DIR = Path(__file__).resolve().parent
LOADGEN_SOURCE = BENCH_DIR / "loadgen.c"


def _cpus() -> tuple[str, str]:
    """(server cpus, load generator cpus): core 0 and core 1 when there are two or more."""
    count = os.cpu_count() or 1
    if count < 2 or shutil.which("taskset") is None:
        return "", ""
    return "0", "1"


SERVER_CPUS, LOADGEN_CPUS = _cpus()


def pinned(cmd: Sequence[str], cpus: str) -> list[str]:
    """``cmd`` prefixed with ``taskset -c cpus`` (unchanged when pinning is unavailable)."""
    return ["taskset", "-c", cpus, *cmd] if cpus else list(cmd)


@dataclass(slots=True)
class LoadResult:
    """One load generator run (the JSON object ``loadgen`` prints)."""

    ops: int
    gets: int
    sets: int
    hits: int
    misses: int
    errors: int
    dropped: int
    seconds: float
    ops_per_sec: float
    mean_us: float
    p50_us: float
    p99_us: float
    p999_us: float
    max_us: float
    cpu_pct: float  # the load generator's own CPU use (100 = one core)
    all_ops: int  # requests completed, warm-up included
    wall_s: float  # the whole run, warm-up included
    server_cpu_s: float = 0.0  # the server's CPU time (user + system) during the run
    kernel: dict[str, int] = field(default_factory=dict)  # bench.kernel counters that moved

    @classmethod
    def from_json(cls, text: str) -> LoadResult:
        raw = json.loads(text)
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})

    @property
    def server_cores(self) -> float:
        """The server's CPU use over the run (1.0 = one core busy all the time)."""
        return self.server_cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def server_cpu_us_per_op(self) -> float:
        """Server CPU per request: robust to a busy machine, unlike ops/s."""
        return self.server_cpu_s * 1e6 / self.all_ops if self.all_ops else 0.0

    @property
    def hit_ratio(self) -> float:
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else 0.0


def build_loadgen() -> Path:
    """Compile ``loadgen.c`` (cached by its content hash) and return the binary's path."""
    source = LOADGEN_SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    out_dir = Path(tempfile.gettempdir()) / f"petracache-loadgen-{digest}"
    binary = out_dir / "loadgen"
    if binary.exists():
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f"loadgen.{os.getpid()}"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-o", str(tmp), str(LOADGEN_SOURCE)],
        check=True,
        capture_output=True,
    )
    tmp.replace(binary)  # atomic: a concurrent build never sees a half-written binary
    return binary


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid`` (from /proc; 0.0 if unavailable)."""
    try:
        fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")


def run_loadgen(
    port: int, args: Sequence[str], timeout: float = 600.0, server_pid: int | None = None
) -> LoadResult:
    """Run the load generator against ``127.0.0.1:port`` and parse its result.

    With ``server_pid``, the server's CPU time during the run is recorded too.

    Raises:
        RuntimeError: the generator failed (the server closed a connection, refused...).
    """
    cmd = pinned([str(build_loadgen()), "-p", str(port), *args], LOADGEN_CPUS)
    cpu_before = process_cpu_seconds(server_pid) if server_pid else 0.0
    counters_before = kernel.snapshot()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    counters_after = kernel.snapshot()
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    result = LoadResult.from_json(proc.stdout.strip().splitlines()[-1])
    result.kernel = kernel.delta(counters_before, counters_after)
    if server_pid:
        result.server_cpu_s = process_cpu_seconds(server_pid) - cpu_before
    return result


class Petracache(PetracacheProcess):
    """``tests.harness.PetracacheProcess`` pinned to the server core."""

    def command(self) -> list[str]:
        return pinned(super().command(), SERVER_CPUS)

    def disk_bytes(self) -> int:
        """Bytes in the database directory (SST files, WAL, MANIFEST, OPTIONS)."""
        return sum(p.stat().st_size for p in self.db_path.rglob("*") if p.is_file())


class Memcached:
    """Debian's memcached 1.6 with one worker thread, pinned to the server core.

    Args:
        memory_mb: ``-m``; large enough that the benchmark's dataset is never evicted.
        max_connections: ``-c``; the 1,000-connection workload needs more than the default.
    """

    def __init__(self, memory_mb: int = 1024, max_connections: int = 4096) -> None:
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        self.port = free_port()
        cmd = [binary, "-U", "0", "-l", "127.0.0.1", "-p", str(self.port), "-t", "1"]
        cmd += ["-m", str(memory_mb), "-c", str(max_connections)]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]
        self.proc = subprocess.Popen(
            pinned(cmd, SERVER_CPUS), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def __enter__(self) -> Memcached:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
