"""Command-test fixtures: the storage tests' settable clock (a real engine runs under it)."""

from __future__ import annotations

from tests.storage.conftest import clock

__all__ = ["clock"]
