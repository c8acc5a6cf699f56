"""Runs the admin app on uvicorn in a thread of its own.

uvicorn is asyncio-only and the data plane is trio, so uvicorn gets its own thread and
event loop (off the main thread it installs no signal handlers). The listening socket is
bound on the caller's thread first, so a bad or busy address fails start-up with a clear
message and port 0 reports the port the OS picked. ``stop`` sets ``should_exit``; uvicorn's
main loop notices within a tick (0.1 s) and returns.
"""

from __future__ import annotations

import logging
import socket

import uvicorn
from starlette.applications import Starlette

log = logging.getLogger(__name__)


class AdminServer:
    """One uvicorn server on a pre-bound socket.

    Args:
        app: the ASGI application.
        host: address to bind (IPv6 literals without brackets).
        port: TCP port, 0 for any free one.

    Raises:
        OSError: from ``__init__`` when the address cannot be bound.
    """

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, backlog=128)
        self.address: tuple[str, int] = self.socket.getsockname()[:2]
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)

    def serve(self) -> None:
        """Serve until ``stop`` (blocking: call it in a thread). Never raises."""
        try:
            self._server.run(sockets=[self.socket])
        except BaseException:  # the data plane must not die with its sidecar
            log.exception("admin server failed; /health, /ready and /metrics are down")
        finally:
            self.socket.close()

    def stop(self) -> None:
        """Ask the server to exit (any thread; returns at once)."""
        self._server.should_exit = True
