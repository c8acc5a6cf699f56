"""The admin app in-process (Starlette's TestClient): routes, readiness states, metrics text.

Readiness during start-up is checked here, where the start state can be held still; the
drain state is also checked end to end in tests/e2e/test_shutdown.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from petracache.admin.routes import create_app
from petracache.admin.token import TokenFileError, load_token
from petracache.app import Readiness
from petracache.observability.counters import Counters
from petracache.observability.metrics import LATENCY_BOUNDS, PetracacheCollector
from petracache.observability.request_metrics import RequestMetrics
from petracache.protocol.requests import Delete, Get, Store
from petracache.protocol.responses import Response, Status, Values
from petracache.rules.verbs import StoreMode
from petracache.storage.backup import Backups


def make(readiness: Readiness) -> tuple[TestClient, Counters, RequestMetrics]:
    counters = Counters()
    requests = RequestMetrics()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PetracacheCollector(counters, requests))
    return TestClient(create_app(readiness, registry)), counters, requests


def test_health_always_200_and_ready_follows_the_lifecycle() -> None:
    readiness = Readiness()
    client, _, _ = make(readiness)
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 503  # starting: nothing open yet
    readiness.db_open = True
    assert client.get("/ready").status_code == 503  # database open, port not bound yet
    readiness.accepting = True
    assert client.get("/ready").status_code == 200
    readiness.draining = True
    assert client.get("/ready").status_code == 503
    assert client.get("/health").status_code == 200
    assert client.get("/nope").status_code == 404


def fake_execute(request: object) -> Response:
    if isinstance(request, Get):
        return Values([(request.keys[0], 0, 1, b"v")], request.return_cas)
    if isinstance(request, Store):
        return Status.STORED
    return Status.NOT_FOUND


def test_metrics_text_parses_and_counts_by_command_and_result() -> None:
    client, counters, requests = make(Readiness())
    execute = requests.instrument(fake_execute)
    execute(Get([b"a", b"b", b"c"], return_cas=False))
    execute(Get([b"a"], return_cas=True))
    execute(Store(StoreMode.ADD, b"a", 0, 0, b"x"))
    execute(Delete(b"zz"))
    counters.curr_connections = 3
    counters.total_connections = 7
    reply = client.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    samples = {
        (s.labels["command"], s.labels["result"]): s.value
        for s in families["petracache_requests"].samples
    }
    assert samples == {
        ("get", "hit"): 1,
        ("get", "miss"): 2,
        ("gets", "hit"): 1,
        ("add", "stored"): 1,
        ("delete", "not_found"): 1,
    }
    hist = families["petracache_request_duration_seconds"]
    counts = {s.labels["command"]: s.value for s in hist.samples if s.name.endswith("_count")}
    assert counts == {"get": 1, "gets": 1, "add": 1, "delete": 1}
    buckets = [s for s in hist.samples if s.name.endswith("_bucket")]
    assert len(buckets) == 4 * (len(LATENCY_BOUNDS) + 1)
    assert families["petracache_current_connections"].samples[0].value == 3
    assert families["petracache_connections"].samples[0].value == 7


def test_starlette_testclient_imports_without_a_deprecation_warning() -> None:
    """Starlette 1.x warns when its TestClient runs on plain httpx; the test extra installs
    httpx2, the client it now asks for. A fresh interpreter, so the import really runs."""
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import starlette.testclient"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# -- the admin token ----------------------------------------------------------------------


def _guarded(token: str | None, tmp_path: Path) -> TestClient:
    registry = CollectorRegistry(auto_describe=False)
    backups = Backups(str(tmp_path / "backups"), 1)  # no engine attached: 503 once through
    return TestClient(create_app(Readiness(), registry, backups, token))


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Basic dTpw"}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": "Bearer wrong"}, 403),
        ({"Authorization": "Bearer s3cret-token-but-longer"}, 403),
        ({"Authorization": "Bearer s3cret-token"}, 503),  # through: the database is not open
        ({"Authorization": "bearer  s3cret-token "}, 503),
    ],
)
def test_backup_needs_the_token(tmp_path: Path, headers: dict[str, str], status: int) -> None:
    client = _guarded("s3cret-token", tmp_path)
    reply = client.post("/backup", headers=headers)
    assert reply.status_code == status
    assert "error" in reply.json()
    assert "s3cret" not in reply.text
    if status == 401:
        assert reply.headers["www-authenticate"] == 'Bearer realm="petracache"'


def test_backup_is_off_without_a_token_file_and_reads_stay_open(tmp_path: Path) -> None:
    client = _guarded(None, tmp_path)
    reply = client.post("/backup", headers={"Authorization": "Bearer anything"})
    assert reply.status_code == 403
    assert "metrics.token_file" in reply.json()["error"]
    for token in (None, "t"):
        client = _guarded(token, tmp_path)
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 503  # not ready, but answered
        assert client.get("/metrics").status_code == 200


def test_load_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  abc123\n")
    assert load_token(str(path)) == "abc123"
    for content, message in (("\n", "empty"), ("two words", "one word")):
        path.write_text(content)
        with pytest.raises(TokenFileError, match=message):
            load_token(str(path))
    with pytest.raises(TokenFileError, match="No such file"):
        load_token(str(tmp_path / "missing"))
