"""The benchmark suite cannot rot: every workload runs for one second against both servers.

Real memcached and petracache processes, the real C load generator. No timing assertions:
only that every run completed requests without errors, that pre-loaded keys hit, and that
petracache keeps its items across the restart while memcached comes back empty.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.suite import SMOKE, WORKLOADS, machine, render, run_suite

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None or shutil.which("memcached") is None,
    reason="the benchmark needs gcc (load generator) and memcached",
)


def test_every_workload_and_the_restart_run(tmp_path: Path) -> None:
    rows, restarts = run_suite(SMOKE, tmp_path, log=lambda _text: None)

    assert [row.workload.key for row in rows] == sorted(w.key for w in WORKLOADS)
    for row in rows:
        for server, runs in row.runs.items():
            assert len(runs) == SMOKE.rounds, (row.workload.key, server)
            for result in runs:
                assert result.ops > 0, (row.workload.key, server)
                assert result.errors == 0, (row.workload.key, server)
                if result.gets:
                    assert result.misses == 0, (row.workload.key, server, result)
        if row.workload.rate_of:
            assert row.offered_rate > 0

    by_server = {r.server: r for r in restarts}
    assert by_server["petracache"].hit_ratio == 1.0
    assert by_server["petracache"].disk_bytes_per_item > SMOKE.restart_value
    assert by_server["memcached"].hit_ratio == 0.0

    table = render(rows, restarts, machine())
    assert table.count("\n| ") >= len(rows) + len(restarts)


def test_eviction_traces_run_for_every_policy_and_memcached(tmp_path: Path) -> None:
    from bench import eviction

    out = eviction.main(["--smoke", "--dir", str(tmp_path)])

    assert sorted(out) == sorted(eviction.TRACES)
    for runs in out.values():
        servers = [run.server.split(" (")[0] for run in runs]
        assert servers[:3] == ["petracache s3fifo", "petracache clock", "petracache fifo"]
        assert servers[3].startswith("memcached")
        for run in runs:
            assert 0.0 < run.ratio(0) < 1.0, run.server
            assert run.items_held > 0, run.server


def test_the_read_path_bench_runs() -> None:
    from bench import read_path

    assert read_path.run(50, 2) >= 0  # no hand-back: every reply came back whole


def test_the_rocksdb_cost_bench_measures_puts_and_gets(tmp_path: Path) -> None:
    from bench import rocksdb_cost

    figures = rocksdb_cost.measure(tmp_path / "db", keys=500, ops=2000)

    assert sorted(figures) == ["get, SST files", "get, memtables", "put"]
    assert all(isinstance(value, float) for value in figures.values())
