"""Settings: one pydantic-settings model with a section per layer.

Precedence, lowest first: built-in defaults < the TOML file < environment variables <
command-line flags (``cli.py`` passes flags as init arguments, which win).

Environment variables follow one scheme: ``PETRACACHE_<SECTION>__<OPTION>`` (for example
``PETRACACHE_STORAGE__BLOCK_CACHE_SIZE=268435456``). PetraCache's flat variables are kept as
documented aliases: ``PETRACACHE_LISTEN_ADDR``, ``PETRACACHE_MAX_CONNECTIONS``,
``PETRACACHE_DB_PATH``, ``PETRACACHE_METRICS_ADDR``, ``PETRACACHE_METRICS_ENABLED``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from petracache.limits import DEFAULT_ITEM_SIZE_MAX

ENV_PREFIX = "PETRACACHE_"

# PetraCache's flat environment variables -> (section, option).
FLAT_ENV_ALIASES: dict[str, tuple[str, str]] = {
    "PETRACACHE_LISTEN_ADDR": ("server", "listen_addr"),
    "PETRACACHE_MAX_CONNECTIONS": ("server", "max_connections"),
    "PETRACACHE_DB_PATH": ("storage", "db_path"),
    "PETRACACHE_METRICS_ADDR": ("metrics", "listen_addr"),
    "PETRACACHE_METRICS_ENABLED": ("metrics", "enabled"),
}


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
    """The data plane: listener, connection limits, protocol limits."""

    listen_addr: str = "127.0.0.1:11211"
    max_connections: int = Field(10000, ge=1)
    read_buffer_size: int = Field(65536, ge=1024)
    write_buffer_size: int = Field(65536, ge=1024)
    max_item_size: int = Field(DEFAULT_ITEM_SIZE_MAX, ge=1024, le=1024 * 1024 * 1024)
    idle_timeout: float = Field(0.0, ge=0)
    shutdown_grace: float = Field(10.0, ge=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("listen_addr")
    @classmethod
    def _valid_addr(cls, value: str) -> str:
        split_host_port(value)
        return value


class StorageSettings(_Section):
    """RocksDB and the item store."""

    db_path: str = "./data/rocksdb"
    block_cache_size: int = Field(256 * 1024 * 1024, ge=0)
    write_buffer_size: int = Field(64 * 1024 * 1024, ge=64 * 1024)
    max_write_buffer_number: int = Field(3, ge=2)
    target_file_size_base: int = Field(64 * 1024 * 1024, ge=64 * 1024)
    max_background_jobs: int = Field(2, ge=1)
    enable_compression: bool = False
    enable_ttl_compaction: bool = True
    durability: Literal["none", "wal", "fsync"] = "wal"


class MetricsSettings(_Section):
    """The admin sidecar (/health, /ready, /metrics)."""

    enabled: bool = True
    listen_addr: str = "127.0.0.1:9090"

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
    """All of petracache's configuration."""

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
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            _FlatEnvSource(settings_cls),
        ]
        toml_file = _TOML_FILE.get("path")
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


_TOML_FILE: dict[str, Path | None] = {"path": None}


def load_settings(toml_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from an optional TOML file, the environment and overrides.

    Args:
        toml_file: path of a TOML file with ``[server]``, ``[storage]``, ``[metrics]``.
        overrides: per-section dicts (``server={"listen_addr": ...}``) that win over all else.

    Raises:
        FileNotFoundError: the TOML file does not exist.
        pydantic.ValidationError: an option is unknown or has a bad value.
    """
    path = Path(toml_file) if toml_file is not None else None
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    _TOML_FILE["path"] = path
    try:
        return Settings(**overrides)
    finally:
        _TOML_FILE["path"] = None
