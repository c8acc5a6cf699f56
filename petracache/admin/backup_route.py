"""``POST /backup``: an online backup of the serving database (``storage.backup``).

The request carries no path: the backup goes under ``storage.backup_dir``. The checkpoint
runs in a worker thread of the sidecar (Starlette's thread pool), never on the trio thread,
and holds the GIL only for its last, short part (measured in docs/runbook-backup.md).

Replies (JSON): 200 ``{"path", "seconds", "removed"}``; 409 while another backup runs; 503
before the database is open or while it closes; 500 when RocksDB or the filesystem failed.
It changes the disk, so it needs the admin token (``admin.token``: 401/403 without it).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from petracache.admin.token import require_token
from petracache.storage.backup import BackupBusy, BackupError, Backups, BackupUnavailable


def backup_route(backups: Backups, token: str | None) -> Route:
    """The route that makes a backup with ``backups``, for requests bearing ``token``
    (None: refused, no token is configured)."""

    async def backup(request: Request) -> Response:
        try:
            result = await run_in_threadpool(backups.create)
        except BackupBusy as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        except BackupUnavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        except BackupError as exc:
            return JSONResponse({"error": str(exc)}, status_code=500)
        return JSONResponse(
            {"path": result.path, "seconds": round(result.seconds, 3), "removed": result.removed}
        )

    return Route("/backup", require_token(backup, token, "POST /backup"), methods=["POST"])
