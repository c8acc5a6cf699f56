"""migrate's wire formats and bookkeeping (pure; tests/e2e/test_lifecycle.py runs it)."""

from __future__ import annotations

import pytest

from petracache.tools import run_tool
from petracache.tools.migrate import (
    Tally,
    mg_command,
    ms_command,
    parse_dump_line,
    parse_va,
    target_ttl,
)
from petracache.tools.wire import WireError, split_addr

NOW = 1_800_000_000


def test_dump_line_keys_are_url_decoded() -> None:
    line = b"key=b%01x%20y exp=1796097144 la=1796097044 cas=2 fetch=no cls=1 size=63"
    assert parse_dump_line(line) == (b"b\x01x y", 1796097144)
    assert parse_dump_line(b"key=a exp=-1 la=1 cas=1 fetch=yes cls=1 size=67") == (b"a", -1)


def test_ttl_is_relative_up_to_30_days_then_absolute() -> None:
    assert target_ttl(-1, NOW) == 0
    assert target_ttl(0, NOW) is None
    assert target_ttl(100, NOW) == 100
    assert target_ttl(2_592_000, NOW) == 2_592_000
    assert target_ttl(2_592_001, NOW) == NOW + 2_592_001


def test_commands_use_base64_only_for_unsafe_keys() -> None:
    assert mg_command(b"plain") == b"mg plain v f t\r\n"
    assert mg_command(b"sp ace") == b"mg c3AgYWNl v f t b\r\n"
    assert ms_command(b"k", b"abc", 5, 0, False) == b"ms k 3 F5 T0 ME\r\nabc\r\n"
    assert ms_command(b"k", b"", 0, 10, True) == b"ms k 0 F0 T10\r\n\r\n"


def test_va_header() -> None:
    assert parse_va(b"VA 10 f1 t96") == (10, 1, 96)
    assert parse_va(b"VA 0 t-1 f0") == (0, 0, -1)
    with pytest.raises(ValueError, match="HD"):
        parse_va(b"HD")


def test_summary_and_merge() -> None:
    total = Tally(copied=3)
    total.merge(Tally(expired=1, vanished=2, present=4))
    failed = Tally()
    failed.fail(2, "boom")
    total.merge(failed)
    assert total.summary() == ("copied 3, skipped 7 (expired 1, vanished 2, present 4), failed 2")
    assert total.errors == ["boom"]


def test_addresses() -> None:
    assert split_addr("127.0.0.1:11211") == ("127.0.0.1", 11211)
    assert split_addr("[::1]:11211") == ("::1", 11211)
    for bad in ("localhost", ":11211", "h:0", "h:x"):
        with pytest.raises(WireError):
            split_addr(bad)


def test_only_tool_names_are_dispatched() -> None:
    assert run_tool([]) is None
    assert run_tool(["--port", "0"]) is None
    assert run_tool(["config.toml"]) is None
