"""memcached's flags and signals that start scripts and test harnesses use, against real
processes: the unix socket (``-s``/``-a``) with pymemcache, SIGUSR1, ``MEMCACHED_PORT_FILENAME``
next to memcached's own, ``-M`` at the disk bound, and the stats monitoring reads
(``idle_kicks``, ``accepting_conns``, ``listen_disabled_num``, ``store_no_memory``).

What memcached defines byte for byte (replies, ``stats settings``, the port file's lines) is
compared with memcached 1.6.18 here or in ``test_differential_flags``.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymemcache.client.base import Client

from tests.binframes import GETK, SET, BinClient, req, store
from tests.harness import (
    MemcachedProcess,
    PetracacheProcess,
    RawClient,
    free_port,
    wait_for_port,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory for unix sockets: their paths must stay under 108 bytes."""
    root = Path(tempfile.mkdtemp(prefix="pc-"))
    root.chmod(0o777)  # memcached runs as nobody under root
    yield root
    for child in root.iterdir():
        child.unlink()
    root.rmdir()


def stats(client: RawClient, group: bytes = b"") -> dict[str, str]:
    raw = client.call(b"stats" + (b" " + group if group else b"") + b"\r\n").decode()
    return dict(line.split(" ", 2)[1:] for line in raw.splitlines() if line.startswith("STAT "))


