"""Settings: sources and their precedence, the example file, error wording, flags.

In-process: these build ``Settings`` the way the CLI does (``cli.configure``), with the
environment controlled by ``monkeypatch``. The end-to-end twins in tests/e2e/test_ops.py
check the same through a real process.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from petracache.cli import build_parser, configure, parse_size, settings_from
from petracache.config import FLAT_ENV_ALIASES, MASK, ConfigError, Settings
from petracache.config_loading import apply_overrides, load_settings, loggable
from petracache.memcached_flags import compat_warnings

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


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("512K", 512 * 1024), ("1g", 1 << 30), (" 2m ", 2 << 20)],
)
def test_sizes_take_suffixes_in_every_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, value: int
) -> None:
    toml = write(tmp_path, f'[storage]\nblock_cache_size = "{text}"\n')
    assert load_settings(toml).storage.block_cache_size == value
    monkeypatch.setenv("PETRACACHE_STORAGE__MAX_DISK_BYTES", text)
    assert load_settings().storage.max_disk_bytes == value
    assert configure(["--block-cache-size", text]).storage.block_cache_size == value


def test_a_bad_size_names_the_option_and_the_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"^storage.block_cache_size: invalid size '12x'"):
        configure(["--block-cache-size", "12x"])
    with pytest.raises(ConfigError, match="set in command line"):
        apply_overrides(Settings(), {"server": {"max_connections": 0}})
    toml = write(tmp_path, '[storage]\nblock_cache_size = "lots"\n')
    with pytest.raises(ConfigError, match=f"set in config file {toml}"):
        load_settings(toml)
    monkeypatch.setenv("PETRACACHE_STORAGE__BLOCK_CACHE_SIZE", "lots")
    with pytest.raises(ConfigError, match="set in environment variable PETRACACHE_STORAGE__BLOCK"):
        load_settings(toml)  # the environment wins over the file, so it is the one to blame


def test_flat_alias_is_named_when_its_value_is_bad(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETRACACHE_MAX_CONNECTIONS", "many")
    with pytest.raises(ConfigError, match="environment variable PETRACACHE_MAX_CONNECTIONS"):
        load_settings()


def test_unknown_environment_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETRACACHE_SERVER__MAX_CONECTIONS", "5")
    with pytest.raises(
        ConfigError, match=r"^environment variable PETRACACHE_SERVER__MAX_CONECTIONS: unknown"
    ):
        load_settings()


def test_choices_are_case_insensitive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = write(tmp_path, '[storage]\ndurability = "FSYNC"\n[server]\nlog_format = "JSON"\n')
    settings = load_settings(toml)
    assert (settings.storage.durability, settings.server.log_format) == ("fsync", "json")
    assert configure(["--durability", "None"]).storage.durability == "none"
    assert configure(["--log-level", "debug"]).server.log_level == "DEBUG"


def test_item_size_above_a_gigabyte_is_refused_as_memcached_does() -> None:
    assert configure(["-I", "1g"]).server.max_item_size == 1 << 30
    with pytest.raises(ConfigError, match=r"^server.max_item_size: .*1073741824"):
        configure(["-I", "1025m"])


def test_memcached_flags_that_map_onto_settings() -> None:
    s = configure(["-m", "64", "-t", "4", "-U", "0", "-P", "/tmp/pc.pid", "-F", "-A"])
    assert s.storage.max_disk_bytes == 64 * 1024 * 1024
    assert s.server.pid_file == "/tmp/pc.pid"
    assert s.server.disable_flush_all is True
    assert s.server.enable_shutdown is True
    s = configure(["-o", "idle_timeout=30,item_size_max=2m"])
    assert (s.server.idle_timeout, s.server.max_item_size) == (30.0, 2 << 20)
    assert configure(["-o", "idle_timeout=30", "--idle-timeout", "5"]).server.idle_timeout == 5


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-d"], "-d: petracache does not daemonize"),
        (["-U", "11211"], "-U 11211: UDP is not supported"),
        (["-o", "modern,hashpower=20"], "-o hashpower: not supported by petracache"),
        (["-o", "ext_path=/tmp/x:1g"], "-o ext_path: not supported by petracache"),
        (["-o", "no_maxconns_fast"], "-o no_maxconns_fast: not supported by petracache"),
        (["-o", "slab_automove=2"], "-o slab_automove=2: not supported by petracache"),
        (["-o", "hash_algorithm=xxh3"], "-o hash_algorithm=xxh3: not supported"),
        (["-o", "idle_timeout"], "-o idle_timeout: needs a value"),
        (["-t", "0"], "-t 0: the thread count"),
        (["-o", "idle_timeout=soon"], "server.idle_timeout: "),
        (["-R", "0"], "server.reqs_per_event: Input should be greater than or equal to 1"),
        (["-a", "0999"], "server.unix_mask: expected octal permissions"),
        (["-a", "1777"], "server.unix_mask: expected octal permissions"),
        (["-S"], "server.sasl: needs auth_file"),
        (["-S", "-Y", "/x", "-B", "ascii"], "-S with -B ascii: SASL serves the binary protocol"),
        (["-S", "-Y", "/x", "-B", "auto"], "-S with -B auto: SASL serves the binary protocol"),
    ],
)
def test_memcached_flags_that_cannot_be_honoured(
    argv: list[str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEMCACHED_SASL_PWDB", raising=False)
    with pytest.raises(ConfigError) as info:
        configure(argv)
    assert str(info.value).startswith(expected)


def test_memcached_flags_of_issue_28_map_onto_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMCACHED_SASL_PWDB", raising=False)
    s = configure(["-s", "/run/pc.sock", "-a", "0770", "-B", "ASCII", "-R", "5", "-C", "-M"])
    assert (s.server.unix_socket, s.server.unix_mask, s.server.unix_mode) == (
        "/run/pc.sock",
        "770",
        0o770,
    )
    assert (s.server.binding_protocol, s.server.protocol) == ("ascii", "ascii")
    assert (s.server.reqs_per_event, s.server.cas_enabled) == (5, False)
    assert s.storage.eviction == "none"
    defaults = configure([])
    assert (defaults.server.unix_mask, defaults.server.protocol) == ("700", "auto")
    assert (defaults.server.cas_enabled, defaults.storage.eviction) == (True, "s3fifo")
    # -S: binary only; the users come from MEMCACHED_SASL_PWDB unless an auth file is set
    monkeypatch.setenv("MEMCACHED_SASL_PWDB", "/etc/pwdb")
    s = configure(["-S"])
    assert (s.server.sasl, s.server.auth_file, s.server.protocol) == (True, "/etc/pwdb", "binary")
    assert configure(["-S", "-Y", "/etc/users"]).server.auth_file == "/etc/users"
    assert configure(["-S", "-B", "binary"]).server.protocol == "binary"


def test_memcached_defaults_restated_with_o_and_e_are_accepted_with_a_warning() -> None:
    argv = ["-o", "modern,maxconns_fast,slab_automove=1,hash_algorithm=murmur3", "-e", "/m"]
    args = build_parser().parse_args(argv)
    settings = settings_from(args)
    assert settings == configure([])
    warnings = compat_warnings(args, settings)
    assert warnings[0].startswith("-e /m: ignored: items always survive a restart here")
    assert [w.split(":")[0] for w in warnings[1:]] == [
        "-o modern",
        "-o maxconns_fast",
        "-o slab_automove=1",
        "-o hash_algorithm=murmur3",
    ]
    assert all(w.count("\n") == 0 for w in warnings)
    no_bound = build_parser().parse_args(["-M"])
    [warning] = compat_warnings(no_bound, settings_from(no_bound))
    assert warning.startswith("storage.eviction = none (-M) without a disk bound")
    bounded = build_parser().parse_args(["-M", "-m", "64"])
    assert compat_warnings(bounded, settings_from(bounded)) == []


def test_unix_mask_reads_octal_in_every_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(write(tmp_path, "[server]\nunix_mask = 0o755\n")).server.unix_mode == 0o755
    assert (
        load_settings(write(tmp_path, '[server]\nunix_mask = "0750"\n')).server.unix_mask == "750"
    )
    monkeypatch.setenv("PETRACACHE_SERVER__UNIX_MASK", "777")
    assert load_settings().server.unix_mode == 0o777
