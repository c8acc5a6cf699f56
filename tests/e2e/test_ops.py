"""Operations against real processes: configuration precedence and errors, the admin
sidecar, memcached ``stats`` parity (and memcstat), connection limits, idle timeouts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import PetracacheProcess, RawClient

pytestmark = pytest.mark.integration

GENERAL_STATS = [
    "pid",
    "uptime",
    "time",
    "version",
    "pointer_size",
    "rusage_user",
    "rusage_system",
    "curr_connections",
    "total_connections",
    "rejected_connections",
    "connection_structures",
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "get_hits",
    "get_misses",
    "get_expired",
    "get_flushed",
    "delete_misses",
    "delete_hits",
    "incr_misses",
    "incr_hits",
    "decr_misses",
    "decr_hits",
    "cas_misses",
    "cas_hits",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "bytes_read",
    "bytes_written",
    "limit_maxbytes",
    "threads",
    "bytes",
    "curr_items",
    "total_items",
    "expired_unfetched",
    "evictions",
]


def stats(client: RawClient, group: str = "") -> dict[str, str]:
    client.send(f"stats {group}".strip().encode() + b"\r\n")
    out: dict[str, str] = {}
    while True:
        line = client.read_line().decode().rstrip("\r\n")
        if line == "END":
            return out
        tag, name, value = line.split(" ", 2)
        assert tag == "STAT"
        out[name] = value


def http(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(proc: PetracacheProcess) -> dict[str, list[tuple[dict[str, str], float]]]:
    status, text = http(proc.admin_url() + "/metrics")
    assert status == 200
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run petracache expecting it to refuse to start; returns (exit status, stderr)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PETRACACHE_")}
    full_env["PETRACACHE_METRICS__LISTEN_ADDR"] = "127.0.0.1:0"
    full_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", "petracache", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stderr.decode()


# -- configuration --------------------------------------------------------------------------


def test_precedence_toml_env_flags(tmp_path: Path) -> None:
    toml = "[server]\nmax_connections = 100\nmax_item_size = 2097152\n"
    with PetracacheProcess(tmp_path / "a", config=toml) as proc:
        settings = stats(proc.client(), "settings")
        assert (settings["maxconns"], settings["item_size_max"]) == ("100", "2097152")
    env = {"PETRACACHE_MAX_CONNECTIONS": "200"}
    with PetracacheProcess(tmp_path / "b", config=toml, env=env) as proc:
        settings = stats(proc.client(), "settings")
        assert (settings["maxconns"], settings["item_size_max"]) == ("200", "2097152")
    with PetracacheProcess(tmp_path / "c", config=toml, env=env, args=["-c", "300"]) as proc:
        settings = stats(proc.client(), "settings")
        assert (settings["maxconns"], settings["item_size_max"]) == ("300", "2097152")
        assert "max_connections 300" in proc.log()  # the start-up line shows the result


@pytest.mark.parametrize(
    ("toml", "args", "expected"),
    [
        ("[server]\nbogus = 1\n", [], "server.bogus: unknown option"),
        ('[server]\nmax_connections = "lots"\n', [], "server.max_connections: Input should be"),
        ("", ["-p", "70000"], "server.listen_addr: port 70000 out of range"),
        ("[storage]\nenable_compression = 3\n", [], "storage.enable_compression:"),
        ("", ["-I", "huge"], "server.max_item_size: invalid size"),
    ],
)
def test_bad_config_stops_with_one_line(
    tmp_path: Path, toml: str, args: list[str], expected: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(toml)
    status, err = run_cli([str(config), "--db-path", str(tmp_path / "db"), *args], tmp_path)
    assert status == 2
    assert err.count("\n") == 1, err
    assert expected in err
    assert "Traceback" not in err


def test_bad_env_value_names_the_option(tmp_path: Path) -> None:
    status, err = run_cli(["-p", "0"], tmp_path, {"PETRACACHE_SERVER__IDLE_TIMEOUT": "soon"})
    assert status == 2
    assert err.startswith("petracache: server.idle_timeout:")
    assert err.count("\n") == 1


def test_unwritable_db_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    status, err = run_cli(["-p", "0", "--db-path", str(blocker / "db")], tmp_path)
    assert status == 2
    assert err.count("\n") == 1, err
    assert "storage.db_path:" in err
    assert "not writable" in err


def last_line(err: str) -> str:
    """The error line: start-up failures come after the log lines, which also go to stderr."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert sum(line.startswith("petracache: ") for line in lines) == 1, err
    return lines[-1]


