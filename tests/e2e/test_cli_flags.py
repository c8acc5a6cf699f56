"""memcached's command-line flags and the configuration errors, through a real process.

The in-process twins are in tests/test_config.py; these check what only a process shows:
exit statuses, the one line on stderr, the pid file's lifetime, the log note for ``-m``, and
that ``--help`` answers without importing the server (trio, RocksDB, the admin stack).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import PetracacheProcess

pytestmark = pytest.mark.integration


def petracache(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("PETRACACHE_") and k != "MEMCACHED_SASL_PWDB"
    }
    return subprocess.run(
        [sys.executable, "-m", "petracache", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean | (env or {}),
    )


def test_help_shows_defaults_and_choices_without_loading_the_server() -> None:
    code = (
        "import sys\n"
        "from petracache.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('trio', 'rocksdict', 'starlette', 'uvicorn') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert "HEAVY []" in done.stdout
    assert "(default: 10000)" in done.stdout
    assert "{none,wal,fsync}" in done.stdout


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["-d"], {}, "petracache: -d: petracache does not daemonize"),
        (["-U", "11211"], {}, "petracache: -U 11211: UDP is not supported"),
        (["-o", "hashpower=20"], {}, "petracache: -o hashpower: not supported"),
        (["-R", "0"], {}, "petracache: server.reqs_per_event: "),
        (["-B", "text"], {}, "petracache: argument -B/--protocol: invalid choice: 'text'"),
        (["-a", "8"], {}, "petracache: server.unix_mask: expected octal permissions"),
        (["-S"], {}, "petracache: server.sasl: needs auth_file"),
        (["-I", "2g"], {}, "petracache: server.max_item_size: "),
        ([], {"PETRACACHE_SERVR__PORT": "1"}, "environment variable PETRACACHE_SERVR__PORT"),
        ([], {"PETRACACHE_STORAGE__DURABILITY": "disk"}, "(set in environment variable"),
    ],
)
def test_bad_flags_and_variables_are_one_line_and_exit_2(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    done = petracache(*args, env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("petracache: "), done.stderr
    assert expected in done.stderr
    assert done.stderr.count("\n") == 1


def test_pid_file_lives_as_long_as_the_process_and_m_is_logged(tmp_path: Path) -> None:
    pid_file = tmp_path / "petracache.pid"
    proc = PetracacheProcess(tmp_path / "pc", args=["-P", str(pid_file), "-m", "64", "-t", "4"])
    with proc:
        assert proc.proc is not None
        assert pid_file.read_text() == f"{proc.proc.pid}\n"
        assert "-m 64: memcached's memory limit is the disk bound here" in proc.log()
        assert "storage.max_disk_bytes = 67108864" in proc.log()
    assert not pid_file.exists()


def test_debian_default_command_line_starts(tmp_path: Path) -> None:
    """Debian's /etc/memcached.conf as its systemd wrapper passes it (-d dropped; -u left
    out: the test runs as whoever runs it), plus memcached 1.6's defaults restated with -o
    and a restartable cache's -e: accepted, with a warning each for what changes nothing."""
    pid_file = tmp_path / "memcached.pid"
    args = ["-m", "64", "-p", "0", "-l", "127.0.0.1", "-P", str(pid_file)]
    args += ["-o", "modern,maxconns_fast", "-e", str(tmp_path / "memory_file")]
    with PetracacheProcess(tmp_path / "pc", args=args) as proc:
        assert proc.client().call(b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
        log = proc.log()
        assert pid_file.exists()
    assert "WARNING petracache: -e " in log
    assert "ignored: items always survive a restart here" in log
    assert "WARNING petracache: -o modern: ignored: memcached 1.6's default" in log
    assert "WARNING petracache: -o maxconns_fast: ignored" in log
    assert not (tmp_path / "memory_file").exists()
