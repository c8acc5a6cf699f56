"""Settings: one pydantic-settings model with a section per layer.

Precedence, lowest first: built-in defaults < the TOML file < environment variables <
command-line flags. ``load_settings`` reads the first three (pydantic-settings sources);
``apply_overrides`` lays the flags on top, re-validating each section it touches.

Environment variables follow one scheme: ``PETRACACHE_<SECTION>__<OPTION>`` (for example
``PETRACACHE_STORAGE__BLOCK_CACHE_SIZE=268435456``). PetraCache's flat variables are kept as
documented aliases (``FLAT_ENV_ALIASES``); the nested form wins when both are set.

Invariants: sections are frozen and forbid unknown keys, and an unknown ``PETRACACHE_*``
variable is refused by name, so a typo is an error, never a silently ignored option. Every
problem surfaces as one ``ConfigError`` whose text names the option (``section.option``),
what is wrong with it and the layer the bad value came from (config file, environment
variable, command line). Sizes accept memcached's suffixes (``512k``, ``2m``, ``1g``) in every
layer because the model parses them (``ByteSize``); choices are case-insensitive. Adding an
option is one annotated field with a ``description`` (and a line in ``config.toml.example``,
which a test checks).
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
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


_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}
# memcached refuses -I above this ("Cannot set item size limit higher than a gigabyte.").
ITEM_SIZE_MAX_UPPER_LIMIT = 1024 * 1024 * 1024


def parse_size(text: str) -> int:
    """memcached-style sizes: ``1048576``, ``1024k``, ``1m``, ``2g`` (suffix case-insensitive).

    Raises:
        ValueError: not a whole number with an optional k/m/g suffix.
    """
    raw = text.strip().lower()
    multiplier = _UNITS.get(raw[-1:], 1)
    digits = raw[:-1] if raw[-1:] in _UNITS else raw
    if not digits.isdigit():
        raise ValueError(f"invalid size {text!r} (e.g. 1048576, 512k, 1m, 1g)")
    return int(digits) * multiplier


def _size(value: Any) -> Any:
    """Before validation: a string size may carry a suffix; other types go to int parsing."""
    return parse_size(value) if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


# A byte count that takes memcached's suffixes in the TOML file, the environment and flags.
ByteSize = Annotated[int, BeforeValidator(_size)]


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
    read_buffer_size: ByteSize = Field(65536, ge=1024, description="bytes read per socket receive")
    write_buffer_size: ByteSize = Field(
        262144, ge=1024, description="queued reply bytes that trigger a socket write"
    )
    max_item_size: ByteSize = Field(
        DEFAULT_ITEM_SIZE_MAX,
        ge=1024,
        le=ITEM_SIZE_MAX_UPPER_LIMIT,
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
    pid_file: str = Field("", description="write the process id here while running (memcached -P)")
    disable_flush_all: bool = Field(False, description="refuse flush_all (memcached -F)")
    enable_shutdown: bool = Field(False, description="accept the shutdown command (memcached -A)")
    unix_socket: str = Field(
        "",
        description="serve on this unix-domain socket path instead of TCP (listen_addr is then"
        " not used; memcached -s); a stale socket file is replaced at start and removed at"
        " exit; empty = TCP",
    )
    unix_mask: str = Field(
        "700",
        description="permissions of the unix socket file, octal (memcached -a)",
    )
    binding_protocol: Literal["auto", "ascii", "binary"] = Field(
        "auto",
        description="protocols served: auto = text or binary, decided by each connection's"
        " first byte; ascii = text (and meta) only; binary = binary only (memcached -B)",
    )
    reqs_per_event: int = Field(
        20,
        ge=1,
        description="requests of one read answered before the replies held so far are written"
        " (memcached -R: where memcached yields; each such cut counts in conn_yields)",
    )
    cas_enabled: bool = Field(
        True,
        description="false: every CAS unique clients see is 0 and cas compares never match,"
        " as memcached -C (items keep their versions internally)",
    )
    sasl: bool = Field(
        False,
        description="memcached -S: the binary protocol only, with SASL PLAIN against"
        " auth_file's users (binding_protocol auto then means binary)",
    )

    @field_validator("listen_addr")
    @classmethod
    def _valid_addr(cls, value: str) -> str:
        split_host_port(value)
        return value

    @field_validator("unix_mask", mode="before")
    @classmethod
    def _octal_mask(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:o}"  # a TOML integer (0o700): read as the mode it denotes
        if isinstance(value, str):
            text = value.strip()
            if not text or any(c not in "01234567" for c in text) or int(text, 8) > 0o777:
                raise ValueError(f"expected octal permissions such as 700 or 0755, got {value!r}")
            return f"{int(text, 8):o}"
        return value

    @field_validator("binding_protocol", mode="before")
    @classmethod
    def _lower_protocol(cls, value: Any) -> Any:
        return _lower(value)

    @field_validator("sasl")
    @classmethod
    def _sasl_needs_users(cls, value: bool, info: ValidationInfo) -> bool:
        # auth_file and binding_protocol are declared before sasl, so they are in info.data.
        if value and not info.data.get("auth_file"):
            raise ValueError(
                "needs auth_file, the user:password file (memcached -S reads"
                " MEMCACHED_SASL_PWDB; petracache has no Cyrus SASL)"
            )
        if value and info.data.get("binding_protocol") == "ascii":
            raise ValueError("the ASCII protocol cannot be served with SASL (memcached -S)")
        return value

    @property
    def protocol(self) -> str:
        """The protocols served: ``binding_protocol``, binary only with SASL."""
        return "binary" if self.sasl else self.binding_protocol

    @property
    def unix_mode(self) -> int:
        """``unix_mask`` as a number (the socket file's permission bits)."""
        return int(self.unix_mask, 8)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: Any) -> Any:
        return _lower(value)


