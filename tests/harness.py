"""Real processes for end-to-end tests: petracache, memcached, and a raw socket client.

Everything here talks to real servers over TCP on loopback (or a unix socket, for servers
started with ``-s``: an address is a port number or a socket path); nothing is mocked. A server
process keeps its own time, so no mock clock reaches it: a test that waits for its
background work polls for the outcome with ``wait_until`` (bounded, never a fixed sleep).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

LISTEN_RE = re.compile(rb"petracache listening on ([\d.:\[\]a-f]+):(\d+)")
UNIX_LISTEN_RE = re.compile(rb"petracache listening on unix:(\S+)")
ADMIN_RE = re.compile(r"admin listening on ([\d.:\[\]a-f]+):(\d+)")
START_TIMEOUT = 20.0
WAIT = 20.0  # how long a background condition may take on a loaded 2-core CI machine

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None], timeout: float = WAIT, interval: float = 0.05, what: str = ""
) -> T:
    """Call ``condition`` every ``interval`` seconds until it returns something truthy, and
    return that. The wait ends as soon as the condition holds; ``timeout`` only decides
    when to give up.

    Raises:
        TimeoutError: not reached within ``timeout`` seconds (names ``what`` and the last
            value).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not within {timeout} s: {what or condition} (last: {value!r})")
        time.sleep(interval)


def unread_bytes(sock: socket.socket) -> int:
    """Bytes waiting in ``sock``'s receive queue (``FIONREAD``): what the server has sent
    that the test has not read."""
    buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int.from_bytes(buf, "little")


