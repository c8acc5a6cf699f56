"""Storage-test fixtures: a real RocksDB engine in ``tmp_path`` under the ``clock`` fixture
(``tests/conftest.py``); the helpers behind them are in ``tests/storage/engines.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from petracache.storage.engine import Engine
from tests.storage.engines import Clock, open_engine


@pytest.fixture
def engine(tmp_path: Path, clock: Clock) -> Iterator[Engine]:
    eng = open_engine(tmp_path / "db", clock)
    yield eng
    eng.close()