class StorageSettings(_Section):
    """RocksDB and the item store."""

    db_path: str = Field("./data/rocksdb", description="RocksDB data directory")
    block_cache_size: ByteSize = Field(256 * 1024 * 1024, ge=0, description="block cache bytes")
    hot_cache_size: ByteSize = Field(
        64 * 1024 * 1024,
        ge=0,
        description="memory for recently used items kept decoded in front of RocksDB"
        " (write-through; least recently used leave first, a read counted as a use at most"
        " once a minute, as memcached bumps); 0 = off",
    )
    write_buffer_size: ByteSize = Field(
        64 * 1024 * 1024,
        ge=64 * 1024,
        description="memtable bytes before a flush (left at this default with"
        " max_disk_bytes set: a twelfth of the bound, 1-64 MiB)",
    )
    max_write_buffer_number: int = Field(
        3, ge=2, description="memtables kept in memory (left at 3 with max_disk_bytes set: 2)"
    )
    target_file_size_base: ByteSize = Field(
        64 * 1024 * 1024,
        ge=64 * 1024,
        description="target SST file size (left at this default with max_disk_bytes set:"
        " the write buffer's size)",
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
    max_disk_bytes: ByteSize = Field(
        0,
        ge=0,
        description="disk bound (SST + WAL or memtable bytes): items are evicted (see"
        " eviction) from 55% of it, leaving room for compaction; 0 = no bound",
    )
    eviction: Literal["s3fifo", "clock", "fifo", "none"] = Field(
        "s3fifo",
        description="which items max_disk_bytes evicts: s3fifo = S3-FIFO: new items in a small"
        " FIFO (a tenth of the items), those read there (or evicted recently) move to a main"
        " FIFO where reads earn passes; clock = oldest-written first, but one read since it"
        " was written (or last spared) is requeued instead (second chance); fifo ="
        " oldest-written first; none = evict nothing: from where eviction would start, stores"
        " answer SERVER_ERROR out of memory storing object (memcached -M)",
    )
    exact_item_count: bool = Field(
        True,
        description="keep curr_items and bytes exact: every key's size is kept in memory"
        " (27-40 bytes a key, stats key_index_bytes) so a set knows what it replaces; false:"
        " set stays a blind write and stats reports RocksDB's"
        " estimates",
    )
    max_warm_downtime: float = Field(
        60.0,
        ge=0,
        description="seconds the server may have been down (since its clean stop or last"
        " heartbeat) and still serve what it stored before; longer: everything stored before"
        " is invalidated at start (as by flush_all); 0 = always serve it",
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

    @field_validator("durability", "eviction", mode="before")
    @classmethod
    def _lower_choices(cls, value: Any) -> Any:
        return _lower(value)


class MetricsSettings(_Section):
    """The admin sidecar (/health, /ready, /metrics)."""

    enabled: bool = Field(True, description="serve /health, /ready and /metrics")
    listen_addr: str = Field("127.0.0.1:9090", description="admin HTTP address, host:port")
    token_file: str = Field(
        "",
        description="file holding the bearer token POST /backup requires ('': POST /backup "
        "is refused; /health, /ready and /metrics never need it)",
    )

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
