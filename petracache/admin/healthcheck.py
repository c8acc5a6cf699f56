"""``python -m petracache.admin.healthcheck``: exit 0 when this host's petracache is ready.

The container HEALTHCHECK (and any local probe) asks ``/ready`` at the admin address the
server itself was given through the environment (``PETRACACHE_METRICS__LISTEN_ADDR`` or its
flat alias ``PETRACACHE_METRICS_ADDR``; else the default ``127.0.0.1:9090``). A wildcard
address (``0.0.0.0``, ``::``) is asked on loopback. ``/ready`` rather than ``/health``: a
server still opening its database, draining, or out of descriptors at accept is alive but
should not get traffic.
"""

from __future__ import annotations

import os
import sys
import urllib.request

DEFAULT_ADMIN = "127.0.0.1:9090"
TIMEOUT = 2.0  # seconds; the Dockerfile's --timeout is 3s
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def ready_url(env: dict[str, str]) -> str:
    """The /ready URL for the admin address in ``env``."""
    addr = env.get("PETRACACHE_METRICS__LISTEN_ADDR") or env.get(
        "PETRACACHE_METRICS_ADDR", DEFAULT_ADMIN
    )
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    host = _WILDCARDS.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/ready"


def main() -> int:
    try:
        with urllib.request.urlopen(ready_url(dict(os.environ)), timeout=TIMEOUT) as reply:
            return 0 if reply.status == 200 else 1
    except OSError as exc:  # refused, timed out, or HTTP 503 (HTTPError is an OSError)
        print(f"petracache not ready: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
