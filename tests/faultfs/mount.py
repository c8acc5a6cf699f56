"""``FaultFS``: mount the fault-injecting file system for a test, command it, unmount it.

``with FaultFS(tmp_path / "fs") as fs:`` mounts it at ``fs.path`` (the test is skipped, with
the reason, where FUSE cannot mount); ``fs.fail("*.log", "fsync", "EIO")`` makes the next
fsync of a WAL file fail; ``fs.crash()``, once every process using it is dead, loses
everything not made durable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faultfs import control

REPO = Path(__file__).resolve().parents[2]
MOUNT_TIMEOUT = 15.0


def unavailable() -> str | None:
    """Why FUSE cannot be mounted here (None when it can)."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if shutil.which("fusermount3") is None:
        return "no fusermount3 (Debian package fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:  # mfusepy raises OSError without libfuse
        return f"mfusepy cannot load libfuse: {exc}"
    return None


class FaultFS:
    """The file system of ``tests.faultfs`` in its own process, mounted at ``workdir/mnt``.

    Args:
        workdir: holds the mount point, the backing directories and the control socket.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.path = self.workdir / "mnt"
        self.backing = self.workdir / "backing"
        self.socket = self.workdir / "control.sock"
        self.log_path = self.workdir / "faultfs.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FaultFS:
        reason = unavailable()
        if reason is not None:
            pytest.skip(f"FUSE is not available: {reason}")
        self.path.mkdir(parents=True, exist_ok=True)
        self.backing.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(REPO)}  # tests.faultfs, from this checkout
        env.pop("PYTHONSAFEPATH", None)
        args = (str(self.backing), str(self.path), str(self.socket))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.faultfs", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not (os.path.ismount(self.path) and self.socket.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._stop()
                pytest.skip(f"FUSE cannot mount here: {self.log().strip()[-500:]}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.proc is None:
            return
        if os.path.ismount(self.path):
            subprocess.run(["fusermount3", "-u", "-z", str(self.path)], check=False)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def command(self, op: str, **args: Any) -> dict[str, Any]:
        return control.call(str(self.socket), {"op": op, **args})

    def fail(self, glob: str, kind: str = "any", errno: str = "EIO", times: int | None = 1) -> None:
        """Make the next ``times`` (None: every, until ``clear``) ``kind`` operations
        (write, fsync, create, any) on paths matching ``glob`` fail with ``errno``.

        ``glob`` matches the path inside the mount, from its root: ``*.log``,
        ``*/MANIFEST-*``, ``/db/CURRENT``.
        """
        self.command("fail", glob=glob, kind=kind, errno=errno, times=times)

    def clear(self) -> None:
        """Remove every fault rule: the disk works again."""
        self.command("clear")

    def stats(self) -> dict[str, Any]:
        """Counts: writes, fsyncs, dir_fsyncs, injected, unsynced_pages, open_files, rules."""
        return self.command("stats")

    def crash(self, wait: float = 10.0) -> dict[str, Any]:
        """Power cut: lose every write and name not made durable. Every process using the
        file system must be dead first (their files are waited for, up to ``wait`` s).

        Returns:
            ``lost_pages``, and the ``files`` and ``dirs`` that survived.
        """
        deadline = time.monotonic() + wait
        while self.stats()["open_files"] and time.monotonic() < deadline:
            time.sleep(0.02)  # the kernel releases a killed process's files shortly after
        return self.command("crash")
