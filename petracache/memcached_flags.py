"""memcached's command-line flags that map onto no petracache option of their own: what
each means here, and the ones refused (docs/compatibility.md, "Command-line flags", has the
table; ``cli`` adds them to its parser and applies what they set).

``-m`` is the disk bound in MiB; ``-t``, ``-U 0`` and ``-u`` (when not root) are accepted
where the concept does not exist; ``-e`` and the ``-o`` options that restate memcached 1.6's
defaults are accepted with a warning each; ``-S`` takes its users from
``MEMCACHED_SASL_PWDB``; everything else (``-d``, ``-U`` other than 0, an ``-o`` option that
cannot be honoured) is refused with one line saying why.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from petracache.config import ConfigError, Settings

MIB = 1024 * 1024

_EXTENDED: dict[str, tuple[str, str]] = {
    "idle_timeout": ("server", "idle_timeout"),
    "item_size_max": ("server", "max_item_size"),
}
# memcached 1.6.18's -o options that change nothing in memcached 1.6.18 itself: they restate
# its defaults or it ignores them (memcached.c, the -o switch). A command line carrying them
# starts here too, with a warning; name -> the values that keep the default (None: any).
# Every other -o option (tuning a slab, LRU, hash table, extstore, TLS or proxy that does not
# exist here) is refused: docs/compatibility.md has the table.
_DEFAULTS_ONLY: dict[str, tuple[str, ...] | None] = {
    "modern": ("",),  # "currently no new defaults"
    "maxconns_fast": ("",),  # over max_connections: ERROR and close at once, always
    "lru_crawler": ("",),
    "lru_maintainer": ("",),
    "slab_reassign": ("",),
    "slab_automove": ("", "1"),
    "hash_algorithm": ("murmur3",),
    "inline_ascii_resp": ("",),
    "no_inline_ascii_resp": ("",),
    "resp_obj_mem_limit": None,  # "DEPRECATED: resp_obj_mem_limit no longer used"
}
SASL_PWDB_ENV = "MEMCACHED_SASL_PWDB"  # memcached -S: the user:password file (sasl_defs.c)


def add_memcached_flags(parser: argparse.ArgumentParser) -> None:
    """memcached's flags that map onto nothing above (see the module docstring)."""
    group = parser.add_argument_group("memcached compatibility")
    group.add_argument(
        "-m",
        "--memory-limit",
        type=int,
        metavar="MB",
        help="disk bound in MiB "
        "(sets storage.max_disk_bytes; memcached's memory limit, default: no bound)",
    )
    group.add_argument("-t", "--threads", type=int, metavar="N", help="accepted and ignored")
    group.add_argument("-U", "--udp-port", type=int, metavar="0", help="only 0 (no UDP)")
    group.add_argument("-u", "--user", metavar="USER", help="run as USER when started as root")
    group.add_argument("-d", "--daemon", action="store_true", help="refused: use a supervisor")
    group.add_argument(
        "-e",
        "--memory-file",
        metavar="FILE",
        help="accepted and ignored: items always survive a restart here (storage.db_path)",
    )
    group.add_argument(
        "-o",
        "--extended",
        action="append",
        default=[],
        metavar="OPTS",
        help="comma-separated memcached -o options: "
        + ", ".join(sorted(_EXTENDED))
        + "; accepted and ignored (memcached 1.6's defaults): "
        + ", ".join(sorted(_DEFAULTS_ONLY)),
    )


def memcached_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """{section: {option: value}} from memcached's flags; refuses what cannot be honoured.

    Raises:
        ConfigError: ``-d``, ``-U`` other than 0, an unknown or valueless ``-o`` option.
    """
    if args.daemon:
        raise ConfigError(
            "-d: petracache does not daemonize; run it under systemd, a container or "
            "petracache-cluster (it logs to stderr)"
        )
    if args.udp_port not in (None, 0):
        raise ConfigError(f"-U {args.udp_port}: UDP is not supported; use -U 0 or leave it out")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"-t {args.threads}: the thread count must be at least 1")
    out: dict[str, dict[str, Any]] = {}
    if args.memory_limit is not None:
        if args.memory_limit < 0:
            raise ConfigError(f"-m {args.memory_limit}: must be 0 or more MiB")
        out.setdefault("storage", {})["max_disk_bytes"] = args.memory_limit * MIB
    for name, sep, value in _extended(args):
        if name in _DEFAULTS_ONLY:
            allowed = _DEFAULTS_ONLY[name]
            if allowed is not None and value not in allowed:
                raise ConfigError(
                    f"-o {name}={value}: not supported by petracache (only memcached's default, "
                    + " or ".join(f"{name}={v}" if v else name for v in allowed)
                    + ", is accepted)"
                )
            continue
        if name not in _EXTENDED:
            raise ConfigError(
                f"-o {name}: not supported by petracache (supported: "
                + ", ".join(sorted(_EXTENDED))
                + "; accepted and ignored: "
                + ", ".join(sorted(_DEFAULTS_ONLY))
                + ")"
            )
        if not sep:
            raise ConfigError(f"-o {name}: needs a value ({name}=...)")
        section, option = _EXTENDED[name]
        out.setdefault(section, {})[option] = value
    return out


def _extended(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """The ``-o`` options given, as (name, "=" or "", value)."""
    return [item.partition("=") for text in args.extended for item in filter(None, text.split(","))]


def sasl_overrides(
    args: argparse.Namespace, settings: Settings, out: dict[str, dict[str, Any]]
) -> None:
    """memcached's ``-S``: binary only, users from ``MEMCACHED_SASL_PWDB`` unless an auth
    file is configured; ``-B ascii`` or ``-B auto`` with it is refused, as by memcached.

    Raises:
        ConfigError: ``-S`` with ``-B`` other than binary.
    """
    if not getattr(args, "server.sasl"):
        return
    protocol = getattr(args, "server.binding_protocol")
    if protocol not in (None, "binary"):
        raise ConfigError(
            f"-S with -B {protocol}: SASL serves the binary protocol only (memcached refuses "
            "this too); leave -B out or use -B binary"
        )
    server = out.setdefault("server", {})
    pwdb = os.environ.get(SASL_PWDB_ENV, "")
    if pwdb and not server.get("auth_file") and not settings.server.auth_file:
        server["auth_file"] = pwdb


def compat_notes(args: argparse.Namespace, settings: Settings) -> list[str]:
    """One log line per memcached flag whose meaning differs here."""
    notes = []
    if args.memory_limit is not None:
        notes.append(
            f"-m {args.memory_limit}: memcached's memory limit is the disk bound here "
            f"(storage.max_disk_bytes = {settings.storage.max_disk_bytes})"
        )
    if args.threads is not None:
        notes.append(f"-t {args.threads}: ignored (one event loop; RocksDB has its own threads)")
    return notes


def compat_warnings(args: argparse.Namespace, settings: Settings) -> list[str]:
    """One warning line per memcached flag accepted although it changes nothing here."""
    warnings = []
    if args.memory_file is not None:
        warnings.append(
            f"-e {args.memory_file}: ignored: items always survive a restart here "
            f"(storage.db_path = {settings.storage.db_path})"
        )
    for name, sep, value in _extended(args):
        if name in _DEFAULTS_ONLY:
            given = f"{name}{sep}{value}"
            warnings.append(f"-o {given}: ignored: memcached 1.6's default, nothing to change")
    if settings.storage.eviction == "none" and not settings.storage.max_disk_bytes:
        warnings.append(
            "storage.eviction = none (-M) without a disk bound (-m, storage.max_disk_bytes): "
            "nothing is ever refused"
        )
    return warnings
