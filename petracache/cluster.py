"""Scale-out on one host: N petracache instances behind a memcached router.

One petracache process runs on one core (one trio thread; RocksDB's background threads aside),
so a host with N cores runs N instances and a router shards keys across them. Instance ``i``
(from 0) gets data port ``base_port + i``, admin port ``admin_base_port + i`` and data
directory ``<data_dir>/<name>-<i>``: nothing is shared, so any instance can restart on its
own directory and serve its shard again.

Router configurations are generated from the same plan, so they can never disagree with it:

* twemproxy (nutcracker) YAML: ketama consistent hashing, each server named ``<name>-<i>``
  (ketama hashes the name, so moving an instance to another port keeps its keys), with
  optional auto-ejection of a dead server;
* mcrouter JSON: a consistent-hashing (Ch3) pool behind an OperationSelectorRoute. Reads
  (get, gets, metaget, lease-get) go through a FailoverRoute whose extra children re-hash
  the key with a salt, so a read whose server is down is answered by another live one (a
  miss, then whatever the client fills). Writes and deletes go to the key's own server
  only, and fail while it is down: a write that failed over would land on another shard
  and be shadowed by the old value once the owner is back, and a delete that failed over
  would leave the owner's copy in place. See docs/deployment.md ("Routers and failover").

Command line (``petracache-cluster`` or ``python -m petracache.cluster``)::

    petracache-cluster config nutcracker -n 4          # print a router config
    petracache-cluster run -n 2 --router-port 22121     # run 2 instances + nutcracker

``run`` starts the instances (and nutcracker when ``--router-port`` is given; refused when
nutcracker is not installed) and supervises them (``petracache.supervisor``): a crashed
instance is restarted with back-off on its own data, every output line is prefixed with its
instance's name, SIGTERM/SIGINT stop every child cleanly, and the command exits non-zero
when it gives up on a child that keeps crashing. For production, run one systemd unit per
instance instead (``deploy/petracache@.service``, docs/deployment.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from petracache.supervisor import BACKOFF_FIRST, MAX_CRASHES, Child, Supervisor

DEFAULT_POOL = "petracache"
NUTCRACKER_PATHS = ("nutcracker", "/usr/sbin/nutcracker")
FAILOVER_SALTS = ("failover-1", "failover-2")  # two re-hashes: a 2nd dead server is skipped too
# mcrouter operation names that may fail over; every other operation (sets, deletes, touch,
# arithmetic, lease-set) goes to the key's own server only.
FAILOVER_OPERATIONS = ("get", "gets", "metaget", "lease-get")


@dataclass(frozen=True, slots=True)
class Instance:
    """One petracache process of the plan."""

    name: str
    host: str
    port: int
    admin_port: int
    db_path: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self, python: str = sys.executable, config: str | None = None) -> list[str]:
        """The exact command line that starts this instance (``config``: a TOML file every
        instance reads; the flags here, its own address and directory, win over it)."""
        return [
            python,
            "-m",
            "petracache",
            *([config] if config else []),
            "-l",
            self.host,
            "-p",
            str(self.port),
            "--db-path",
            str(self.db_path),
        ]

    def env(self) -> dict[str, str]:
        """Environment additions: the admin sidecar's own port."""
        return {"PETRACACHE_METRICS__LISTEN_ADDR": f"{self.host}:{self.admin_port}"}


def plan(
    count: int,
    *,
    host: str = "127.0.0.1",
    base_port: int = 11211,
    admin_base_port: int = 9090,
    data_dir: str | Path = "./data",
    name: str = "pc",
) -> list[Instance]:
    """``count`` instances on consecutive data and admin ports, one data directory each."""
    if count < 1:
        raise ValueError("count must be at least 1")
    return [
        Instance(
            f"{name}-{i}",
            host,
            base_port + i,
            admin_base_port + i if admin_base_port else 0,  # 0: any free port
            Path(data_dir) / f"{name}-{i}",
        )
        for i in range(count)
    ]


def nutcracker_yaml(
    instances: Sequence[Instance],
    *,
    listen: str = "127.0.0.1:22121",
    pool: str = DEFAULT_POOL,
    auto_eject: bool = True,
    server_failure_limit: int = 2,
    server_retry_timeout_ms: int = 2000,
    timeout_ms: int = 1000,
) -> str:
    """A twemproxy pool over ``instances`` with ketama hashing.

    With ``auto_eject`` a server that fails ``server_failure_limit`` times in a row leaves the
    ring (its keys go to the others) and is retried after ``server_retry_timeout_ms``.
    """
    lines = [
        f"{pool}:",
        f"  listen: {listen}",
        "  hash: fnv1a_64",
        "  distribution: ketama",
        f"  timeout: {timeout_ms}",
        "  backlog: 1024",
        "  preconnect: true",
        f"  auto_eject_hosts: {'true' if auto_eject else 'false'}",
        f"  server_retry_timeout: {server_retry_timeout_ms}",
        f"  server_failure_limit: {server_failure_limit}",
        "  servers:",
    ]
    lines += [f"   - {inst.address}:1 {inst.name}" for inst in instances]
    return "\n".join(lines) + "\n"


