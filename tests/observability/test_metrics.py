"""``/metrics`` result labels: a meta reply counts as what its code says, like classic ones."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from petracache.commands.executor import Executor
from petracache.commands.stats import ServerInfo
from petracache.observability.counters import Counters
from petracache.observability.metrics import PetracacheCollector, ServerFigures
from petracache.observability.request_metrics import RequestMetrics
from petracache.protocol.connection import NEED_DATA, MemcacheConnection
from tests.storage.engines import Clock, open_engine


def results(tmp_path: Path, data: bytes) -> dict[str, dict[str, int]]:
    """Run ``data`` through the instrumented executor; results by command."""
    engine = open_engine(tmp_path / "db", Clock())
    try:
        executor = Executor(
            engine, Counters(), ServerInfo(max_connections=1, item_size_max=1 << 20)
        )
        metrics = RequestMetrics()
        execute = metrics.instrument(executor.execute)
        conn = MemcacheConnection()
        conn.receive_data(data)
        while (request := conn.next_request()) is not NEED_DATA:
            execute(request)  # type: ignore[arg-type]
        return {name: stats.counts() for name, stats in metrics.commands.items()}
    finally:
        engine.close()


def test_meta_codes_label_results(tmp_path: Path) -> None:
    got = results(
        tmp_path,
        b"mg a v\r\nmg a q\r\n"  # EN twice (the quiet one is counted, not sent)
        b"ms a 1 ME\r\nx\r\nms a 1 ME\r\ny\r\nms a 1 C999\r\nz\r\nms b 1 C1\r\nz\r\n"
        b"mg a v\r\nmg a\r\n"
        b"md a\r\nmd a\r\n"
        b"ma n\r\nma n N0 J5\r\nma n\r\nmn\r\n",
    )
    assert got["meta_get"] == {"miss": 2, "hit": 2}
    assert got["meta_set"] == {"stored": 1, "not_stored": 1, "exists": 1, "not_found": 1}
    assert got["meta_delete"] == {"hit": 1, "not_found": 1}
    assert got["meta_arithmetic"] == {"not_found": 1, "hit": 2}
    assert got["meta_noop"] == {"ok": 1}


def test_classic_labels_are_unchanged(tmp_path: Path) -> None:
    got = results(tmp_path, b"get a\r\nset a 0 0 1\r\nx\r\nget a b\r\ndelete a\r\nincr a 1\r\n")
    assert got["get"] == {"miss": 2, "hit": 1}
    assert got["set"] == {"stored": 1}
    assert got["delete"] == {"hit": 1}
    assert got["incr"] == {"not_found": 1}


def test_get_variants_and_store_verbs_have_their_own_records(tmp_path: Path) -> None:
    """The cached records (get/gets/gat/gats by flags, stores by mode) are the named ones:
    each storage command is counted under its own name (a ``StoreMode``'s value)."""
    got = results(
        tmp_path,
        b"get a\r\ngets a\r\ngat 0 a\r\ngats 0 a\r\nget a\r\n"
        b"set a 0 0 1\r\nx\r\nadd a 0 0 1\r\nx\r\nappend a 0 0 1\r\nx\r\nset b 0 0 1\r\nx\r\n"
        b"replace b 0 0 1\r\ny\r\ncas b 0 0 1 999999\r\nz\r\n"
        b"prepend a 0 0 2000000\r\n" + b"x" * 2000002,  # too large: counted as its verb
    )
    assert got == {
        "get": {"miss": 2},
        "gets": {"miss": 1},
        "gat": {"miss": 1},
        "gats": {"miss": 1},
        "set": {"stored": 2},
        "add": {"not_stored": 1},
        "append": {"stored": 1},
        "replace": {"stored": 1},
        "cas": {"exists": 1},
        "prepend": {"error": 1},
    }


def test_the_figures_the_alert_rules_read(tmp_path: Path) -> None:
    """docker/alerts.yml reads these: the limits, the disk the bound applies to, failed
    fsyncs and side writes, reclaim's lag (tests/test_alerts.py checks them live too)."""
    engine = open_engine(tmp_path / "db", Clock())
    try:
        collector = PetracacheCollector(Counters(), RequestMetrics())
        collector.engine = engine
        collector.server = ServerFigures(
            max_connections=321,
            disk_bound=lambda: 1 << 30,
            reclaim_lag=lambda: 17,
        )
        engine.counters.extra["read_write_failures"] = 5
        engine.sequence.sync_failures = 2
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        text = generate_latest(registry).decode()
        values = {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
    finally:
        engine.close()
    assert values["petracache_max_connections"] == 321
    assert values["petracache_disk_bound_bytes"] == 1 << 30
    assert values["petracache_wal_fsync_failures_total"] == 2
    assert values["petracache_wal_fsyncs_total"] == 0
    assert values["petracache_read_write_failures_total"] == 5
    assert values["petracache_reclaim_lag_seconds"] == 17
    assert values["petracache_disk_used_bytes"] > 0
    assert values["petracache_storage_errors_total"] == 0
    assert values["petracache_connections_rejected_total"] == 0
    assert values["petracache_cold_starts_total"] == 0
