"""``stats slabs``, ``stats items``, ``stats sizes``, ``stats conns``, ``stats cachedump``.

memcached 1.6.18's field names, order and terminators (``slabs.c`` ``do_slabs_stats``,
``items.c`` ``item_stats``/``item_stats_sizes``/``item_cachedump``, ``proto_text.c``
``process_stat``), with values that are true for this store. petracache has no slabs and
no LRU segments, so:

* **One class.** Every item is in class 1, whose chunk is ``item_size_max`` (every item
  fits). ``stats slabs``, ``stats items`` and ``stats cachedump 1 <n>`` describe all items;
  the other class ids (2-63) exist and are empty. With no items, no class is listed, as in
  memcached. (``me`` and ``lru_crawler metadump`` report ``cls=`` as the class memcached
  would have chosen for the item's size: a sizing hint, not a place.)
* A class's counters (``get_hits``, ``cmd_set``...) are the server's totals; its item
  count and bytes are the exact counts (``storage.item_counts``). Everything sits in the cold LRU:
  ``number_cold`` = ``number``, ``hits_to_cold`` = ``get_hits``. ``age`` is the age of the
  oldest write when the ``age`` index is kept (a disk bound is set), else 0.
* memcached counts per class what it has no single figure for; fields with no meaning here
  (tail repairs, slab moves, segment moves) are 0.
* ``stats sizes`` is memcached's reply with size tracking off (``-o track_sizes`` is not
  offered).

``cachedump`` walks the items in key order (``storage.crawl``, bounded steps) and stops at
memcached's cap: the limit, or 2 MB of reply (``item_cachedump``'s ``memlimit``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

from petracache.commands.stats import ServerInfo, curr_items, stored_bytes
from petracache.observability.counters import Counters, counts
from petracache.protocol.crawler import Streamed
from petracache.protocol.responses import ErrorReply, Response, StatsReply, Status
from petracache.rules import slabs
from petracache.rules.numbers import strtoul32
from petracache.storage.crawl import ItemCrawl
from petracache.storage.engine import Engine
from petracache.storage.reclaim.age_queues import oldest_write

if TYPE_CHECKING:  # the context imports commands.stats, not this module
    from petracache.commands.context import Context

CLASS_ID: Final = 1  # the one class every item is reported in
CACHEDUMP_MAX_BYTES: Final = 2 * 1024 * 1024  # memcached item_cachedump: memlimit
BAD_LINE: Final = ErrorReply(b"CLIENT_ERROR bad command line\r\n")
BAD_FORMAT: Final = ErrorReply(b"CLIENT_ERROR bad command line format\r\n")
ILLEGAL_SLAB: Final = ErrorReply(b"CLIENT_ERROR Illegal slab id\r\n")
# ``stats sizes_enable``/``_disable``: memcached answers one STAT line without END.
SIZES_STATUS: Final = ErrorReply(b"STAT sizes_status disabled\r\n")
SIZES: Final = StatsReply([("sizes_status", "disabled")])
# memcached's per-class operation counters (do_slabs_stats), in order.
_CLASS_OPS: Final = (
    "get_hits",
    "cmd_set",
    "delete_hits",
    "incr_hits",
    "decr_hits",
    "cas_hits",
    "cas_badval",
    "touch_hits",
)


def slabs_stats(counters: Counters, engine: Engine, info: ServerInfo) -> StatsReply:
    """``stats slabs``: the one class (when it holds items), then the totals."""
    items = curr_items(engine)
    size = stored_bytes(engine)
    rows: list[tuple[str, object]] = []
    if items > 0:
        c = counters.since_reset()
        rows = [
            ("chunk_size", info.item_size_max),
            ("chunks_per_page", 1),
            ("total_pages", items),
            ("total_chunks", items),
            ("used_chunks", items),
            ("free_chunks", 0),
            ("free_chunks_end", 0),
            *((name, c[name]) for name in _CLASS_OPS),
        ]
    values = [(f"{CLASS_ID}:{name}", str(value)) for name, value in rows]
    values.append(("active_slabs", "1" if items > 0 else "0"))
    values.append(("total_malloced", str(size)))
    return StatsReply(values)


def items_stats(counters: Counters, engine: Engine) -> StatsReply:
    """``stats items``: memcached's 28 fields of the one class, or nothing when empty."""
    items = curr_items(engine)
    if items <= 0:
        return StatsReply([])
    ec = counters.since_reset(counts(engine.counters))
    c = counters.since_reset()
    rows: list[tuple[str, object]] = [
        ("number", items),
        ("number_hot", 0),
        ("number_warm", 0),
        ("number_cold", items),
        ("age_hot", 0),
        ("age_warm", 0),
        ("age", _oldest_age(engine)),
        ("mem_requested", stored_bytes(engine)),
        ("evicted", ec.get("evictions", 0)),
        ("evicted_nonzero", 0),
        ("evicted_time", 0),
        ("outofmemory", 0),
        ("tailrepairs", 0),
        ("reclaimed", 0),
        ("expired_unfetched", ec.get("expired_unfetched", 0)),
        ("evicted_unfetched", ec.get("evicted_unfetched", 0)),
        ("evicted_active", ec.get("evicted_active", 0)),
        ("crawler_reclaimed", ec.get("expired_reaped", 0) + ec.get("flushed_reaped", 0)),
        ("crawler_items_checked", 0),
        ("lrutail_reflocked", 0),
        ("moves_to_cold", 0),
        ("moves_to_warm", ec.get("moves_to_main", 0)),  # s3fifo: small -> main queue
        ("moves_within_lru", ec.get("evicted_active", 0)),  # spared: requeued
        ("direct_reclaims", 0),
        ("hits_to_hot", 0),
        ("hits_to_warm", 0),
        ("hits_to_cold", c["get_hits"]),
        ("hits_to_temp", 0),
    ]
    return StatsReply([(f"items:{CLASS_ID}:{name}", str(value)) for name, value in rows])


