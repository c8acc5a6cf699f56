"""``petracache-cluster`` (also ``python -m petracache.cluster``): print a router
configuration for a plan (``plan``), or run the plan on this host::

    petracache-cluster config nutcracker -n 4          # print a router config
    petracache-cluster run -n 2 --router-port 22121     # run 2 instances + nutcracker

``run`` starts the instances (and nutcracker when ``--router-port`` is given; refused when
nutcracker is not installed) and supervises them (``supervisor``): a crashed instance is
restarted with back-off on its own data, every output line is prefixed with its instance's
name, SIGTERM/SIGINT stop every child cleanly, and the command exits non-zero when it gives
up on a child that keeps crashing. For production, run one systemd unit per instance
instead (``deploy/petracache@.service``, docs/deployment.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from petracache.cluster.plan import Instance, mcrouter_json, nutcracker_yaml, plan
from petracache.cluster.supervisor import BACKOFF_FIRST, MAX_CRASHES, Child, Supervisor

NUTCRACKER_PATHS = ("nutcracker", "/usr/sbin/nutcracker")


def find_nutcracker() -> str | None:
    for candidate in NUTCRACKER_PATHS:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _planned(args: argparse.Namespace) -> list[Instance]:
    """The instances the command line asks for."""
    return plan(
        args.count,
        host=args.host,
        base_port=args.base_port,
        admin_base_port=args.admin_base_port,
        data_dir=args.data_dir,
    )


def _run(args: argparse.Namespace) -> int:
    instances = _planned(args)
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
    instances = _planned(args)
    if args.router == "nutcracker":
        listen = f"{args.host}:{args.router_port or 22121}"
        sys.stdout.write(nutcracker_yaml(instances, listen=listen))
    else:
        sys.stdout.write(mcrouter_json([i.address for i in instances]))
    return 0
