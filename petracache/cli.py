"""Command line: ``petracache [CONFIG.toml] [--config FILE] [flags]``.

Flags mirror memcached's for the common options and win over the TOML file and the
environment. Any configuration or start-up problem ends the process with one clear line on
stderr (``petracache: <option>: <problem>``) and exit status 2 (configuration) or 1
(start-up: the port is taken, the database is locked...), never a traceback.

memcached's flags that unit files and containers pass are accepted where they mean something
here (``-m`` is the disk bound in MiB, ``-P`` a pid file, ``-s``/``-a`` a unix socket,
``-F``/``-A``/``-B``/``-R``/``-C``/``-M``/``-S`` settings, ``-o idle_timeout=N``), ignored
where the concept does not exist (``-t`` threads, ``-U 0``, ``-u`` when not root) or where it
asks for what is always so here (``-e``, the ``-o`` options that restate memcached 1.6's
defaults: a warning each), and refused with a line saying why otherwise (``-d``, ``-U`` other
than 0, an ``-o`` option we cannot honour). docs/compatibility.md has the table.

Start-up cost: only argparse and the settings model are imported before the arguments are
parsed, so ``--help`` and a bad flag answer without loading trio, RocksDB or the admin stack.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from typing import Any, NoReturn

from petracache import __version__
from petracache.config import (
    ConfigError,
    MetricsSettings,
    ServerSettings,
    Settings,
    StorageSettings,
    parse_size,
)
from petracache.config_loading import apply_overrides, load_settings
from petracache.memcached_flags import (
    add_memcached_flags,
    compat_notes,
    compat_warnings,
    memcached_overrides,
    sasl_overrides,
)
from petracache.startup import (
    fit_connections,
    log_configuration,
    raise_fd_limit,
    setup_logging,
    startup_line,
)

__all__ = ["configure", "main", "parse_size"]

log = logging.getLogger("petracache")

EXIT_CONFIG = 2
EXIT_STARTUP = 1

# (flags, section, option, argparse keyword arguments); sizes stay strings: the model parses
# their suffixes, so a flag, a TOML value and an environment variable read the same way.
_FLAGS: list[tuple[tuple[str, ...], str, str, dict[str, Any]]] = [
    (("-c", "--max-connections"), "server", "max_connections", {"type": int}),
    (("-I", "--max-item-size"), "server", "max_item_size", {}),
    (("--idle-timeout",), "server", "idle_timeout", {"type": float}),
    (("--shutdown-grace",), "server", "shutdown_grace", {"type": float}),
    (
        ("--log-level",),
        "server",
        "log_level",
        {"type": str.upper, "choices": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]},
    ),
    (("--log-format",), "server", "log_format", {"type": str.lower, "choices": ["text", "json"]}),
    (("--db-path",), "storage", "db_path", {}),
    (("--block-cache-size",), "storage", "block_cache_size", {}),
    (("--hot-cache-size",), "storage", "hot_cache_size", {}),
    (("--max-disk-bytes",), "storage", "max_disk_bytes", {}),
    (
        ("--durability",),
        "storage",
        "durability",
        {"type": str.lower, "choices": ["none", "wal", "fsync"]},
    ),
    (("--metrics-addr",), "metrics", "listen_addr", {}),
    (("-Y", "--auth-file"), "server", "auth_file", {}),
    (("--tls-cert-file",), "server", "tls_cert_file", {}),
    (("--tls-key-file",), "server", "tls_key_file", {}),
    (("--tls-ca-file",), "server", "tls_ca_file", {}),
    (("-P", "--pid-file"), "server", "pid_file", {}),
    (("-F", "--disable-flush-all"), "server", "disable_flush_all", {"action": "store_const"}),
    (("-A", "--enable-shutdown"), "server", "enable_shutdown", {"action": "store_const"}),
    (("-s", "--unix-socket"), "server", "unix_socket", {"metavar": "PATH"}),
    (("-a", "--unix-mask"), "server", "unix_mask", {}),
    (
        ("-B", "--protocol"),
        "server",
        "binding_protocol",
        {"type": str.lower, "choices": ["auto", "ascii", "binary"]},
    ),
    (("-R", "--max-reqs-per-event"), "server", "reqs_per_event", {"type": int, "metavar": "N"}),
    (
        ("-C", "--disable-cas"),
        "server",
        "cas_enabled",
        {"action": "store_const", "const": False},
    ),
    (("-S", "--enable-sasl"), "server", "sasl", {"action": "store_const"}),
    (
        ("-M", "--disable-evictions"),
        "storage",
        "eviction",
        {"action": "store_const", "const": "none"},
    ),
]
_SECTIONS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "storage": StorageSettings,
    "metrics": MetricsSettings,
}


# memcached's -o options we honour: name -> (section, option).
class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"petracache: {message} (see --help)\n")


def _default(section: str, option: str) -> Any:
    return _SECTIONS[section].model_fields[option].default


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; ``--help`` lists every flag, the option it sets and its default."""
    parser = _Parser(
        prog="petracache",
        description="A persistent, memcached-compatible cache server on RocksDB.",
        epilog="Every option can also be set in the TOML file or as "
        "PETRACACHE_<SECTION>__<OPTION> in the environment; flags win over both. "
        "Sizes take k, m and g suffixes (512k, 2m, 1g).",
    )
    parser.add_argument("config_file", nargs="?", help="TOML configuration file")
    parser.add_argument("--config", dest="config_flag", metavar="FILE", help="TOML file")
    parser.add_argument("-l", "--listen", metavar="HOST", help="listen host (server.listen_addr)")
    parser.add_argument("-p", "--port", type=int, help="listen TCP port (server.listen_addr)")
    for flags, section, option, kwargs in _FLAGS:
        default = _default(section, option)
        extra = dict(kwargs)
        sets = f"sets {section}.{option}"
        if extra.get("action") == "store_const":
            extra.setdefault("const", True)
            sets += f" to {extra['const']!r}"
        elif "choices" not in extra:  # argparse lists the choices itself
            extra.setdefault("metavar", option.rsplit("_", 1)[-1].upper())
        parser.add_argument(
            *flags, dest=f"{section}.{option}", help=f"{sets} (default: {default!r})", **extra
        )
    parser.add_argument(
        "--no-metrics",
        dest="metrics.enabled",
        action="store_const",
        const=False,
        help="disable the admin sidecar (metrics.enabled = false)",
    )
    add_memcached_flags(parser)
    parser.add_argument("--version", action="version", version=f"petracache {__version__}")
    return parser