def free_port() -> int:
    """A TCP port that was free a moment ago (for servers that cannot report their own)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair() -> int:
    """A port ``p`` with ``p + 1`` free too (for a cluster's consecutive data ports)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no pair of free ports")


Address = int | str  # a loopback TCP port, or a unix socket's path


def connect(address: Address, timeout: float | None = 5.0) -> socket.socket:
    """A connected socket to a loopback TCP port (TCP_NODELAY set) or a unix socket path."""
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        return sock
    sock = socket.create_connection(("127.0.0.1", address), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def outcome(address: Address, payload: bytes, wait: float = 1.0) -> tuple[bytes, bool]:
    """Send ``payload`` on a fresh connection; what came back and whether it was closed."""
    with connect(address) as sock:
        sock.sendall(payload)
        sock.settimeout(wait)
        out = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return out, False
            except ConnectionResetError:
                return out, True
            if not chunk:
                return out, True
            out += chunk
        return out, False


def accepts(port: Address) -> bool:
    """Whether something accepts a connection on ``port`` (a loopback port or a socket)."""
    try:
        with connect(port, timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(port: Address, timeout: float = START_TIMEOUT) -> None:
    wait_until(lambda: accepts(port), timeout, 0.02, f"something listening on {port}")


class PetracacheProcess:
    """A real ``python -m petracache`` process on an OS-assigned port and its own data dir.

    Args:
        workdir: directory for the database (``workdir/db``) and the log file.
        args: extra command-line flags.
        env: extra environment variables.
        config: TOML text written to ``workdir/config.toml`` and passed as the config file.
    """

    def __init__(
        self,
        workdir: Path,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        config: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.workdir / "db"
        self.args = list(args)
        self.env = dict(env or {})
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.unix_path = ""  # with -s: the socket the server listens on instead of a port
        self.log_path = self.workdir / "server.log"
        self.starts = 0

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "petracache"]
        if self.config is not None:
            path = self.workdir / "config.toml"
            path.write_text(self.config)
            cmd.append(str(path))
        has_port = any(a in ("-p", "--port", "-s", "--unix-socket") for a in self.args)
        if not has_port and "PETRACACHE_LISTEN_ADDR" not in self.env:
            cmd += ["-p", "0"]
        if not any(a == "--db-path" for a in self.args) and "PETRACACHE_DB_PATH" not in self.env:
            cmd += ["--db-path", str(self.db_path)]
        return cmd + self.args

    def start(self, timeout: float = START_TIMEOUT) -> PetracacheProcess:
        env = os.environ.copy()
        env.setdefault("PETRACACHE_METRICS__LISTEN_ADDR", "127.0.0.1:0")
        env.update(self.env)
        self.starts += 1
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[offset:]
            match = LISTEN_RE.search(text)
            if match:
                self.port = int(match.group(2))
                return self
            unix = UNIX_LISTEN_RE.search(text)
            if unix:
                self.unix_path = unix.group(1).decode()
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"petracache exited {self.proc.returncode}:\n{text.decode()}")
            time.sleep(0.02)
        self.proc.kill()
        raise TimeoutError(f"petracache did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def admin_url(self) -> str:
        """Base URL of the admin sidecar (its port is logged as "admin listening on H:P")."""
        matches = ADMIN_RE.findall(self.log())
        if not matches:
            raise RuntimeError(f"no admin listener in the log:\n{self.log()}")
        host, port = matches[-1]
        return f"http://{host}:{port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        """SIGKILL: no clean shutdown at all."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def restart(self, sig: int = signal.SIGTERM) -> PetracacheProcess:
        self.stop(sig)
        return self.start()

    @property
    def address(self) -> Address:
        """Where clients connect: the unix socket's path when it has one, else the port."""
        return self.unix_path or self.port

    def client(self, timeout: float = 5.0) -> RawClient:
        return RawClient(self.address, timeout=timeout)

    def __enter__(self) -> PetracacheProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stop(timeout=15)


class MemcachedProcess:
    """Debian's real memcached 1.6 on a free loopback port (the reference server).

    Args:
        args: extra flags.
        unix_path: serve on this unix socket instead (``-s``); its directory must be
            writable by the user memcached runs as (``nobody`` when the tests run as root).
    """

    def __init__(self, args: Sequence[str] = (), unix_path: str = "") -> None:
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        if not Path(binary).exists():
            raise RuntimeError("memcached is not installed (apt-get install memcached)")
        self.port = 0 if unix_path else free_port()
        self.unix_path = unix_path
        listen = ["-s", unix_path] if unix_path else ["-l", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(
            [binary, "-U", "0", *listen, "-t", "1", *args]
            + (["-u", "nobody"] if os.geteuid() == 0 else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.address)

    @property
    def address(self) -> Address:
        """Where clients connect: the unix socket's path, or the port."""
        return self.unix_path or self.port

    def client(self, timeout: float = 5.0) -> RawClient:
        return RawClient(self.address, timeout=timeout)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class RawClient:
    """A blocking raw-socket client that reads exactly the replies it expects."""

    def __init__(self, port: Address, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        if isinstance(port, str) or host == "127.0.0.1":
            self.sock = connect(port, timeout)
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_until(self, terminator: bytes) -> bytes:
        """Everything up to and including ``terminator``."""
        while terminator not in self.buf:
            self._fill()
        end = self.buf.index(terminator) + len(terminator)
        out, self.buf = self.buf[:end], self.buf[end:]
        return out

    def call(self, data: bytes, terminator: bytes = b"VERSION ") -> bytes:
        """Send ``data`` followed by ``version``; return every reply before the VERSION line.

        The trailing ``version`` acts as a fence: every reply to ``data`` precedes it.
        """
        self.send(data + b"version\r\n")
        out = self.read_until(terminator)
        self.read_line()  # rest of the VERSION line
        return out[: -len(terminator)]

    def is_closed(self, wait: float = 1.0) -> bool:
        """Whether the server has closed its end (reads EOF within ``wait``)."""
        self.sock.settimeout(wait)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


class NutcrackerProcess:
    """Debian's twemproxy (``nutcracker``) on a free port, with a generated pool config.

    Args:
        workdir: where the config and log files go.
        config: the YAML pool configuration; ``{listen}`` in it is replaced by the
            ``127.0.0.1:<port>`` the proxy listens on.
    """

    def __init__(self, workdir: Path, config: str) -> None:
        binary = shutil.which("nutcracker") or "/usr/sbin/nutcracker"
        if not Path(binary).exists():
            raise RuntimeError("nutcracker is not installed (apt-get install nutcracker)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.stats_port = free_port()
        self.conf = self.workdir / "nutcracker.yml"
        self.conf.write_text(config.replace("{listen}", f"127.0.0.1:{self.port}"))
        self.log_path = self.workdir / "nutcracker.log"
        self.proc = subprocess.Popen(
            [
                *(binary, "-c", str(self.conf), "-o", str(self.log_path), "-v", "6"),
                *("-s", str(self.stats_port), "-a", "127.0.0.1", "-i", "100"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def client(self, timeout: float = 5.0) -> RawClient:
        return RawClient(self.port, timeout=timeout)

    def stats(self) -> dict[str, object]:
        """The stats JSON nutcracker serves on its stats port (aggregated every 100 ms)."""
        with socket.create_connection(("127.0.0.1", self.stats_port), timeout=5) as s:
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        result: dict[str, object] = json.loads(data)
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class FencedClient:
    """One raw connection for differential tests: sends a payload cut into pieces, reads
    every reply up to a fence reply, and numbers CAS uniques in order of first appearance
    (so two servers' replies compare equal although their CAS counters differ).
    """

    def __init__(self, port: Address, name: str, timeout: float = 10.0) -> None:
        self.name = name
        self.ordinals: dict[int, int] = {}
        self.sock = connect(port, timeout)

    def send_in_pieces(self, payload: bytes, points: Iterable[int], pause: float = 0.0) -> None:
        """Send ``payload`` as separate sends cut at the sorted ``points``."""
        start = 0
        for point in [*points, len(payload)]:
            if point > start:
                self.sock.sendall(payload[start:point])
                if pause:
                    time.sleep(pause)
                start = point

    def read_to_fence(self, fence_reply: bytes) -> bytes:
        """Every byte received before ``fence_reply`` (which ends the stream so far)."""
        raw = b""
        while not raw.endswith(fence_reply):
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"{self.name} closed the connection; got {raw[-300:]!r}")
            raw += chunk
        return raw[: -len(fence_reply)]

    def ordinal(self, cas: int) -> int:
        """The position of ``cas`` among the CAS uniques seen so far (1-based)."""
        return self.ordinals.setdefault(cas, len(self.ordinals) + 1)

    def close(self) -> None:
        self.sock.close()


def cmds(lines: Iterable[str | bytes]) -> bytes:
    """Join request lines with CRLF."""
    return b"".join((x if isinstance(x, bytes) else x.encode()) + b"\r\n" for x in lines)
