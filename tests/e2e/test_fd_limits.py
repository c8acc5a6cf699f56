"""Descriptor limits under ``prlimit``: an explicit max_connections that cannot fit is
refused with one line (as memcached refuses it); the default is lowered with one warning;
the soft limit is raised to the hard one first."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import PetracacheProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) missing"),
]


def _run(tmp_path: Path, nofile: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = ["prlimit", f"--nofile={nofile}", sys.executable, "-m", "petracache"]
    command += ["-p", "0", "--db-path", str(tmp_path / "db"), *args]
    env = {**os.environ, "PETRACACHE_METRICS__LISTEN_ADDR": "127.0.0.1:0"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


def test_explicit_max_connections_over_the_limit_is_refused(tmp_path: Path) -> None:
    done = _run(tmp_path, "512:512", "-c", "1000")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("petracache: server.max_connections 1000 needs 1256")
    assert "the limit is 512" in lines[0]


def test_default_max_connections_is_lowered_with_one_warning(tmp_path: Path) -> None:
    server = PetracacheProcess(tmp_path / "pc")
    server.command = lambda: ["prlimit", "--nofile=400:400", *PetracacheProcess.command(server)]  # type: ignore[method-assign]
    with server:
        warnings = [line for line in server.log().splitlines() if " WARNING " in line]
        assert len(warnings) == 1
        assert "max_connections lowered from its default 10000 to 144" in warnings[0]
        client = server.client()
        client.send(b"stats settings\r\n")
        assert b"STAT maxconns 144\r\n" in client.read_until(b"END\r\n")


def test_soft_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    server = PetracacheProcess(tmp_path / "pc")
    server.command = lambda: ["prlimit", "--nofile=300:20000", *PetracacheProcess.command(server)]  # type: ignore[method-assign]
    with server:
        assert "fd limit 20000" in server.log()
        assert " WARNING " not in server.log()
