"""deploy/petracache@.service: the systemd template unit documented as the production way.

No systemd runs here, so the unit is parsed and checked against what petracache needs: it
starts the console script on a per-instance config file and directory, stops with SIGTERM
and waits longer than the drain, restarts on failure but not on a configuration error, and
allows enough descriptors for the default max_connections.
"""

from __future__ import annotations

import configparser
from pathlib import Path

from petracache.cli import EXIT_CONFIG
from petracache.config import ServerSettings
from petracache.startup import RESERVED_FDS

UNIT = Path(__file__).resolve().parent.parent / "deploy" / "petracache@.service"


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_runs_one_instance_per_name() -> None:
    service = unit()["Service"]
    command = service["ExecStart"].split()
    assert command[0].endswith("/petracache")
    assert command[1] == "/etc/petracache/%i.toml"
    assert command[2:] == ["--db-path", "/var/lib/petracache/%i/rocksdb"]
    assert service["StateDirectory"] == "petracache/%i"
    assert service["User"] != "root"


def test_unit_stops_cleanly_and_restarts_crashes_only() -> None:
    service = unit()["Service"]
    assert service["KillSignal"] == "SIGTERM"
    grace = ServerSettings.model_fields["shutdown_grace"].default
    assert float(service["TimeoutStopSec"]) > 2 * grace  # the drain, then flush and close
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == str(EXIT_CONFIG)
    default = ServerSettings.model_fields["max_connections"].default
    assert int(service["LimitNOFILE"]) >= default + RESERVED_FDS
    assert unit()["Install"]["WantedBy"] == "multi-user.target"
