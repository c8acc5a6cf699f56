"""Command line: ``petracache [CONFIG.toml] [--config FILE] [flags]``.

Flags mirror memcached's for the common options and win over the TOML file and the
environment. Any configuration or start-up problem ends the process with one clear line on
stderr and exit status 2 (configuration) or 1 (start-up), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import pydantic
import trio

from petracache import __version__
from petracache.storage.errors import StorageError


def parse_size(text: str) -> int:
    """memcached-style sizes: ``1048576``, ``1024k``, ``1m``, ``2g``."""
    text = text.strip().lower()
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    multiplier = 1
    if text and text[-1] in units:
        multiplier = units[text[-1]]
        text = text[:-1]
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}") from None
    return value * multiplier


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="petracache",
        description="A persistent, memcached-compatible cache server on RocksDB.",
    )
    parser.add_argument("config_file", nargs="?", help="TOML configuration file")
    parser.add_argument("--config", dest="config_flag", help="TOML configuration file")
    parser.add_argument("-l", "--listen", help="listen host (memcached -l)")
    parser.add_argument("-p", "--port", type=int, help="listen TCP port (memcached -p)")
    parser.add_argument("-c", "--max-connections", type=int, help="max simultaneous connections")
    parser.add_argument(
        "-I", "--max-item-size", type=parse_size, help="item size limit, e.g. 1m (memcached -I)"
    )
    parser.add_argument("--db-path", help="RocksDB data directory")
    parser.add_argument("--durability", choices=["none", "wal", "fsync"])
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--version", action="version", version=f"petracache {__version__}")
    return parser


def _overrides(args: argparse.Namespace, settings_listen: str | None) -> dict[str, Any]:
    server: dict[str, Any] = {}
    storage: dict[str, Any] = {}
    if args.listen is not None or args.port is not None:
        base_host, _, base_port = (settings_listen or "127.0.0.1:11211").rpartition(":")
        host = args.listen if args.listen is not None else base_host
        port = args.port if args.port is not None else base_port
        server["listen_addr"] = f"{host}:{port}"
    if args.max_connections is not None:
        server["max_connections"] = args.max_connections
    if args.max_item_size is not None:
        server["max_item_size"] = args.max_item_size
    if args.log_level is not None:
        server["log_level"] = args.log_level
    if args.db_path is not None:
        storage["db_path"] = args.db_path
    if args.durability is not None:
        storage["durability"] = args.durability
    out: dict[str, Any] = {}
    if server:
        out["server"] = server
    if storage:
        out["storage"] = storage
    return out


def _describe(error: pydantic.ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "configuration"
    return f"invalid configuration: {where}: {first['msg']}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``petracache`` console script."""
    from petracache.app import run
    from petracache.config import load_settings

    args = build_parser().parse_args(argv)
    config_file = args.config_flag or args.config_file
    try:
        base = load_settings(config_file)
        overrides = _overrides(args, base.server.listen_addr)
        settings = load_settings(config_file, **_merge(base, overrides)) if overrides else base
    except FileNotFoundError as exc:
        print(f"petracache: {exc}", file=sys.stderr)
        return 2
    except pydantic.ValidationError as exc:
        print(f"petracache: {_describe(exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:  # TOML syntax errors
        print(f"petracache: invalid configuration file: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.server.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("petracache").info(
        "starting petracache %s with %s", __version__, settings.model_dump()
    )
    try:
        trio.run(run, settings)
    except StorageError as exc:
        print(f"petracache: storage.db_path: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"petracache: server.listen_addr: cannot listen: {exc.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def _merge(base: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """Combine flag overrides with the rest of each section they touch."""
    merged: dict[str, Any] = {}
    for section, values in overrides.items():
        current = getattr(base, section).model_dump()
        current.update(values)
        merged[section] = current
    return merged
