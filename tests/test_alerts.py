"""The shipped Prometheus alert rules (docker/alerts.yml), checked with Debian's Prometheus.

* ``promtool check rules`` and ``promtool check config`` (the compose stack's
  docker/prometheus.yml, which loads the rules);
* ``promtool test rules tests/alerts_test.yml``: for every alert, input series that fire it
  (labels and rendered annotations compared) and series that must not; a test here checks
  that every alert has such a case;
* end to end: a real Prometheus scrapes a live petracache's admin port (127.0.0.1, free
  ports, a temporary directory, bounded waits) with the rules loaded, and its HTTP API must
  know every series the rules read and report every rule healthy.

Skipped, with the reason, when ``promtool``/``prometheus`` are not installed
(``apt-get install prometheus``; scripts/test installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from petracache.observability.counters import Counters
from tests.harness import PetracacheProcess, free_port, wait_until

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "docker" / "alerts.yml"
RULE_TESTS = ROOT / "tests" / "alerts_test.yml"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)"
)
# Names in a PromQL expression that are series (not functions, keywords or label names).
SERIES = re.compile(r"\b(petracache_\w+|up|process_start_time_seconds)\b(?!\s*\()")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=120, check=False
    )


def _rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def series_used() -> set[str]:
    """Every series name the rules' expressions read."""
    return {name for rule in _rules() for name in SERIES.findall(rule["expr"])}


@needs_promtool
def test_rules_and_the_compose_config_check() -> None:
    rules = _promtool("check", "rules", str(RULES))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in rules.stdout
    config = _promtool("check", "config", str(ROOT / "docker" / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


@needs_promtool
def test_every_alert_fires_and_holds_on_its_input_series() -> None:
    done = _promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_firing_test_case() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        check["alertname"]
        for case in cases
        for check in case["alert_rule_test"]
        if check["exp_alerts"]
    }
    assert fired == {rule["alert"] for rule in _rules()}


def test_the_rules_read_series_petracache_exports() -> None:
    """Each petracache_* name in the rules is one /metrics exports (the live check below
    confirms it end to end), and ``up`` is matched on the shipped scrape job's name."""
    scrape = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert f'up{{job="{job["job_name"]}"}}' in RULES.read_text()
    assert series_used() >= {"up", "petracache_current_connections", "petracache_max_connections"}


# -- a real Prometheus scraping a real petracache ----------------------------------------------


def _listen_disabled_exported() -> bool:
    """``petracache_listen_disabled_total`` comes from the ``listen_disabled_num`` counter
    (memcached's stats field), which is exported under that name once it exists."""
    return "listen_disabled_num" in {f.name for f in fields(Counters)}


def _api(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else f"{base}{path}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = json.loads(reply.read())
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, PetracacheProcess]]:
    if PROMETHEUS is None:
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    with PetracacheProcess(tmp_path / "pc") as server:
        target = server.admin_url().removeprefix("http://")
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {RULES}\n"
            "scrape_configs:\n"
            "  - job_name: petracache\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        port = free_port()
        log = (tmp_path / "prometheus.log").open("w")
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}", server
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


@pytest.mark.integration
def test_prometheus_scrapes_every_series_the_rules_use(
    prometheus: tuple[str, PetracacheProcess],
) -> None:
    base, _server = prometheus
    wanted = series_used()
    if not _listen_disabled_exported():
        wanted.discard("petracache_listen_disabled_total")
    absent = set(wanted)

    def scraped() -> bool:
        try:
            for name in list(absent):
                if _api(base, "/api/v1/query", query=name)["result"]:
                    absent.discard(name)
        except OSError:
            return False  # Prometheus still starting
        return not absent

    try:
        wait_until(scraped, 60, interval=0.5, what="every series the rules read scraped")
    except TimeoutError:
        pytest.fail(f"series the rules read that Prometheus never scraped: {sorted(absent)}")
    up = _api(base, "/api/v1/query", query='up{job="petracache"}')["result"]
    assert [sample["value"][1] for sample in up] == ["1"]

    def evaluated() -> list[dict[str, Any]] | None:
        groups = _api(base, "/api/v1/rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if rules and all(r["health"] != "unknown" for r in rules) else None

    rules = wait_until(evaluated, 30, what="every rule evaluated")
    assert {rule["name"] for rule in rules} == {rule["alert"] for rule in _rules()}
    assert all(rule["health"] == "ok" for rule in rules), [
        (rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"
    ]
    assert _api(base, "/api/v1/alerts")["alerts"] == []  # a healthy idle server fires nothing
