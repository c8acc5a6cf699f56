"""The admin sidecar's credential: a bearer token for the routes that change something.

The read-only routes (``/health``, ``/ready``, ``/metrics``) stay open, so a load balancer or
Prometheus needs nothing. A route that acts (``POST /backup``) requires
``Authorization: Bearer <token>``, the token being the contents of ``metrics.token_file``
(surrounding whitespace ignored), compared with ``hmac.compare_digest`` so the comparison
takes the same time however much of a wrong token matches. Replies (JSON ``{"error"}``):

* 403 when the server has no token file: nothing can authorize the route, so it is off;
* 401 (with ``WWW-Authenticate: Bearer``) when the request carries no bearer token;
* 403 when it carries a wrong one.

``petracache backup --token-file`` reads the same file (``tools/backup_cli.py``).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

Endpoint = Callable[[Request], Awaitable[Response]]


class TokenFileError(Exception):
    """The token file cannot be used; the text says why (it never contains the token)."""


def load_token(path: str) -> str:
    """The token in ``path`` (whitespace around it dropped).

    Raises:
        TokenFileError: the file cannot be read, or holds no token.
    """
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TokenFileError(f"{path}: {reason}") from None
    if not token:
        raise TokenFileError(f"{path}: empty (write a token in it, e.g. 32 random bytes)")
    if any(c.isspace() for c in token):
        raise TokenFileError(f"{path}: the token must be one word (no spaces or newlines)")
    return token


def _error(status: int, message: str) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="petracache"'} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def require_token(endpoint: Endpoint, token: str | None, name: str) -> Endpoint:
    """``endpoint`` behind the bearer token (see the module doc); ``name`` is the route, for
    the messages."""
    expected = token.encode() if token is not None else None

    async def guarded(request: Request) -> Response:
        if expected is None:
            return _error(403, f"{name} is off: the server has no metrics.token_file")
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return _error(401, f"{name} needs an Authorization: Bearer <token> header")
        if not hmac.compare_digest(presented.strip().encode(), expected):
            return _error(403, f"{name}: wrong token")
        return await endpoint(request)

    return guarded
