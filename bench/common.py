"""Shared benchmark plumbing: pinned servers, the C load generator, its JSON results.

Every benchmark script uses these so both servers are started, pinned and measured the
same way:

* ``Memcached`` and ``Petracache`` start a real server on loopback pinned (``taskset``) to
  ``SERVER_CPUS`` -- one core each, memcached with one worker thread (``-t 1``); petracache's
  RocksDB background threads inherit the same affinity. ``Redis`` (the durable anchor, if
  ``redis-server`` is installed) is pinned the same way, its AOF rewrite children too.
* ``build_loadgen()`` compiles ``bench/loadgen.c`` once per source version (into the temp
  dir, so concurrent runs and a read-only checkout both work) and ``run_loadgen()`` runs it
  pinned to ``LOADGEN_CPUS`` and returns its ``LoadResult``, with the server's CPU time
  (the process and its children) over the run.

Servers reuse ``tests.harness`` (the one shared way to start real processes) and only
add the ``taskset`` prefix.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
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
    server_cpu_s: float = 0.0  # the server's CPU time (user + system), children included
    server_children_cpu_s: float = 0.0  # of which its forked children's (Redis: AOF rewrites)
    aof_rewrites: int = 0  # Redis: AOF rewrites that ran for this run's writes
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


def _stat_fields(pid: int | str) -> list[str]:
    """``/proc/pid/stat`` from its 3rd field (state) on; empty if the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def process_tree_cpu_seconds(pid: int) -> tuple[float, float]:
    """(all, children): user + system CPU of ``pid``, its reaped children and live ones.

    A forked child (Redis's AOF rewrite) is counted while it runs (from its own
    ``/proc`` entry) and once reaped (the parent's cutime + cstime), so a delta over a run
    holds every child's CPU of that run, however the run's bounds cut it.
    """
    own = _stat_fields(pid)
    if not own:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    children = int(own[13]) + int(own[14])
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            child = _stat_fields(entry.name)
            if child and child[1] == str(pid):
                children += sum(int(child[i]) for i in (11, 12, 13, 14))
    return (int(own[11]) + int(own[12]) + children) / tick, children / tick


def run_loadgen(
    port: int,
    args: Sequence[str],
    timeout: float = 600.0,
    server_pid: int | None = None,
    settle: Callable[[], None] | None = None,
) -> LoadResult:
    """Run the load generator against ``127.0.0.1:port`` and parse its result.

    With ``server_pid``, the server's CPU time during the run is recorded too (the process
    and its children); ``settle`` is called after the generator exits and before the
    server's CPU is read, so background work the run started (Redis's AOF rewrite) is
    charged to it.

    Raises:
        RuntimeError: the generator failed (the server closed a connection, refused...).
    """
    cmd = pinned([str(build_loadgen()), "-p", str(port), *args], LOADGEN_CPUS)
    cpu_before = process_tree_cpu_seconds(server_pid) if server_pid else (0.0, 0.0)
    counters_before = kernel.snapshot()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    counters_after = kernel.snapshot()
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    result = LoadResult.from_json(proc.stdout.strip().splitlines()[-1])
    result.kernel = kernel.delta(counters_before, counters_after)
    if settle is not None:
        settle()
    if server_pid:
        cpu_after = process_tree_cpu_seconds(server_pid)
        result.server_cpu_s = cpu_after[0] - cpu_before[0]
        result.server_children_cpu_s = cpu_after[1] - cpu_before[1]
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


class Redis:
    """Debian's redis-server, durable as petracache's default (``durability = "wal"``).

    ``--appendonly yes --appendfsync everysec --save ""``: every write is appended to the
    AOF (``write()`` before the reply leaves, one per event-loop pass), fsynced once a
    second, no RDB snapshots: an acknowledged write survives ``kill -9``, not a power cut.
    AOF rewrites stay on (Redis's defaults: when the log doubled, from 64 MB), as a user
    runs it; they fork a child, which inherits the server core's pinning.

    Args:
        workdir: the AOF directory (``--dir``).
    """

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cmd = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "no",
            "--dir", str(workdir), "--daemonize", "no", "--logfile", str(workdir / "redis.log"),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--maxclients", "4096",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            pinned(cmd, SERVER_CPUS), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def info(self, section: str) -> dict[str, str]:
        """``INFO section`` as {field: value}."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10.0) as sock:
            sock.sendall(f"INFO {section}\r\n".encode())
            data = b""
            while b"\r\n" not in data:
                data += sock.recv(65536)
            header, body = data.split(b"\r\n", 1)
            if not header.startswith(b"$"):
                raise RuntimeError(f"INFO {section}: {data!r}")
            size = int(header[1:])
            while len(body) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError(f"INFO {section}: connection closed")
                body += chunk
        fields_ = (line.split(":", 1) for line in body[:size].decode().splitlines())
        return {f[0]: f[1] for f in fields_ if len(f) == 2}

    def aof_rewrites(self) -> int:
        return int(self.info("persistence").get("aof_rewrites", "0"))

    def settle(self, quiet: float = 0.3, timeout: float = 300.0) -> None:
        """Wait until no AOF rewrite runs or is scheduled, and none starts for ``quiet`` s.

        serverCron (10 Hz) starts a rewrite when the log has doubled, possibly right after
        the previous one ends: ``quiet`` covers a few of its ticks.
        """
        deadline = time.monotonic() + timeout
        idle_since = 0.0
        while time.monotonic() < deadline:
            info = self.info("persistence")
            busy = info.get("aof_rewrite_in_progress") != "0"
            busy = busy or info.get("aof_rewrite_scheduled") != "0"
            now = time.monotonic()
            if busy:
                idle_since = 0.0
            elif not idle_since:
                idle_since = now
            elif now - idle_since >= quiet:
                return
            time.sleep(0.05)
        raise TimeoutError("redis: an AOF rewrite did not finish")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)

    def __enter__(self) -> Redis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
