"""What the process does before serving: descriptor limits, logging, the start-up line.

* Descriptors: every connection holds one, and RocksDB, the listeners, the admin sidecar and
  the epoll set need more (``RESERVED_FDS``). At start the soft ``RLIMIT_NOFILE`` is raised
  to the hard one. If that is still short of ``server.max_connections + RESERVED_FDS``:
  a ``max_connections`` other than the default is refused with one line, as memcached
  refuses a ``-c`` it cannot honour ("failed to set rlimit for open files"); the default
  (10,000, which a 1,024-descriptor container cannot hold) is lowered to what fits, with
  one warning line.
* Logging: text or JSON lines on stderr; JSON times are ISO 8601 in UTC, and a record's
  ``fields`` (``extra={"fields": {...}}``) become top-level keys, so the configuration
  logged at DEBUG is structured.
* The start-up line says, in one line, what an operator checks first: addresses, database
  and durability, bounds, descriptor limit. The full configuration follows at DEBUG.
"""

from __future__ import annotations

import datetime
import json
import logging
import resource
from typing import Any

from petracache.config import ConfigError, Settings
from petracache.config_loading import loggable
from petracache.rules.build import BUILD

# Descriptors besides connections: listeners, admin sockets, epoll, log files, RocksDB's
# WAL, LOCK, MANIFEST and SST files (RocksDB keeps SSTs open: a very large database needs
# a higher limit).
RESERVED_FDS = 256


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def fit_connections(settings: Settings, nofile: int) -> tuple[Settings, str | None]:
    """``settings`` with ``max_connections`` that fits the descriptor limit ``nofile``.

    Returns:
        The settings (changed only when the default was lowered) and the warning to log.

    Raises:
        ConfigError: a ``max_connections`` other than the default does not fit.
    """
    wanted = settings.server.max_connections
    room = nofile - RESERVED_FDS
    if wanted <= room:
        return settings, None
    default = type(settings.server).model_fields["max_connections"].default
    if wanted != default or room < 1:  # the operator asked for this number
        raise ConfigError(
            f"server.max_connections {wanted} needs {wanted + RESERVED_FDS} file descriptors;"
            f" the limit is {nofile} (raise it: ulimit -n, LimitNOFILE=, docker --ulimit"
            " nofile=; or lower max_connections)"
        )
    server = settings.server.model_copy(update={"max_connections": room})
    lowered = settings.model_copy(update={"server": server})
    return lowered, (
        f"max_connections lowered from its default {wanted} to {room}: the descriptor limit"
        f" is {nofile} (raise it with ulimit -n or LimitNOFILE= to allow more)"
    )


def _size(value: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= factor and value % (factor // 16 or 1) == 0:
            return f"{value / factor:g} {unit}"
    return f"{value} B"


def startup_line(settings: Settings, version: str, pid: int, nofile: int) -> str:
    """The one INFO line logged at start (the full configuration follows at DEBUG)."""
    server, storage = settings.server, settings.storage
    admin = settings.metrics.listen_addr if settings.metrics.enabled else "off"
    data = f"unix:{server.unix_socket}" if server.unix_socket else server.listen_addr
    disk = _size(storage.max_disk_bytes) if storage.max_disk_bytes else "none"
    warm = f"{storage.max_warm_downtime:g}s" if storage.max_warm_downtime else "always"
    return (
        f"petracache {version} starting (pid {pid}): data {data}, admin {admin},"
        f" db {storage.db_path} (durability {storage.durability}), disk bound {disk},"
        f" max_connections {server.max_connections}, item size {_size(server.max_item_size)},"
        f" warm restart within {warm}, fd limit {nofile}, build {BUILD}"
    )


def log_configuration(log: logging.Logger, settings: Settings) -> None:
    """The whole effective configuration at DEBUG (secrets masked), as structured fields."""
    config = loggable(settings)
    log.debug("configuration: %s", json.dumps(config), extra={"fields": {"config": config}})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ISO 8601 UTC time, level, logger, message, fields."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str, fmt: str) -> None:
    """Configure the root logger once: level and text/json format."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own start/stop chatter is noise here; "admin listening on" says it all.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
