"""The plan of a cluster on one host: N petracache instances, and the configurations of the
memcached router in front of them.

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
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_POOL = "petracache"
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