def _overrides(args: argparse.Namespace, settings: Settings) -> dict[str, dict[str, Any]]:
    """{section: {option: value}} for every flag given (explicit flags win over -o and -m)."""
    out = memcached_overrides(args)
    for dest, value in vars(args).items():
        if "." in dest and value is not None:
            section, option = dest.split(".", 1)
            out.setdefault(section, {})[option] = value
    sasl_overrides(args, settings, out)
    if args.listen is not None or args.port is not None:
        base_host, _, base_port = settings.server.listen_addr.rpartition(":")
        host = args.listen if args.listen is not None else base_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        port = args.port if args.port is not None else base_port
        out.setdefault("server", {})["listen_addr"] = f"{host}:{port}"
    return out


def settings_from(args: argparse.Namespace) -> Settings:
    """The effective settings for parsed arguments (file, environment, flags).

    Raises:
        ConfigError: a bad option anywhere, naming the layer it came from.
    """
    settings = load_settings(args.config_flag or args.config_file)
    return apply_overrides(settings, _overrides(args, settings))


def configure(argv: Sequence[str] | None = None) -> Settings:
    """Parse the command line and build the effective settings.

    Raises:
        ConfigError: a bad option anywhere (file, environment, flags).
    """
    return settings_from(build_parser().parse_args(argv))


def drop_privileges(user: str | None) -> None:
    """memcached's ``-u``: switch to ``user`` when started as root; ignored otherwise.

    Raises:
        ConfigError: the user does not exist.
    """
    if user is None or os.geteuid() != 0:
        return
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"-u {user}: no such user") from None
    if entry.pw_uid == 0:
        return
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def check_db_path(path: str) -> None:
    """Fail early, with the option's name, when the data directory cannot be written.

    The directories it creates survive a power cut (``storage.dirs``).
    """
    from petracache.storage.dirs import makedirs_durable

    try:
        makedirs_durable(path)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"storage.db_path: {path!r} is not writable: {exc.strerror}") from None


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


def write_pid_file(path: str) -> None:
    """memcached's ``-P``: the process id and a newline.

    Raises:
        ConfigError: the file cannot be written (naming the option).
    """
    try:
        with open(path, "w", encoding="ascii") as out:
            out.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise ConfigError(f"server.pid_file: cannot write {path!r}: {exc.strerror}") from None


def remove_pid_file(path: str) -> None:
    """Remove the pid file at exit, as memcached does; a file already gone is fine."""
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``petracache`` console script."""
    from petracache.tools import run_tool  # migrate, backup, restore

    status = run_tool(sys.argv[1:] if argv is None else argv)
    if status is not None:
        return status
    try:
        args = build_parser().parse_args(argv)
        settings = settings_from(args)
        drop_privileges(args.user)
        check_db_path(settings.storage.db_path)
        nofile = raise_fd_limit()
        settings, fd_warning = fit_connections(settings, nofile)
        if settings.server.pid_file:
            write_pid_file(settings.server.pid_file)
    except ConfigError as exc:
        print(f"petracache: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(settings.server.log_level, settings.server.log_format)
    log.info("%s", startup_line(settings, __version__, os.getpid(), nofile))
    log_configuration(log, settings)
    if fd_warning:
        log.warning("%s", fd_warning)
    for note in compat_notes(args, settings):
        log.info("%s", note)
    for warning in compat_warnings(args, settings):
        log.warning("%s", warning)
    try:
        return serve(settings)
    finally:
        remove_pid_file(settings.server.pid_file)


def serve(settings: Settings) -> int:
    """Run the server until it stops; start-up failures become one line and exit status 1."""
    # Imported here, after the arguments are parsed: --help and bad flags stay fast.
    import trio

    from petracache.app import StartupError, run
    from petracache.storage.errors import StorageError

    # app.run handles SIGTERM and SIGUSR1 itself while it runs; outside it (trio starting, or
    # the database already closed and the process exiting), either means a clean exit 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGUSR1, _exit_cleanly)
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
