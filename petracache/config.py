"""Settings: one pydantic-settings model with a section per layer.

Precedence, lowest first: built-in defaults < the TOML file < environment variables <
command-line flags. ``load_settings`` reads the first three (pydantic-settings sources);
``apply_overrides`` lays the flags on top, re-validating each section it touches.

Environment variables follow one scheme: ``PETRACACHE_<SECTION>__<OPTION>`` (for example
``PETRACACHE_STORAGE__BLOCK_CACHE_SIZE=268435456``). PetraCache's flat variables are kept as
documented aliases (``FLAT_ENV_ALIASES``); the nested form wins when both are set.

Invariants: sections are frozen and forbid unknown keys, so a typo is an error, never a
silently ignored option. Every problem surfaces as one ``ConfigError`` whose text names the
option (``section.option``) and what is wrong with it. Adding an option is one annotated
field with a ``description`` (and a line in ``config.toml.example``, which a test checks).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from petracache.rules.sizes import DEFAULT_ITEM_SIZE_MAX

ENV_PREFIX = "PETRACACHE_"

# PetraCache's flat environment variables -> (section, option).
FLAT_ENV_ALIASES: dict[str, tuple[str, str]] = {
    "PETRACACHE_LISTEN_ADDR": ("server", "listen_addr"),
    "PETRACACHE_MAX_CONNECTIONS": ("server", "max_connections"),
    "PETRACACHE_DB_PATH": ("storage", "db_path"),
    "PETRACACHE_METRICS_ADDR": ("metrics", "listen_addr"),
    "PETRACACHE_METRICS_ENABLED": ("metrics", "enabled"),
}

# Option names that may hold secrets: masked in the start-up log line.
_SECRET_NAME = re.compile(r"password|secret|token|credential|auth|key", re.IGNORECASE)
MASK = "***"


class ConfigError(Exception):
    """A configuration problem, worded as one line: ``section.option: what is wrong``."""


def split_host_port(addr: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) -> (host, port), validating the port range."""
    host, sep, port_text = addr.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected host:port, got {addr!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port must be a number, got {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range 0-65535")
    return host.strip("[]"), port


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    """The data plane: listener, connection limits, protocol limits, logging."""

    listen_addr: str = Field("127.0.0.1:11211", description="data port address, host:port")
    max_connections: int = Field(10000, ge=1, description="simultaneous client connections")
    read_buffer_size: int = Field(65536, ge=1024, description="bytes read per socket receive")
    write_buffer_size: int = Field(
        262144, ge=1024, description="queued reply bytes that trigger a socket write"
    )
    max_item_size: int = Field(
        DEFAULT_ITEM_SIZE_MAX,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="largest item, memcached's -I (header + key + value)",
    )
    idle_timeout: float = Field(
        0.0, ge=0, description="close connections idle this many seconds; 0 = never"
    )
    shutdown_grace: float = Field(
        10.0, ge=0, description="seconds to let connections finish after SIGTERM/SIGINT"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="logging level"
    )
    log_format: Literal["text", "json"] = Field("text", description="log line format")
    tls_cert_file: str = Field(
        "", description="PEM certificate chain; set with tls_key_file, the data port is TLS-only"
    )
    tls_key_file: str = Field("", description="PEM private key of tls_cert_file")
    tls_ca_file: str = Field(
        "", description="PEM CA bundle; when set, clients must present a certificate it signed"
    )
    auth_file: str = Field(
        "", description="user:password lines; when set, clients must authenticate (memcached -Y)"
    )

    @field_validator("listen_addr")
    @classmethod
    def _valid_addr(cls, value: str) -> str:
        split_host_port(value)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class StorageSettings(_Section):
    """RocksDB and the item store."""

    db_path: str = Field("./data/rocksdb", description="RocksDB data directory")
    block_cache_size: int = Field(256 * 1024 * 1024, ge=0, description="block cache bytes")
    write_buffer_size: int = Field(
        64 * 1024 * 1024, ge=64 * 1024, description="memtable bytes before a flush"
    )
    max_write_buffer_number: int = Field(3, ge=2, description="memtables kept in memory")
    target_file_size_base: int = Field(
        64 * 1024 * 1024, ge=64 * 1024, description="target SST file size"
    )
    max_background_jobs: int = Field(2, ge=1, description="flush and compaction threads")
    enable_compression: bool = Field(False, description="LZ4-compress SST blocks")
    enable_ttl_compaction: bool = Field(
        True,
        description="reap expired and flushed items in the background and compact their space",
    )
    reaper_interval: float = Field(
        1.0, gt=0, le=3600, description="seconds between background reclaim passes when idle"
    )
    max_disk_bytes: int = Field(
        0,
        ge=0,
        description="disk bound (SST + WAL or memtable bytes): oldest-written items are evicted"
        " from 55% of it, leaving room for compaction; 0 = no bound",
    )
    durability: Literal["none", "wal", "fsync"] = Field(
        "wal", description="none: no WAL; wal: survives a process crash; fsync: power loss"
    )
    backup_dir: str = Field(
        "",
        description="where POST /backup (petracache backup) puts checkpoints;"
        " empty = <db_path>.backups beside the database",
    )
    backup_keep: int = Field(3, ge=1, description="backups kept; older ones are deleted")


class MetricsSettings(_Section):
    """The admin sidecar (/health, /ready, /metrics)."""

    enabled: bool = Field(True, description="serve /health, /ready and /metrics")
    listen_addr: str = Field("127.0.0.1:9090", description="admin HTTP address, host:port")

    @field_validator("listen_addr")
    @classmethod
    def _valid_addr(cls, value: str) -> str:
        split_host_port(value)
        return value


class _FlatEnvSource(PydanticBaseSettingsSource):
    """PetraCache's flat ``PETRACACHE_*`` variables, mapped onto their sections."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ does the work

    def __call__(self) -> dict[str, Any]:
        found: dict[str, dict[str, str]] = {}
        for var, (section, option) in FLAT_ENV_ALIASES.items():
            if var in os.environ:
                found.setdefault(section, {})[option] = os.environ[var]
        return found


class Settings(BaseSettings):
    """All of petracache's configuration.

    The TOML file is named by ``model_config["toml_file"]``; ``load_settings`` binds a file
    by deriving a subclass, so no state is shared between loads.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    metrics: MetricsSettings = MetricsSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win; pydantic-settings deep-merges sections across them.
        return (
            init_settings,
            env_settings,
            _FlatEnvSource(settings_cls),
            TomlConfigSettingsSource(settings_cls),
        )


def describe(error: pydantic.ValidationError, prefix: str = "") -> str:
    """One line naming the first bad option and its problem."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in (prefix, *first["loc"]) if part != "")
    if first["type"] == "extra_forbidden":
        return f"{where or 'configuration'}: unknown option"
    message = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    if first["type"] not in ("missing", "value_error") and not isinstance(value, dict):
        message += f" (got {value!r})"
    return f"{where or 'configuration'}: {message}"


def load_settings(toml_file: str | Path | None = None) -> Settings:
    """Build the settings from defaults, an optional TOML file and the environment.

    Args:
        toml_file: path of a TOML file with ``[server]``, ``[storage]``, ``[metrics]``.

    Raises:
        ConfigError: the file is missing or not TOML, an option is unknown or has a bad value.
    """
    cls: type[Settings] = Settings
    if toml_file is not None:
        path = Path(toml_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        config = SettingsConfigDict(**{**Settings.model_config, "toml_file": path})
        cls = type("FileSettings", (Settings,), {"model_config": config})
    try:
        return cls()
    except pydantic.ValidationError as exc:
        raise ConfigError(describe(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {toml_file}: invalid TOML: {exc}") from None


def apply_overrides(settings: Settings, overrides: Mapping[str, Mapping[str, Any]]) -> Settings:
    """Settings with ``{section: {option: value}}`` laid on top (command-line flags).

    Raises:
        ConfigError: a value is invalid for its option.
    """
    updates: dict[str, BaseModel] = {}
    for section, values in overrides.items():
        if not values:
            continue
        current: BaseModel = getattr(settings, section)
        try:
            updates[section] = type(current).model_validate({**current.model_dump(), **values})
        except pydantic.ValidationError as exc:
            raise ConfigError(describe(exc, section)) from None
    return settings.model_copy(update=updates) if updates else settings


def loggable(settings: Settings) -> dict[str, dict[str, Any]]:
    """The effective configuration for the start-up log line, secrets masked."""
    out: dict[str, dict[str, Any]] = {}
    for section in type(settings).model_fields:
        values = getattr(settings, section).model_dump()
        out[section] = {
            name: MASK
            if value not in (None, "")
            and (_SECRET_NAME.search(name) or isinstance(value, SecretStr))
            else value
            for name, value in values.items()
        }
    return out