def mcrouter_config(servers: Sequence[str], *, pool: str = DEFAULT_POOL) -> dict[str, Any]:
    """An mcrouter config: a Ch3 consistent-hashing pool; only reads fail over.

    Every operation goes to the key's server on the ring (``default_policy``). The read
    operations instead go through a FailoverRoute: if that server errors or is marked down
    (TKO), the next child re-hashes the key with a salt onto the same pool.
    """
    primary: dict[str, Any] = {"type": "PoolRoute", "pool": pool, "hash": {"hash_func": "Ch3"}}
    failover = {
        "type": "FailoverRoute",
        "children": [
            primary,
            *(
                {"type": "PoolRoute", "pool": pool, "hash": {"hash_func": "Ch3", "salt": salt}}
                for salt in FAILOVER_SALTS
            ),
        ],
    }
    return {
        "pools": {pool: {"servers": list(servers)}},
        "route": {
            "type": "OperationSelectorRoute",
            "default_policy": primary,
            "operation_policies": dict.fromkeys(FAILOVER_OPERATIONS, failover),
        },
    }


def mcrouter_json(servers: Sequence[str], *, pool: str = DEFAULT_POOL) -> str:
    return json.dumps(mcrouter_config(servers, pool=pool), indent=2) + "\n"


def find_nutcracker() -> str | None:
    for candidate in NUTCRACKER_PATHS:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _run(args: argparse.Namespace) -> int:
    instances = plan(
        args.count,
        host=args.host,
        base_port=args.base_port,
        admin_base_port=args.admin_base_port,
        data_dir=args.data_dir,
    )
    nutcracker = find_nutcracker() if args.router_port else None
    if args.router_port and nutcracker is None:
        print(
            "petracache-cluster: --router-port needs nutcracker (twemproxy), which is not"
            f" installed (looked for {', '.join(NUTCRACKER_PATHS)})",
            file=sys.stderr,
        )
        return 2
    config = str(Path(args.config).resolve()) if args.config else None
    if config is not None and not Path(config).is_file():
        print(f"petracache-cluster: --config {args.config}: no such file", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    children = [
        Child(inst.name, inst.command(config=config), {**os.environ, **inst.env()})
        for inst in instances
    ]
    if nutcracker is not None:
        conf = data_dir / "nutcracker.yml"
        conf.write_text(nutcracker_yaml(instances, listen=f"{args.host}:{args.router_port}"))
        stats = ["-s", str(args.router_stats_port), "-a", args.host]
        children.append(Child("nutcracker", [nutcracker, "-c", str(conf), *stats]))
    (data_dir / "mcrouter.json").write_text(mcrouter_json([i.address for i in instances]))
    supervisor = Supervisor(children, max_crashes=args.max_restarts, backoff=args.backoff)
    signal.signal(signal.SIGTERM, lambda signum, _frame: supervisor.stop(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: supervisor.stop(signum))
    for inst in instances:
        supervisor.say(f"{inst.name}: data {inst.address} admin {inst.host}:{inst.admin_port}")
    return supervisor.run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="petracache-cluster", description="Run N petracache instances behind a router."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("config", "run"):
        p = sub.add_parser(action)
        if action == "config":
            p.add_argument("router", choices=["nutcracker", "mcrouter"])
        p.add_argument("-n", "--count", type=int, default=os.cpu_count() or 1)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--base-port", type=int, default=11211)
        p.add_argument("--admin-base-port", type=int, default=9090)
        p.add_argument("--data-dir", default="./data")
        p.add_argument("--router-port", type=int, default=0, help="nutcracker listen port")
        p.add_argument("--router-stats-port", type=int, default=22222, help="nutcracker stats")
        if action == "run":
            p.add_argument(
                "--config",
                metavar="FILE",
                help="petracache TOML config file passed to every instance (addresses and"
                " data directories still come from the plan)",
            )
            p.add_argument(
                "--max-restarts",
                type=int,
                default=MAX_CRASHES,
                help="restarts of a crashing instance, with none up 30s between, before giving"
                " up (then every instance is stopped and the command exits 1)",
            )
            p.add_argument(
                "--backoff",
                type=float,
                default=BACKOFF_FIRST,
                help="seconds before the first restart; doubles per crash, up to 30",
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``petracache-cluster``."""
    args = build_parser().parse_args(argv)
    if args.action == "run":
        return _run(args)
    instances = plan(
        args.count,
        host=args.host,
        base_port=args.base_port,
        admin_base_port=args.admin_base_port,
        data_dir=args.data_dir,
    )
    if args.router == "nutcracker":
        listen = f"{args.host}:{args.router_port or 22121}"
        sys.stdout.write(nutcracker_yaml(instances, listen=listen))
    else:
        sys.stdout.write(mcrouter_json([i.address for i in instances]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
