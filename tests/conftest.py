"""Shared fixtures: a settable clock for in-process engines, and real petracache and
memcached processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import MemcachedProcess, PetracacheProcess
from tests.storage.engines import Clock


@pytest.fixture
def clock() -> Clock:
    """The clock an in-process engine reads (``tests/storage/engines.py``), set by the test."""
    return Clock()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PetracacheProcess]:
    """A fresh petracache process with its own data directory, stopped after the test."""
    with PetracacheProcess(tmp_path / "pc") as proc:
        yield proc


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PetracacheProcess]:
    """One petracache process for a whole module (tests must use their own keys)."""
    with PetracacheProcess(tmp_path_factory.mktemp("pc-shared")) as proc:
        yield proc


@pytest.fixture(scope="session")
def memcached() -> Iterator[MemcachedProcess]:
    """The reference server: Debian's memcached 1.6."""
    proc = MemcachedProcess()
    yield proc
    proc.stop()
