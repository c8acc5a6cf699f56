"""``petracache-cluster run`` as a supervisor, with real instances: a kill -9'd instance is
named, restarted with its data while the other keeps running; a config file reaches every
instance; an instance that keeps crashing makes the cluster give up with status 1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from petracache.cluster import cli as cluster
from tests.harness import RawClient, free_port_pair, wait_for_port, wait_until

pytestmark = pytest.mark.integration


def _stats(port: int, group: bytes = b"") -> dict[str, str]:
    client = RawClient(port)
    client.send(b"stats " + group + b"\r\n")
    out: dict[str, str] = {}
    while (line := client.read_line().decode().strip()) != "END":
        _, name, value = line.split(" ", 2)
        out[name] = value
    client.close()
    return out


@contextmanager
def run_cluster(tmp_path: Path, base: int, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "petracache.cluster", "run", "-n", "2"]
    command += ["--base-port", str(base), "--admin-base-port", "0", "--data-dir", str(tmp_path)]
    env = {**os.environ, "PETRACACHE_METRICS__LISTEN_ADDR": "127.0.0.1:0"}
    with (tmp_path / "cluster.log").open("wb") as log:
        proc = subprocess.Popen(
            [*command, *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_kill_9_is_named_and_restarted_with_its_data(tmp_path: Path) -> None:
    base = free_port_pair()
    config = tmp_path / "petracache.toml"
    config.write_text("[storage]\nmax_warm_downtime = 600\n")
    log = tmp_path / "cluster.log"
    with run_cluster(tmp_path, base, "--config", str(config)) as proc:
        for port in (base, base + 1):
            wait_for_port(port)
        assert _stats(base + 1, b"settings")["max_warm_downtime"] == "600"  # the config file
        client = RawClient(base + 1)
        assert client.call(b"set kept 0 0 4\r\ndata\r\n") == b"STORED\r\n"
        client.close()
        survivor = _stats(base)["pid"]
        os.kill(int(_stats(base + 1)["pid"]), signal.SIGKILL)
        wait_until(lambda: "pc-1 killed by SIGKILL; restarting it" in log.read_text(), 30)
        wait_until(lambda: "restarting pc-1" in log.read_text(), 30)
        wait_for_port(base + 1)
        client = RawClient(base + 1)
        client.send(b"get kept\r\n")
        assert client.read_until(b"END\r\n") == b"VALUE kept 0 4\r\ndata\r\nEND\r\n"
        client.close()
        assert _stats(base)["pid"] == survivor  # the healthy one kept running
        text = log.read_text()
        assert "[pc-0] " in text
        assert "[pc-1] " in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_a_crash_loop_makes_the_cluster_give_up(tmp_path: Path) -> None:
    base = free_port_pair()
    with socket.socket() as squatter:  # pc-0 cannot bind its port: it exits at once
        squatter.bind(("127.0.0.1", base))
        squatter.listen()
        with run_cluster(tmp_path, base, "--max-restarts", "1", "--backoff", "0.1") as proc:
            assert proc.wait(60) == 1
    text = (tmp_path / "cluster.log").read_text()
    assert "pc-0 exited with status" in text
    assert "giving up" in text


def test_router_port_without_nutcracker_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(cluster, "find_nutcracker", lambda: None)
    status = cluster.main(["run", "--router-port", "22121", "--data-dir", str(tmp_path / "d")])
    assert status == 2
    assert "--router-port needs nutcracker" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # nothing was started
