"""The sidecar's Starlette application: three read-only routes, and ``POST /backup``.

Invariant: a route only reads plain objects the trio thread writes (``Readiness`` flags,
counters) and the Prometheus registry; it never calls into the data plane or waits for it.
``POST /backup`` (``admin.backup_route``) works on RocksDB from a worker thread, and only
for a request bearing the admin token (``admin.token``); the read-only routes need none.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from petracache.admin.backup_route import backup_route
from petracache.storage.backup import Backups


class ReadinessView(Protocol):
    """What /ready needs: ``app.Readiness`` satisfies it."""

    @property
    def ready(self) -> bool: ...


def create_app(
    readiness: ReadinessView,
    registry: CollectorRegistry,
    backups: Backups | None = None,
    token: str | None = None,
) -> Starlette:
    """The admin ASGI app.

    Args:
        readiness: read on every /ready request.
        registry: scraped on every /metrics request (collectors run then, on this thread).
        backups: serves ``POST /backup`` when given.
        token: what ``POST /backup`` requires as ``Authorization: Bearer`` (the contents of
            ``metrics.token_file``); None refuses it to everyone.
    """

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def ready(request: Request) -> Response:
        if readiness.ready:
            return PlainTextResponse("ready\n")
        detail = getattr(readiness, "detail", "")  # e.g. why writes cannot be made durable
        body = f"not ready: {detail}\n" if detail else "not ready\n"
        return PlainTextResponse(body, status_code=503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/health", health, methods=["GET", "HEAD"]),
        Route("/ready", ready, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET", "HEAD"]),
    ]
    if backups is not None:
        routes.append(backup_route(backups, token))
    return Starlette(routes=routes)