def test_database_locked_by_a_running_petracache(server: PetracacheProcess) -> None:
    status, err = run_cli(["-p", "0", "--db-path", str(server.db_path)], server.workdir)
    assert status == 1
    line = last_line(err)
    assert line.startswith("petracache: storage.db_path:")
    assert "locked" in line
    assert server.client().call(b"") == b""  # the running one is unaffected


def test_data_port_in_use(tmp_path: Path, server: PetracacheProcess) -> None:
    status, err = run_cli(["-p", str(server.port), "--db-path", str(tmp_path / "db")], tmp_path)
    assert status == 1
    line = last_line(err)
    assert line.startswith(
        f"petracache: server.listen_addr: cannot listen on 127.0.0.1:{server.port}"
    )


def test_admin_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = f"127.0.0.1:{taken.getsockname()[1]}"
        status, err = run_cli(
            ["-p", "0", "--db-path", str(tmp_path / "db"), "--metrics-addr", addr], tmp_path
        )
    assert status == 1
    assert last_line(err) == f"petracache: metrics.listen_addr: cannot listen on {addr}: " + (
        "Address already in use"
    )


# -- admin sidecar ---------------------------------------------------------------------------


def test_sidecar_health_ready_metrics(server: PetracacheProcess) -> None:
    base = server.admin_url()
    assert http(base + "/health")[0] == 200
    assert http(base + "/ready")[0] == 200
    client = server.client()
    client.call(b"set m1 0 0 1\r\nx\r\nget m1 m2\r\nadd m1 0 0 1\r\ny\r\ndelete m3\r\n")
    client.call(b"gets m1\r\n")
    cas = int(client.call(b"gets m1\r\n").split()[4])
    client.call(b"cas m1 0 0 1 %d\r\nz\r\ncas m1 0 0 1 %d\r\nz\r\n" % (cas, cas))
    metrics = scrape(server)
    requests = {
        (labels["command"], labels["result"]): value
        for labels, value in metrics["petracache_requests_total"]
    }
    assert requests[("set", "stored")] == 1
    assert requests[("get", "hit")] == 1
    assert requests[("get", "miss")] == 1
    assert requests[("add", "not_stored")] == 1
    assert requests[("delete", "not_found")] == 1
    assert requests[("cas", "stored")] == 1
    assert requests[("cas", "exists")] == 1
    assert requests[("version", "ok")] >= 3
    counts = {
        labels["command"]: value
        for labels, value in metrics["petracache_request_duration_seconds_count"]
    }
    assert counts["get"] == 1
    assert counts["gets"] == 2
    assert metrics["petracache_current_connections"][0][1] == 1
    assert metrics["petracache_connections_total"][0][1] >= 1
    assert metrics["petracache_cas_conflicts_total"][0][1] == 1
    assert metrics["petracache_read_bytes_total"][0][1] > 0
    assert metrics["petracache_written_bytes_total"][0][1] > 0
    for name in (
        "petracache_connections_rejected_total",
        "petracache_evictions_total",
        "petracache_reclaimed_bytes_total",
        "petracache_reclaim_compacted_bytes_total",
        "petracache_rocksdb_estimated_keys",
        "petracache_rocksdb_live_sst_bytes",
        "petracache_rocksdb_memtable_bytes",
        "petracache_rocksdb_block_cache_usage",
        "petracache_rocksdb_block_cache_capacity",
        "petracache_rocksdb_pending_compaction_bytes",
    ):
        assert name in metrics, name
    modes = {labels["mode"] for labels, _ in metrics["petracache_items_expired_total"]}
    assert modes == {"lazy", "background"}


