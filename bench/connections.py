"""Memory per connection: 10,000 connections held open while a load runs.

``python -m bench.connections [--connections 10000] [--seconds 5]``

Steps, against one fresh petracache (pinned like every benchmark, see ``bench.common``):
measure the load generator's throughput (50 connections, 90% gets) alone; open N extra
connections, each of which completes one ``version`` round trip (so the server has accepted
it and started its handler) and then stays idle; read the server's RSS (``VmRSS``); run the
same load again with the N connections still open; close them. Prints RSS before and
after, the difference per held connection, and both throughputs.
"""

from __future__ import annotations

import argparse
import resource
import socket
import tempfile
from pathlib import Path

from bench.common import Petracache, run_loadgen

LOAD = ["-g", "0.9", "-c", "50", "-v", "100", "-k", "10000", "-w", "1"]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def hold(port: int, count: int) -> list[socket.socket]:
    """``count`` connections, each answered once, then left idle."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"version\r\n")
        socks.append(s)
    for s in socks:
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(100)
            if not chunk:
                raise RuntimeError("server closed a held connection")
            reply += chunk
        if not reply.startswith(b"VERSION "):
            raise RuntimeError(f"unexpected reply {reply!r}")
    return socks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    opts = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, opts.connections + 1000), hard))
    with tempfile.TemporaryDirectory() as tmp:
        args = ["-c", str(opts.connections + 200)]
        with Petracache(Path(tmp) / "pc", args=args) as server:
            assert server.proc is not None
            pid = server.proc.pid
            run_loadgen(server.port, ["-L", *LOAD])  # fill the key space
            alone = run_loadgen(server.port, [*LOAD, "-t", str(opts.seconds)])
            before = rss_bytes(pid)
            held = hold(server.port, opts.connections)
            after = rss_bytes(pid)
            loaded = run_loadgen(server.port, [*LOAD, "-t", str(opts.seconds)])
            during = rss_bytes(pid)
            for s in held:
                s.close()
    per = (after - before) / opts.connections
    print(f"held connections:        {opts.connections}")
    print(f"server RSS before:       {before / 2**20:.1f} MiB")
    print(f"server RSS held:         {after / 2**20:.1f} MiB  (+{per / 1024:.1f} KiB each)")
    print(f"server RSS held+load:    {during / 2**20:.1f} MiB")
    print(f"load alone:              {alone.ops_per_sec:.0f} ops/s, p99 {alone.p99_us:.0f} us")
    print(f"load with held conns:    {loaded.ops_per_sec:.0f} ops/s, p99 {loaded.p99_us:.0f} us")


if __name__ == "__main__":
    main()
