"""memcached's admin commands: ``slabs``, ``lru``, ``watch``, ``shutdown``.

Each is checked token by token as memcached 1.6.18's ``proto_text.c`` does
(``process_slabs_command``, ``process_slabs_automove_command``, ``process_lru_command``,
``process_watch_command``, ``process_shutdown_command``) and answered with the reply
memcached gives when the feature is off or has nothing to act on, so an admin script
never sees ``ERROR`` where memcached would not send one:

* ``slabs reassign``: ``CLIENT_ERROR slab reassignment disabled`` (there are no slab
  pages to move; ``stats settings`` says ``slab_reassign no``).
* ``slabs automove``: validated and remembered (``stats settings``); nothing moves.
* ``lru tune|mode|temp_ttl``: validated, then ``OK``; petracache has no LRU segments,
  so nothing changes (eviction under ``max_disk_bytes`` follows ``storage.eviction``).
* ``watch``: checked here (unknown kinds: ``ERROR``; 20 watchers already:
  ``WATCHER_TOO_MANY``), then handed to the server as a streamed reply the connection may
  refuse (``ERROR cannot pipeline other commands before watch``); the server turns the
  connection into a watcher (``observability.watch``, ``server.watch``).
* ``shutdown [graceful]``: refused unless ``server.enable_shutdown`` (memcached ``-A``);
  enabled, both forms stop the server gracefully, as SIGTERM does (memcached's plain form
  exits at once; a persistent store always drains and closes the database cleanly).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from petracache.observability.watch import TOO_MANY, WatchStart, parse_kinds
from petracache.protocol.admin import Admin
from petracache.protocol.crawler import Streamed
from petracache.protocol.responses import ErrorReply, Response, Status
from petracache.rules.numbers import strtod, strtol32, strtoul32

if TYPE_CHECKING:
    from petracache.commands.context import Context, Handler

BAD_FORMAT: Final = ErrorReply(b"CLIENT_ERROR bad command line format\r\n")
REASSIGN_DISABLED: Final = ErrorReply(b"CLIENT_ERROR slab reassignment disabled\r\n")
WATCH_PIPELINED: Final = b"ERROR cannot pipeline other commands before watch\r\n"
SHUTDOWN_DISABLED: Final = ErrorReply(b"ERROR: shutdown not enabled\r\n")
SHUTDOWN_BAD_MODE: Final = ErrorReply(b"CLIENT_ERROR invalid shutdown mode\r\n")
LRU_PCTS: Final = ErrorReply(b"ERROR hot and warm pcts must not exceed 80\r\n")
LRU_FACTORS: Final = ErrorReply(b"ERROR hot/warm age factors must be greater than 0\r\n")
LRU_PCT_MAX: Final = 80  # memcached: hot + warm may not exceed it
AUTOMOVE_LEVELS: Final = (0, 1, 2)


def _slabs(ctx: Context, args: list[bytes]) -> Response:
    ntokens = len(args) + 2  # memcached's count: the command word and the terminal token
    if ntokens == 5 and args[0] == b"reassign":
        return REASSIGN_DISABLED
    if ntokens >= 4 and args[0] == b"automove":
        return _automove(ctx, args, ntokens)
    return Status.ERROR


def _automove(ctx: Context, args: list[bytes], ntokens: int) -> Response:
    if args[1] == b"ratio":
        ratio = strtod(args[2]) if ntokens >= 5 else None
        if ratio is None:
            return Status.ERROR
        ctx.info.slab_automove_ratio = ratio
        return Status.OK
    level = strtoul32(args[1])
    if level is None:
        return BAD_FORMAT
    if level not in AUTOMOVE_LEVELS:
        return Status.ERROR
    ctx.info.slab_automove = level
    return Status.OK


def _lru(ctx: Context, args: list[bytes]) -> Response:
    ntokens = len(args) + 2
    sub = args[0]
    if sub == b"tune" and ntokens >= 7:
        return _lru_tune(args)
    if sub == b"mode" and ntokens >= 4:
        return Status.OK if args[1] in (b"flat", b"segmented") else Status.ERROR
    if sub == b"temp_ttl" and ntokens >= 4:
        return Status.OK if strtol32(args[1]) is not None else Status.ERROR
    return Status.ERROR


def _lru_tune(args: list[bytes]) -> Response:
    pct_hot, pct_warm = strtoul32(args[1]), strtoul32(args[2])
    hot_factor, factor = strtod(args[3]), strtod(args[4])
    if pct_hot is None or pct_warm is None or hot_factor is None or factor is None:
        return Status.ERROR
    if pct_hot + pct_warm > LRU_PCT_MAX:
        return LRU_PCTS
    if factor <= 0 or hot_factor <= 0:
        return LRU_FACTORS
    return Status.OK


def _watch(ctx: Context, args: list[bytes]) -> Response:
    """memcached's order: the pipelining check (the connection's, through ``refusal``),
    then the arguments, then the watcher limit. ``noreply`` (memcached's
    ``set_noreply_maybe``) is then an unknown argument: ``ERROR``, not sent."""
    if args and args[-1] == b"noreply":
        return Status.ERROR
    kinds = parse_kinds(args)
    if kinds is None:
        return Streamed(iter((b"ERROR\r\n",)), WATCH_PIPELINED)
    if ctx.watch.full:
        return Streamed(iter((TOO_MANY,)), WATCH_PIPELINED)
    return Streamed(WatchStart(kinds), WATCH_PIPELINED)


def _shutdown(ctx: Context, args: list[bytes]) -> Response:
    stop = ctx.info.request_shutdown
    if not ctx.info.shutdown_enabled or stop is None:
        return SHUTDOWN_DISABLED
    if not args or args == [b"graceful"]:
        stop(bool(args))
        return Status.NOTHING  # the drain closes this connection with the others
    return SHUTDOWN_BAD_MODE


_COMMANDS: dict[bytes, Callable[[Context, list[bytes]], Response]] = {
    b"slabs": _slabs,
    b"lru": _lru,
    b"watch": _watch,
    b"shutdown": _shutdown,
}


def admin(ctx: Context, request: Admin) -> Response:
    """Answer one admin command as memcached 1.6.18 does with the feature off."""
    return _COMMANDS[request.command](ctx, request.args)


HANDLERS: dict[type, Handler] = {Admin: admin}