def test_sidecar_disabled(tmp_path: Path) -> None:
    with PetracacheProcess(tmp_path, env={"PETRACACHE_METRICS_ENABLED": "false"}) as proc:
        assert proc.client().call(b"") == b""
        assert "admin listening" not in proc.log()


# -- stats -----------------------------------------------------------------------------------


def test_stats_fields_and_reset(server: PetracacheProcess) -> None:
    client = server.client()
    client.call(b"set s1 0 0 2\r\nab\r\nget s1\r\nget nope\r\nincr nope 1\r\ntouch s1 0\r\n")
    before = stats(client)
    missing = [name for name in GENERAL_STATS if name not in before]
    assert not missing
    assert before["pid"] == str(server.proc.pid)  # type: ignore[union-attr]
    assert (before["cmd_get"], before["get_hits"], before["get_misses"]) == ("2", "1", "1")
    assert (before["cmd_set"], before["incr_misses"], before["touch_hits"]) == ("1", "1", "1")
    assert before["curr_connections"] == "1"
    assert client.call(b"stats reset\r\n") == b"RESET\r\n"
    after = stats(client)
    assert (after["cmd_get"], after["get_hits"], after["cmd_set"]) == ("0", "0", "0")
    assert after["total_items"] == "0"
    assert after["curr_connections"] == "1"  # a gauge: survives the reset
    assert int(after["bytes_read"]) < int(before["bytes_read"])
    # /metrics counters stay monotonic across a stats reset
    metrics = scrape(server)
    assert metrics["petracache_cmd_get_total"][0][1] == 2
    settings = stats(client, "settings")
    assert {"maxbytes", "maxconns", "item_size_max", "num_threads"} <= set(settings)


def test_memcstat_reads_stats(server: PetracacheProcess) -> None:
    done = subprocess.run(
        ["memcstat", f"--servers=127.0.0.1:{server.port}"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert f"Server: 127.0.0.1 ({server.port})" in out
    assert "pid:" in out
    assert "curr_connections:" in out
    assert "evictions:" in out


# -- connections ------------------------------------------------------------------------------


def test_connection_limit(tmp_path: Path) -> None:
    with PetracacheProcess(tmp_path, args=["-c", "3"]) as proc:
        clients = [proc.client() for _ in range(3)]
        for c in clients:
            assert c.call(b"") == b""  # each one is being served
        extra = proc.client()
        assert extra.read_line() == b"ERROR Too many open connections\r\n"
        assert extra.is_closed()
        for c in clients:  # the others are unaffected
            assert c.call(b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
        clients.pop().close()
        (_status, text) = http(proc.admin_url() + "/metrics")
        assert "petracache_connections_rejected_total 1.0" in text
        c = clients[0]
        assert stats(c)["rejected_connections"] == "1"


def test_idle_timeout_is_off_by_default_and_optional(tmp_path: Path) -> None:
    with PetracacheProcess(tmp_path / "off") as proc:
        client = proc.client()
        assert not client.is_closed(wait=1.0)
        assert client.call(b"") == b""
    with PetracacheProcess(tmp_path / "on", args=["--idle-timeout", "0.2"]) as proc:
        client = proc.client()
        assert client.call(b"") == b""
        assert client.is_closed(wait=10.0)
        assert proc.client().call(b"") == b""


@pytest.fixture
def many_fds() -> Iterator[None]:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 10_200:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below 10,200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.usefixtures("many_fds")
def test_ten_thousand_connections(tmp_path: Path) -> None:
    n = 10_000
    with PetracacheProcess(tmp_path, args=["-c", str(n + 10)]) as proc:
        socks = []
        try:
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", proc.port), timeout=30)
                socks.append(s)
            for s in socks:
                s.sendall(b"version\r\n")
            for s in socks:
                assert s.recv(100).startswith(b"VERSION ")
            assert stats(proc.client())["curr_connections"] == str(n + 1)
        finally:
            for s in socks:
                s.close()
