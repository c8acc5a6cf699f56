"""execute(request) -> response: the seam between the protocol and storage layers.

Strategy: every command module (``classic``, ``meta``, ``mcrouter``, ``crawler``) exposes
``HANDLERS``, a
table from request type to a ``(ctx, request) -> Response`` handler; the executor merges them
once and dispatches on ``type(request)`` (one dict lookup, no chain of type tests). It does
nothing else but turn a ``StorageError`` into ``SERVER_ERROR <reason>``: a storage failure
never escapes to the connection. A store refused at the disk bound with eviction off
(``OutOfMemory``, memcached -M) is memcached's ``SERVER_ERROR out of memory storing object``,
counted in ``store_no_memory`` and not logged (the binary protocol answers it ``Out of
memory``, as it does any storage failure).

Synchronous by design (see ``storage.engine``): a command runs to completion on the trio
thread, so read-modify-write commands are atomic. Counters move only in ``commands``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from petracache.commands import admin, binary, classic, crawler, mcrouter, meta
from petracache.commands.context import Context, Handler
from petracache.commands.stats import ServerInfo
from petracache.observability.counters import Counters
from petracache.observability.watch import WatchLog
from petracache.protocol.requests import Request
from petracache.protocol.responses import ErrorReply, Response
from petracache.storage.engine import Engine
from petracache.storage.errors import OutOfMemory, StorageError

log = logging.getLogger(__name__)

NO_MEMORY = ErrorReply(b"SERVER_ERROR out of memory storing object\r\n")  # proto_text.c

HANDLERS: dict[type, Handler] = {
    **classic.HANDLERS,
    **mcrouter.HANDLERS,
    **meta.HANDLERS,
    **crawler.HANDLERS,
    **admin.HANDLERS,
    **binary.HANDLERS,
}


class Executor:
    """Runs requests against an engine, keeping memcached's counters.

    Args:
        engine: the open engine.
        counters: the process's counters (shared with the server and ``/metrics``).
        info: what ``stats`` reports about the server.
        watch: the ``watch`` log the commands report to (a private one if None).
        on_storage_error: told the error text of each storage failure (the server's
            storage health, which logs once per failure streak); without it each failure is
            logged.
    """

    def __init__(
        self,
        engine: Engine,
        counters: Counters,
        info: ServerInfo,
        watch: WatchLog | None = None,
        on_storage_error: Callable[[str], None] | None = None,
    ) -> None:
        self.ctx = Context(engine, counters, info, watch=watch or WatchLog())
        self._handlers = HANDLERS
        self._on_storage_error = on_storage_error

    def execute(self, request: Request) -> Response:
        """Run one request; storage failures become ``SERVER_ERROR`` replies."""
        try:
            return self._handlers[type(request)](self.ctx, request)
        except OutOfMemory:  # memcached -M at the disk bound: a result, not a failure
            self.ctx.counters.store_no_memory += 1
            return NO_MEMORY
        except StorageError as exc:
            self.ctx.counters.storage_errors += 1
            if self._on_storage_error is None:
                log.warning("storage error: %s", exc)
            else:
                self._on_storage_error(str(exc))
            return ErrorReply(b"SERVER_ERROR %b\r\n" % str(exc).encode("utf-8", "replace"))