def start_fails(workdir: Path, *args: str) -> str:
    """Run petracache expecting it to stop at start; its stderr's last line."""
    args = ("--no-metrics", *args)
    done = subprocess.run(
        [sys.executable, "-m", "petracache", "--db-path", str(workdir / "db"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=workdir,
    )
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("petracache: "), done.stderr
    return last


# -- the unix socket --------------------------------------------------------------------------


def test_unix_socket_serves_pymemcache_instead_of_tcp(tmp_path: Path, short_dir: Path) -> None:
    path = short_dir / "pc.sock"
    with PetracacheProcess(tmp_path, ["-s", str(path), "-a", "0770"]) as proc:
        assert proc.unix_path == str(path)
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o770
        client = Client(str(path))  # pymemcache takes a path for a unix socket
        client.set("u:a", b"1", noreply=False)
        assert client.get("u:a") == b"1"
        assert client.incr("u:n", 1) is None
        client.set("u:n", b"41")
        assert client.incr("u:n", 1) == 42
        assert client.get_many(["u:a", "u:n", "u:none"]) == {"u:a": b"1", "u:n": b"42"}
        _value, cas = client.gets("u:a")
        assert client.cas("u:a", b"2", cas)
        assert client.delete("u:a", noreply=False)
        client.close()
        binary = BinClient(str(path))  # the binary protocol too
        frames = binary.exchange(store(SET, b"u:b", b"v") + req(GETK, b"u:b"))
        assert [f.status for f in frames] == [0, 0]
        binary.close()
        raw = proc.client()
        settings = stats(raw, b"settings")
        assert (settings["domain_socket"], settings["umask"]) == (str(path), "770")
        conns = stats(raw, b"conns")
        assert f"unix:{path}" in conns.values()
        assert "conn_parse_cmd" in conns.values()  # the asking connection
        assert "petracache listening on 127.0.0.1" not in proc.log()  # no TCP listener
    assert not path.exists()  # removed at a clean exit


def test_unix_socket_replaces_a_stale_file_and_refuses_a_live_one(
    tmp_path: Path, short_dir: Path
) -> None:
    path = short_dir / "pc.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # a socket file nobody listens on: what a killed server leaves
    stale.close()
    with PetracacheProcess(tmp_path / "a", ["-s", str(path)]) as proc:
        assert proc.client().call(b"") == b""
        line = start_fails(tmp_path, "-s", str(path))
        assert line == (
            f"petracache: server.unix_socket: cannot listen on unix:{path}: "
            "a server is listening on this socket"
        )
        assert proc.client().call(b"") == b""  # the running server keeps its socket
    path.write_text("not a socket")
    line = start_fails(tmp_path, "-s", str(path))
    assert line.endswith("Address already in use")
    assert path.read_text() == "not a socket"  # a file that is not a socket is left alone


# -- SIGUSR1 ------------------------------------------------------------------------------------


def test_sigusr1_stops_gracefully_and_the_next_start_is_warm(tmp_path: Path) -> None:
    proc = PetracacheProcess(tmp_path).start()
    client = proc.client()
    assert client.call(b"set s 0 0 1\r\nv\r\n") == b"STORED\r\n"
    client.send(b"get s\r\n")  # in flight when the signal arrives: answered by the drain
    assert proc.stop(signal.SIGUSR1) == 0
    assert client.read_until(b"END\r\n") == b"VALUE s 0 1\r\nv\r\nEND\r\n"
    log = proc.log()
    assert "received SIGUSR1, shutting down" in log
    assert "database closed; bye" in log
    proc.start()
    try:
        after = proc.log()[len(log) :]
        assert "stopped cleanly" in after
        assert "counting the stored items" not in after  # the counts were kept
        assert proc.client().call(b"get s\r\n") == b"VALUE s 0 1\r\nv\r\nEND\r\n"
    finally:
        proc.stop()


# -- MEMCACHED_PORT_FILENAME ----------------------------------------------------------------


def test_port_file_is_written_as_memcached_writes_it(tmp_path: Path, short_dir: Path) -> None:
    theirs, ours = short_dir / "memcached.ports", tmp_path / "petracache.ports"
    port = free_port()
    memcached = subprocess.Popen(
        ["memcached", "-U", "0", "-l", "127.0.0.1", "-p", str(port), "-t", "1"]
        + (["-u", "nobody"] if os.geteuid() == 0 else []),
        env={**os.environ, "MEMCACHED_PORT_FILENAME": str(theirs)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        wait_until(theirs.exists)
        env = {"MEMCACHED_PORT_FILENAME": str(ours)}
        with PetracacheProcess(tmp_path / "pc", ["-l", "127.0.0.1"], env=env) as proc:
            # Written once the listener is open, as memcached writes it: a client may
            # connect a moment before it exists.
            wait_until(ours.exists)
            assert ours.read_text() == theirs.read_text().replace(str(port), str(proc.port))
            assert ours.read_text() == f"TCP INET: {proc.port}\n"
            assert not Path(f"{ours}.lck").exists()
    finally:
        memcached.terminate()
        memcached.wait(10)


# -- -M -----------------------------------------------------------------------------------------


def test_disable_evictions_refuses_stores_at_the_bound(tmp_path: Path) -> None:
    """-m 1 -M: from where eviction would start (55% of the bound in live data), stores
    answer memcached's SERVER_ERROR and nothing is evicted; a set also drops the old item,
    as memcached does; deleting items lifts it."""
    value = b"x" * 100_000
    with PetracacheProcess(tmp_path, ["-m", "1", "-M"]) as proc:
        client = proc.client()
        assert stats(client, b"settings")["evictions"] == "off"
        stored = 0

        def refused() -> bool:
            nonlocal stored
            reply = client.call(b"set m%d 0 0 %d\r\n%s\r\n" % (stored, len(value), value))
            if reply == b"STORED\r\n":
                stored += 1
                return False
            assert reply == b"SERVER_ERROR out of memory storing object\r\n"
            return True

        wait_until(refused, what="a store refused")
        assert client.call(b"ms mx 2\r\nab\r\n") == b"SERVER_ERROR out of memory storing object\r\n"
        binary = BinClient(proc.port)
        [frame] = binary.exchange(store(SET, b"m0", b"v"))
        assert (frame.status, frame.value) == (0x82, b"Out of memory")
        binary.close()
        figures = stats(client)
        assert figures["evictions"] == "0"
        assert int(figures["store_no_memory"]) == 3
        assert figures["cmd_set"] == str(stored)  # refused stores are not counted
        assert int(figures["curr_items"]) == stored - 1  # the binary set dropped m0
        assert client.call(b"get m1\r\n").startswith(b"VALUE m1")
        for i in range(1, stored):
            assert client.call(b"delete m%d\r\n" % i) == b"DELETED\r\n"
        wait_until(lambda: client.call(b"set m 0 0 1\r\nv\r\n") == b"STORED\r\n")
        assert "storage.eviction = none (-M) without a disk bound" not in proc.log()


# -- the stats monitoring reads ----------------------------------------------------------------


def test_idle_kicks_count_idle_connections_closed(tmp_path: Path) -> None:
    with PetracacheProcess(tmp_path, ["-o", "idle_timeout=1"]) as proc:
        idle = [proc.client() for _ in range(2)]
        assert idle[0].call(b"") == b""  # one served once (parked in the reactor)...
        # ...one never sent a byte (its own task waits for its first read)
        for client in idle:
            assert wait_until(client.is_closed, what="idle connection closed")
        figures = stats(proc.client())
        assert figures["idle_kicks"] == "2"
        names = list(figures)
        assert names.index("idle_kicks") == names.index("store_no_memory") + 1  # as memcached


def test_general_stats_have_memcacheds_fields_in_its_order(
    tmp_path: Path, memcached: MemcachedProcess
) -> None:
    """Every field the two share comes in the same order, and the fields monitoring reads
    (memcached_exporter, Datadog) are all there, with their idle values."""
    wanted = {
        "accepting_conns": "1",
        "listen_disabled_num": "0",
        "time_in_listen_disabled_us": "0",
        "conn_yields": "0",
        "store_no_memory": "0",
        "reclaimed": "0",
    }
    with PetracacheProcess(tmp_path) as proc:
        ours = list(stats(proc.client()).items())
    theirs = [name for name, _ in stats(memcached.client()).items()]
    names = [name for name, _ in ours]
    shared = [name for name in names if name in theirs]
    assert shared == [name for name in theirs if name in names]
    assert {name: value for name, value in ours if name in wanted} == wanted
    assert "idle_kicks" not in names  # as memcached: only with an idle timeout
