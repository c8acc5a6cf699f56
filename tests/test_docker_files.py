"""The docker/ deployment files, validated as far as a machine without a Docker engine allows.

No image can be built here, so instead:

* the compose file parses as YAML and wires what the README says (three petracache services
  built from docker/Dockerfile, each with its own volume; mcrouter and Prometheus mounting
  their configs);
* the mcrouter config is valid JSON, its route names an existing pool, every petracache
  service is a server of that pool, and it is exactly what ``petracache.cluster.plan`` generates;
* the Prometheus config scrapes every petracache service's admin port;
* the Dockerfile has the promised shape (multi-stage, slim base, non-root user, volume, both
  ports, HEALTHCHECK on /ready at the configured admin address, exec-form ENTRYPOINT);
* the image's command is run for real: petracache is pip-installed into a fresh virtualenv
  the way the build stage does it, then started with the Dockerfile's own ENV and
  ENTRYPOINT (only the ports and data directory moved to free/temporary ones); it serves
  memcached traffic, the HEALTHCHECK command succeeds against it, and SIGTERM sent to that
  process (PID 1 in the container) shuts it down cleanly with status 0.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest

from petracache.cluster.plan import mcrouter_json
from tests.harness import RawClient, free_port, wait_for_port

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
PETRACACHE_SERVICES = ["petracache-1", "petracache-2", "petracache-3"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    pairs = []
    for line in logical:
        word, _, rest = line.partition(" ")
        pairs.append((word.upper(), rest.strip()))
    return pairs


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def one(stage: list[tuple[str, str]], word: str) -> str:
    found = [args for w, args in stage if w == word]
    assert len(found) == 1, f"expected one {word}, found {found}"
    return found[0]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in final_stage():
        if word == "ENV":
            for assignment in shlex.split(args):
                name, _, value = assignment.partition("=")
                env[name] = value
    return env


def healthcheck_command() -> list[str]:
    args = one(final_stage(), "HEALTHCHECK")
    _options, _, command = args.partition("CMD ")
    parsed: list[str] = json.loads(command)
    return parsed


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return data


def test_compose_file_wires_three_instances_mcrouter_and_prometheus(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == {*PETRACACHE_SERVICES, "mcrouter", "prometheus"}
    volumes = set()
    for name in PETRACACHE_SERVICES:
        service = services[name]
        assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
        assert service["environment"]["PETRACACHE_METRICS_ADDR"] == "0.0.0.0:9090"
        (volume,) = service["volumes"]
        source, target = volume.split(":")
        assert target == "/var/lib/petracache"
        volumes.add(source)
        assert (DOCKER / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert len(volumes) == 3  # one data volume per instance
    assert volumes <= set(compose["volumes"])
    mcrouter = services["mcrouter"]
    assert "./mcrouter.json:/etc/mcrouter/mcrouter.json:ro" in mcrouter["volumes"]
    assert "--config=file:/etc/mcrouter/mcrouter.json" in mcrouter["command"]
    assert set(mcrouter["depends_on"]) == set(PETRACACHE_SERVICES)
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]
    # the alert rules sit beside the config, where its relative rule_files entry points
    assert "./alerts.yml:/etc/prometheus/alerts.yml:ro" in services["prometheus"]["volumes"]


def test_mcrouter_config_routes_to_every_instance(compose: dict[str, Any]) -> None:
    text = (DOCKER / "mcrouter.json").read_text()
    config = json.loads(text)
    pools = config["pools"]
    route = config["route"]
    # Only reads fail over; writes and deletes go to the key's own server (the primary).
    assert route["type"] == "OperationSelectorRoute"
    primary = route["default_policy"]
    assert primary == {"type": "PoolRoute", "pool": "petracache", "hash": {"hash_func": "Ch3"}}
    policies = route["operation_policies"]
    assert set(policies) == {"get", "gets", "metaget", "lease-get"}
    for policy in policies.values():
        assert policy["type"] == "FailoverRoute"
        children = policy["children"]
        assert children[0] == primary  # the key's own server first
        assert all(child["pool"] in pools for child in children)
    servers = {server for pool in pools.values() for server in pool["servers"]}
    petracache_services = {name for name in compose["services"] if name.startswith("petracache")}
    assert servers == {f"{name}:11211" for name in petracache_services}
    assert text == mcrouter_json([f"{name}:11211" for name in PETRACACHE_SERVICES])


def test_prometheus_scrapes_every_instance(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:9090" for name in PETRACACHE_SERVICES}


def test_dockerfile_shape() -> None:
    instructions = dockerfile_instructions()
    froms = [args for word, args in instructions if word == "FROM"]
    assert len(froms) >= 2  # multi-stage
    assert all("-slim" in base.split()[0] for base in froms)
    stage = final_stage()
    assert any(word == "COPY" and args.startswith("--from=build ") for word, args in stage)
    user = one(stage, "USER")
    assert user not in ("root", "0")
    assert json.loads(one(stage, "VOLUME")) == ["/var/lib/petracache"]
    assert set(one(stage, "EXPOSE").split()) == {"11211", "9090"}
    assert healthcheck_command() == ["python", "-m", "petracache.admin.healthcheck"]  # asks /ready
    entrypoint = json.loads(one(stage, "ENTRYPOINT"))  # exec form: JSON, no shell
    assert entrypoint == ["petracache"]
    env = image_env()
    assert env["PETRACACHE_LISTEN_ADDR"].startswith("0.0.0.0:")
    assert env["PETRACACHE_METRICS_ADDR"] == "0.0.0.0:9090"
    assert env["PETRACACHE_DB_PATH"].startswith("/var/lib/petracache/")


def image_base_env() -> dict[str, str]:
    """This environment without what the image does not have (PETRACACHE_*, PYTHONPATH)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PETRACACHE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }


