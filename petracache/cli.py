"""Command line: ``petracache [CONFIG.toml] [--config FILE] [flags]``.

Flags mirror memcached's for the common options and win over the TOML file and the
environment. Any configuration or start-up problem ends the process with one clear line on
stderr (``petracache: <option>: <problem>``) and exit status 2 (configuration) or 1
(start-up: the port is taken, the database is locked...), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import sys
import tempfile
from collections.abc import Sequence
from typing import Any, NoReturn

import trio

from petracache import __version__
from petracache.app import StartupError, run
from petracache.config import ConfigError, Settings, apply_overrides, load_settings, loggable
from petracache.storage.errors import StorageError
from petracache.tools import run_tool

log = logging.getLogger("petracache")

EXIT_CONFIG = 2
EXIT_STARTUP = 1
_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """memcached-style sizes: ``1048576``, ``1024k``, ``1m``, ``2g``."""
    raw = text.strip().lower()
    multiplier = _UNITS.get(raw[-1:], 1)
    digits = raw[:-1] if raw[-1:] in _UNITS else raw
    try:
        value = int(digits)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r} (e.g. 1048576, 512k, 1m)"
        ) from None
    return value * multiplier


# (flags, dest, section, option, argparse keyword arguments)
_FLAGS: list[tuple[tuple[str, ...], str, str, dict[str, Any]]] = [
    (("-c", "--max-connections"), "server", "max_connections", {"type": int}),
    (("-I", "--max-item-size"), "server", "max_item_size", {"type": parse_size}),
    (("--idle-timeout",), "server", "idle_timeout", {"type": float}),
    (("--shutdown-grace",), "server", "shutdown_grace", {"type": float}),
    (("--log-level",), "server", "log_level", {"type": str.upper}),
    (("--log-format",), "server", "log_format", {"choices": ["text", "json"]}),
    (("--db-path",), "storage", "db_path", {}),
    (("--block-cache-size",), "storage", "block_cache_size", {"type": parse_size}),
    (("--durability",), "storage", "durability", {"choices": ["none", "wal", "fsync"]}),
    (("--metrics-addr",), "metrics", "listen_addr", {}),
    (("-Y", "--auth-file"), "server", "auth_file", {}),
    (("--tls-cert-file",), "server", "tls_cert_file", {}),
    (("--tls-key-file",), "server", "tls_key_file", {}),
    (("--tls-ca-file",), "server", "tls_ca_file", {}),
]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"petracache: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; ``--help`` lists every flag and the option it sets."""
    parser = _Parser(
        prog="petracache",
        description="A persistent, memcached-compatible cache server on RocksDB.",
        epilog="Every option can also be set in the TOML file or as "
        "PETRACACHE_<SECTION>__<OPTION> in the environment; flags win over both.",
    )
    parser.add_argument("config_file", nargs="?", help="TOML configuration file")
    parser.add_argument("--config", dest="config_flag", metavar="FILE", help="TOML file")
    parser.add_argument("-l", "--listen", metavar="HOST", help="listen host (server.listen_addr)")
    parser.add_argument("-p", "--port", type=int, help="listen TCP port (server.listen_addr)")
    for flags, section, option, kwargs in _FLAGS:
        parser.add_argument(
            *flags,
            dest=f"{section}.{option}",
            metavar=option.rsplit("_", 1)[-1].upper(),
            help=f"sets {section}.{option}",
            **kwargs,
        )
    parser.add_argument(
        "--no-metrics",
        dest="metrics.enabled",
        action="store_const",
        const=False,
        help="disable the admin sidecar (metrics.enabled = false)",
    )
    parser.add_argument("--version", action="version", version=f"petracache {__version__}")
    return parser


def _overrides(args: argparse.Namespace, settings: Settings) -> dict[str, dict[str, Any]]:
    """{section: {option: value}} for every flag given."""
    out: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if "." in dest and value is not None:
            section, option = dest.split(".", 1)
            out.setdefault(section, {})[option] = value
    if args.listen is not None or args.port is not None:
        base_host, _, base_port = settings.server.listen_addr.rpartition(":")
        host = args.listen if args.listen is not None else base_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        port = args.port if args.port is not None else base_port
        out.setdefault("server", {})["listen_addr"] = f"{host}:{port}"
    return out


def configure(argv: Sequence[str] | None = None) -> Settings:
    """Parse the command line and build the effective settings.

    Raises:
        ConfigError: a bad option anywhere (file, environment, flags).
    """
    args = build_parser().parse_args(argv)
    settings = load_settings(args.config_flag or args.config_file)
    return apply_overrides(settings, _overrides(args, settings))


def check_db_path(path: str) -> None:
    """Fail early, with the option's name, when the data directory cannot be written."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"storage.db_path: {path!r} is not writable: {exc.strerror}") from None


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (10,000 connections need the fds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str, fmt: str) -> None:
    """Configure the root logger once: level and text/json format."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own start/stop chatter is noise here; "admin listening on" says it all.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def _exit_cleanly(signum: int, frame: object) -> None:
    """SIGTERM while app.run is not listening: before it opened anything or after it closed
    everything, so there is nothing to clean up. Raising instead could land inside trio's
    own teardown and turn a clean stop into an internal error."""
    os._exit(0)


def _root(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member exception groups from nurseries."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``petracache`` console script."""
    status = run_tool(sys.argv[1:] if argv is None else argv)  # migrate, backup, restore
    if status is not None:
        return status
    try:
        settings = configure(argv)
        check_db_path(settings.storage.db_path)
    except ConfigError as exc:
        print(f"petracache: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(settings.server.log_level, settings.server.log_format)
    nofile = raise_fd_limit()
    log.info(
        "starting petracache %s (pid %d, fd limit %d) with %s",
        __version__,
        os.getpid(),
        nofile,
        loggable(settings),
    )
    # app.run handles SIGTERM itself while it runs; outside it (trio starting, or the
    # database already closed and the process exiting), SIGTERM means a clean exit 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        trio.run(run, settings)
    except BaseException as exc:
        root = _root(exc)
        if isinstance(root, StorageError):
            message = f"storage.db_path: {root}"
        elif isinstance(root, StartupError):
            message = str(root)
        elif isinstance(root, KeyboardInterrupt):
            return 0
        else:
            raise
        print(f"petracache: {message}", file=sys.stderr)
        return EXIT_STARTUP
    return 0