def _oldest_age(engine: Engine) -> int:
    """Seconds since the oldest surviving write, from the ``age`` index (0 without it)."""
    oldest = oldest_write(engine)
    return max(engine.now() - oldest, 0) if oldest else 0


def cachedump(engine: Engine, args: list[bytes]) -> Response:
    """``stats cachedump <class> <limit>``: ``ITEM <key> [<bytes> b; <exptime> s]`` lines.

    memcached checks, in order: at least two arguments, both numbers, a class id below 64.
    A limit of 0 means no limit (the 2 MB cap still applies).
    """
    if len(args) < 3:
        return BAD_LINE
    class_id = strtoul32(args[1])
    limit = strtoul32(args[2])
    if class_id is None or limit is None:
        return BAD_FORMAT
    if class_id > slabs.CLASS_ID_MAX:
        return ILLEGAL_SLAB
    if class_id != CLASS_ID:
        return Status.END
    return Streamed(_cachedump_lines(engine, limit))


def _cachedump_lines(engine: Engine, limit: int) -> Iterator[bytes]:
    """The reply in chunks, one per bounded walk step, stopping at the limit or the cap."""
    walk = ItemCrawl(engine)
    shown = written = 0
    while not walk.done and (limit == 0 or shown < limit):
        lines: list[bytes] = []
        for key, item in walk.step():
            line = b"ITEM %b [%d b; %d s]\r\n" % (key, len(item.data), item.deadline)
            if written + len(line) + 6 > CACHEDUMP_MAX_BYTES:  # memcached: room for END
                yield b"".join(lines)
                yield b"END\r\n"
                return
            lines.append(line)
            written += len(line)
            shown += 1
            if shown == limit:
                break
        yield b"".join(lines)
    yield b"END\r\n"


def sizes(args: list[bytes]) -> Response:
    """``stats sizes`` and ``stats sizes_enable|sizes_disable``: tracking stays off."""
    return SIZES if args[0] == b"sizes" else SIZES_STATUS


def conns(info: ServerInfo) -> StatsReply:
    """``stats conns``: the listeners, then one group of lines per client connection."""
    return StatsReply(info.connections() if info.connections is not None else [])


# ``stats <group> ...`` -> reply, for the groups of this module (``classic.stats``).
GROUPS: dict[bytes, Callable[[Context, list[bytes]], Response]] = {
    b"slabs": lambda ctx, _args: slabs_stats(ctx.counters, ctx.engine, ctx.info),
    b"items": lambda ctx, _args: items_stats(ctx.counters, ctx.engine),
    b"sizes": lambda _ctx, args: sizes(args),
    b"sizes_enable": lambda _ctx, args: sizes(args),
    b"sizes_disable": lambda _ctx, args: sizes(args),
    b"conns": lambda ctx, _args: conns(ctx.info),
    b"cachedump": lambda ctx, args: cachedump(ctx.engine, args),
}
