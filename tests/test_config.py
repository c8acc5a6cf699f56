"""Settings: sources and their precedence, the example file, error wording, flags.

In-process: these build ``Settings`` the way the CLI does (``cli.configure``), with the
environment controlled by ``monkeypatch``. The end-to-end twins in tests/e2e/test_ops.py
check the same through a real process.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from petracache.cli import configure, parse_size
from petracache.config import (
    FLAT_ENV_ALIASES,
    MASK,
    ConfigError,
    Settings,
    apply_overrides,
    load_settings,
    loggable,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.toml.example"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PETRACACHE_* variable from the outside world leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("PETRACACHE_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_example_file_lists_every_option_with_its_default() -> None:
    loaded = load_settings(EXAMPLE)
    assert loaded.model_dump() == Settings().model_dump()
    text = EXAMPLE.read_text()
    for section, info in Settings.model_fields.items():
        assert f"[{section}]" in text
        for option in info.annotation.model_fields:  # type: ignore[union-attr]
            assert f"\n{option} = " in text, f"{section}.{option} missing from the example"


def test_petracache_readme_options_exist() -> None:
    s = Settings()
    for section, option in [
        ("server", "listen_addr"),
        ("server", "max_connections"),
        ("server", "read_buffer_size"),
        ("server", "write_buffer_size"),
        ("storage", "db_path"),
        ("storage", "block_cache_size"),
        ("storage", "write_buffer_size"),
        ("storage", "max_write_buffer_number"),
        ("storage", "target_file_size_base"),
        ("storage", "max_background_jobs"),
        ("storage", "enable_compression"),
        ("storage", "enable_ttl_compaction"),
        ("metrics", "enabled"),
        ("metrics", "listen_addr"),
    ]:
        assert hasattr(getattr(s, section), option)


def test_precedence_defaults_toml_env_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        '[server]\nmax_connections = 100\nidle_timeout = 5\nlisten_addr = "0.0.0.0:1"\n'
        "[storage]\nblock_cache_size = 1000\n",
    )
    assert configure([str(path)]).server.max_connections == 100
    monkeypatch.setenv("PETRACACHE_MAX_CONNECTIONS", "200")
    assert configure([str(path)]).server.max_connections == 200
    monkeypatch.setenv("PETRACACHE_SERVER__MAX_CONNECTIONS", "250")  # nested beats flat
    assert configure([str(path)]).server.max_connections == 250
    settings = configure(["--config", str(path), "-c", "300", "-p", "7777"])
    assert settings.server.max_connections == 300
    # untouched options keep their TOML, env or default values
    assert settings.server.idle_timeout == 5
    assert settings.server.listen_addr == "0.0.0.0:7777"  # -p keeps the TOML host
    assert settings.storage.block_cache_size == 1000
    assert settings.storage.max_background_jobs == 2


def test_flat_env_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "PETRACACHE_LISTEN_ADDR": "10.0.0.1:1234",
        "PETRACACHE_MAX_CONNECTIONS": "77",
        "PETRACACHE_DB_PATH": "/srv/db",
        "PETRACACHE_METRICS_ADDR": "127.0.0.1:9999",
        "PETRACACHE_METRICS_ENABLED": "false",
    }
    assert set(values) == set(FLAT_ENV_ALIASES)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert s.server.listen_addr == "10.0.0.1:1234"
    assert s.server.max_connections == 77
    assert s.storage.db_path == "/srv/db"
    assert s.metrics.listen_addr == "127.0.0.1:9999"
    assert s.metrics.enabled is False


def test_nested_env_scheme_reaches_every_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETRACACHE_STORAGE__ENABLE_COMPRESSION", "true")
    monkeypatch.setenv("PETRACACHE_SERVER__LOG_LEVEL", "debug")
    monkeypatch.setenv("PETRACACHE_METRICS__LISTEN_ADDR", "127.0.0.1:0")
    s = load_settings()
    assert s.storage.enable_compression is True
    assert s.server.log_level == "DEBUG"
    assert s.metrics.listen_addr == "127.0.0.1:0"


def test_memcached_style_flags() -> None:
    s = configure(["-l", "0.0.0.0", "-p", "11999", "-c", "42", "-I", "2m", "--no-metrics"])
    assert s.server.listen_addr == "0.0.0.0:11999"
    assert s.server.max_connections == 42
    assert s.server.max_item_size == 2 * 1024 * 1024
    assert s.metrics.enabled is False
    assert configure(["-l", "::1"]).server.listen_addr == "[::1]:11211"


@pytest.mark.parametrize(
    ("text", "value"),
    [("1048576", 1048576), ("512k", 512 * 1024), ("1m", 1 << 20), ("2G", 2 << 30)],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[server]\nbogus = 1\n", "server.bogus: unknown option"),
        ("[nosuchsection]\nx = 1\n", "nosuchsection: unknown option"),
        ('[server]\nmax_connections = "many"\n', "server.max_connections: Input should be"),
        ('[server]\nlisten_addr = "127.0.0.1:70000"\n', "server.listen_addr: port 70000 out of"),
        ('[metrics]\nlisten_addr = "nocolon"\n', "metrics.listen_addr: expected host:port"),
        ("[storage]\nmax_write_buffer_number = 0\n", "storage.max_write_buffer_number:"),
        ("[server\n", "invalid TOML"),
    ],
)
def test_bad_values_are_one_line_naming_the_option(
    tmp_path: Path, toml: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, toml))
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_bad_flag_value_names_the_option() -> None:
    with pytest.raises(ConfigError, match=r"^server.max_connections: Input should be"):
        apply_overrides(Settings(), {"server": {"max_connections": 0}})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings("/nonexistent/petracache.toml")


def test_loggable_masks_secret_looking_options() -> None:
    dumped = loggable(Settings())
    assert dumped["server"]["listen_addr"] == "127.0.0.1:11211"
    assert MASK not in str(dumped["storage"])
    for section in dumped.values():
        for name, value in section.items():
            if any(word in name for word in ("password", "secret", "token", "key", "auth")):
                assert value in (MASK, None, "")
