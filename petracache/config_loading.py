"""Where the settings come from: the TOML file, ``PETRACACHE_*`` variables and flags merged
over the defaults of the model (``petracache.config``), the variables checked for typos,
and every failure turned into one line naming the option and the layer it came from.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, SecretStr
from pydantic_settings import SettingsConfigDict

from petracache.config import (
    _SECRET_NAME,
    ENV_PREFIX,
    FLAT_ENV_ALIASES,
    MASK,
    ConfigError,
    MetricsSettings,
    ServerSettings,
    Settings,
    StorageSettings,
)
from petracache.rules.build import COMPILE_ENV


def describe(error: pydantic.ValidationError, prefix: str = "", layer: str = "") -> str:
    """One line naming the first bad option, its problem and (if given) where it was set."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in (prefix, *first["loc"]) if part != "")
    if first["type"] == "extra_forbidden":
        message = "unknown option"
    else:
        message = first["msg"].removeprefix("Value error, ")
        value = first.get("input")
        if first["type"] not in ("missing", "value_error") and not isinstance(value, dict):
            message += f" (got {value!r})"
    suffix = f" (set in {layer})" if layer else ""
    return f"{where or 'configuration'}: {message}{suffix}"


def _sections() -> dict[str, type[BaseModel]]:
    return {"server": ServerSettings, "storage": StorageSettings, "metrics": MetricsSettings}


def env_names(section: str, option: str) -> list[str]:
    """The environment variables that set ``section.option``, nested scheme first."""
    names = [f"{ENV_PREFIX}{section}__{option}".upper()]
    return names + [var for var, target in FLAT_ENV_ALIASES.items() if target == (section, option)]


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse a ``PETRACACHE_*`` variable that sets nothing, so a typo is never ignored.

    pydantic-settings skips such variables silently; an operator who wrote
    ``PETRACACHE_SERVER__MAX_CONECTIONS`` would run with the default and never know.

    Raises:
        ConfigError: naming the first unknown variable.
    """
    known = {*FLAT_ENV_ALIASES, COMPILE_ENV}  # setup.py's switch is no option
    for section, model in _sections().items():
        known.add(f"{ENV_PREFIX}{section}".upper())  # a whole section as JSON
        known.update(env_names(section, option)[0] for option in model.model_fields)
    for name in sorted(environ):
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known:
            raise ConfigError(
                f"environment variable {name}: unknown option "
                f"(expected {ENV_PREFIX}<SECTION>__<OPTION>, e.g. {ENV_PREFIX}SERVER__LISTEN_ADDR)"
            )


def _layer_of(loc: tuple[int | str, ...], toml_file: Path | None) -> str:
    """Which layer gave the value at ``loc``: the environment wins over the file."""
    upper = {name.upper(): name for name in os.environ}
    section = str(loc[0]) if loc else ""
    names = env_names(section, str(loc[1])) if len(loc) > 1 else []
    for name in [*names, f"{ENV_PREFIX}{section}".upper()]:
        if name in upper:
            return f"environment variable {upper[name]}"
    return f"config file {toml_file}" if toml_file is not None else "environment"


def load_settings(toml_file: str | Path | None = None) -> Settings:
    """Build the settings from defaults, an optional TOML file and the environment.

    Args:
        toml_file: path of a TOML file with ``[server]``, ``[storage]``, ``[metrics]``.

    Raises:
        ConfigError: the file is missing or not TOML, an option is unknown or has a bad value,
            or a ``PETRACACHE_*`` variable names no option.
    """
    check_environment(os.environ)
    cls: type[Settings] = Settings
    path = None if toml_file is None else Path(toml_file)
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        config = SettingsConfigDict(**{**Settings.model_config, "toml_file": path})
        cls = type("FileSettings", (Settings,), {"model_config": config})
    try:
        return cls()
    except pydantic.ValidationError as exc:
        raise ConfigError(describe(exc, layer=_layer_of(exc.errors()[0]["loc"], path))) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {toml_file}: invalid TOML: {exc}") from None


def apply_overrides(
    settings: Settings, overrides: Mapping[str, Mapping[str, Any]], layer: str = "command line"
) -> Settings:
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
            raise ConfigError(describe(exc, section, layer)) from None
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