def caller_site_packages() -> list[str]:
    """This interpreter's site-packages directories, in import order.

    They are what the running tests import their dependencies from: a virtual environment's
    own site-packages, plus the base interpreter's when that environment sees them, or the
    base (or user) site-packages when the tests run outside any virtual environment.
    """
    return [
        entry
        for entry in sys.path
        if Path(entry).name in ("site-packages", "dist-packages") and Path(entry).is_dir()
    ]


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """petracache pip-installed into a fresh virtualenv, as the build stage does.

    The dependencies come from this interpreter's site-packages, so no network is needed: a
    ``.pth`` file in the new environment lists them after its own site-packages. (A venv
    built with ``system_site_packages=True`` would see the *base* interpreter's packages,
    not those of a virtual environment the tests run in.) petracache itself is installed
    into the new environment's own site-packages, which comes first on its path.
    """
    root = tmp_path_factory.mktemp("image") / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(root)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "_caller_site_packages.pth").write_text(
        "".join(f"{entry}\n" for entry in caller_site_packages())
    )
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    subprocess.run(
        [*pip, "install", "-q", "--no-deps", "--disable-pip-version-check", str(ROOT)],
        check=True,
        timeout=300,
    )
    installed = subprocess.run(
        [python, "-c", "import petracache, prometheus_client; print(petracache.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env=image_base_env(),
    ).stdout.strip()
    assert Path(installed).is_relative_to(purelib), installed  # the copy pip just installed
    return root


def server_log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else "(no log file)"


@pytest.mark.integration
def test_image_command_serves_passes_healthcheck_and_stops_on_sigterm(
    image_venv: Path, tmp_path: Path
) -> None:
    data_port, admin_port = free_port(), free_port()
    env = image_base_env()
    for name, value in image_env().items():
        env[name] = value.replace("$PATH", os.environ["PATH"])
    env["PATH"] = f"{image_venv / 'bin'}:{os.environ['PATH']}"
    env["PETRACACHE_LISTEN_ADDR"] = f"0.0.0.0:{data_port}"
    env["PETRACACHE_METRICS_ADDR"] = f"0.0.0.0:{admin_port}"
    env["PETRACACHE_DB_PATH"] = str(tmp_path / "rocksdb")
    stage = final_stage()
    entrypoint = json.loads(one(stage, "ENTRYPOINT")) + json.loads(one(stage, "CMD"))
    executable = image_venv / "bin" / entrypoint[0]
    assert executable.is_file()  # the console script the image puts on PATH
    log_path = tmp_path / "server.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [executable, *entrypoint[1:]], env=env, cwd=tmp_path, stdout=log, stderr=log
    )
    try:
        try:
            wait_for_port(data_port)
        except TimeoutError:
            status = proc.poll()
            pytest.fail(
                f"the image command did not start (exit status {status}); its log:\n"
                + server_log(log_path)
            )
        client = RawClient(data_port)
        client.send(b"set docker 0 0 2\r\nok\r\nget docker\r\n")
        assert client.read_until(b"END\r\n") == b"STORED\r\nVALUE docker 0 2\r\nok\r\nEND\r\n"
        client.close()
        wait_for_port(admin_port)
        check = [
            arg.replace("127.0.0.1:9090", f"127.0.0.1:{admin_port}")
            for arg in healthcheck_command()
        ]
        assert check[0] == "python"
        result = subprocess.run(
            [image_venv / "bin" / "python", *check[1:]], env=env, timeout=30, check=False
        )
        assert result.returncode == 0  # the HEALTHCHECK passes
        proc.send_signal(signal.SIGTERM)  # what `docker stop` sends to PID 1
        assert proc.wait(30) == 0, server_log(log_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
