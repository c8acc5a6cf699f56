"""``lru_crawler``: memcached 1.6.18's subcommands and replies, over petracache's storage.

petracache has no LRU and no crawler thread: expired and flushed items are reclaimed by the
background reclaimer (``storage.reclaim``). What the subcommands mean here:

* ``metadump all|hash|<ids>``: one line per live item in memcached's format (below), then
  ``END``, streamed in bounded steps (``storage.crawl``). ``hash`` lists the same items
  (order differs in memcached too); ``<ids>``, a comma list of slab class ids 1-63, lists
  the items whose size memcached would put in those classes (``rules.slabs``).
* ``mgdump``: the same walk as ``mg <key>`` lines and ``EN`` (memcached 1.6.19+'s format;
  1.6.18 answers ``ERROR``, so a client written for 1.6.18 never sends it).
* ``crawl``, ``tocrawl``, ``sleep``: validated exactly as memcached does, then ``OK``;
  the reclaimer already does the crawler's job, so they change nothing.
* ``enable``/``disable``: kept as a flag; a disabled crawler refuses metadump as memcached
  does (``CLIENT_ERROR lru crawler disabled``).

memcached's line, from ``crawler.c`` ``crawler_metadump_eval``::

    key=<uriencoded key> exp=<-1 | absolute exptime> la=<last access> cas=<n>
    fetch=<yes|no> cls=<slab class> size=<ITEM_ntotal>\\n

Token counts follow ``proto_text.c`` ``process_lru_crawler_command``: any other shape,
``noreply`` included, is ``ERROR``. A dump behind other requests whose replies are still
held is refused (``ERROR cannot pipeline other commands before metadump``), by the
connection (``protocol.crawler``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from petracache.protocol.crawler import LruCrawler, Streamed
from petracache.protocol.responses import ErrorReply, Response, Status
from petracache.rules import slabs
from petracache.rules.numbers import strtoul32
from petracache.rules.sizes import item_size
from petracache.rules.uri import uriencode
from petracache.storage.crawl import ItemCrawl
from petracache.storage.engine import Engine
from petracache.storage.items import FETCHED, Item

if TYPE_CHECKING:  # context holds a Crawler, so it imports this module
    from petracache.commands.context import Context, Handler

DISABLED: Final = ErrorReply(b"CLIENT_ERROR lru crawler disabled\r\n")
# memcached refuses a dump behind other requests' held replies (protocol.crawler).
PIPELINED: Final = {
    b"metadump": b"ERROR cannot pipeline other commands before metadump\r\n",
    b"mgdump": b"ERROR cannot pipeline other commands before mgdump\r\n",
}
BADCLASS: Final = b"BADCLASS invalid class id\r\n"
BAD_FORMAT: Final = ErrorReply(b"CLIENT_ERROR bad command line format\r\n")
SLEEP_TOO_LONG: Final = ErrorReply(b"CLIENT_ERROR sleep must be one second or less\r\n")
ALREADY_RUNNING: Final = ErrorReply(b"ERROR failed to start lru crawler thread\r\n")
SLEEP_MAX: Final = 1_000_000  # microseconds: memcached's bound on ``lru_crawler sleep``


def metadump_line(key: bytes, item: Item) -> bytes:
    """One metadump line for ``item`` stored under ``key``."""
    total = item_size(len(key), item.flags, len(item.data))
    return b"key=%b exp=%d la=%d cas=%d fetch=%b cls=%d size=%d\n" % (
        uriencode(key),
        item.deadline if item.deadline else -1,
        item.last_access,
        item.cas,
        b"yes" if item.bits & FETCHED else b"no",
        slabs.class_id(total),
        total,
    )


def mgdump_line(key: bytes, item: Item) -> bytes:
    """One mgdump line: ``mg <key>``, or ``mg <base64 key> b`` for a key unsafe as text."""
    if any(c <= 32 or c >= 127 for c in key):
        return b"mg %b b\r\n" % base64.b64encode(key)
    return b"mg %b\r\n" % key


def parse_classes(arg: bytes) -> frozenset[int] | None:
    """``all``/``hash`` -> every class (empty set); ``1,2`` -> {1, 2}; None if invalid.

    memcached splits on commas with ``strtok_r`` (so ``1,,2`` is 1 and 2) and accepts ids
    1..63 even where no such class exists (the dump is then empty).
    """
    if arg in (b"all", b"hash"):
        return frozenset()
    ids: set[int] = set()
    for part in arg.split(b","):
        if not part:
            continue
        value = strtoul32(part)
        if value is None or not 1 <= value <= slabs.CLASS_ID_MAX:
            return None
        ids.add(value)
    return frozenset(ids) if ids else None


def _dump(
    engine: Engine,
    classes: frozenset[int],
    line: Callable[[bytes, Item], bytes],
    end: bytes,
) -> Iterator[bytes]:
    """The reply in chunks: one chunk per bounded walk step, then ``end``."""
    walk = ItemCrawl(engine)
    while not walk.done:
        items = walk.step()
        if classes:
            items = [
                (key, item)
                for key, item in items
                if slabs.class_id(item_size(len(key), item.flags, len(item.data))) in classes
            ]
        yield b"".join(line(key, item) for key, item in items)
    yield end


@dataclass(slots=True)
class Crawler:
    """The crawler's settable state (memcached keeps it per process, so do we)."""

    enabled: bool = True
    sleep: int = 100  # microseconds between items: memcached's default, reported only
    tocrawl: int = 0  # items per class per crawl: memcached's default (0 = all)

    def execute(self, request: LruCrawler, engine: Engine) -> Response:
        """Answer one ``lru_crawler`` command as memcached 1.6.18 does."""
        args = request.args
        if len(args) == 1:
            return self._toggle(args[0])
        if len(args) != 2:
            return Status.ERROR
        sub, arg = args
        if sub in (b"metadump", b"mgdump"):
            return self._dump(sub, arg, engine)
        if sub == b"crawl":
            if not self.enabled:
                return DISABLED
            return (
                Status.OK if parse_classes(arg) is not None and arg != b"hash" else Status.BADCLASS
            )
        if sub in (b"tocrawl", b"sleep"):
            return self._set(sub, arg)
        return Status.ERROR

    def _toggle(self, sub: bytes) -> Response:
        if sub == b"disable":
            self.enabled = False
            return Status.OK
        if sub == b"enable":
            if self.enabled:
                return ALREADY_RUNNING
            self.enabled = True
            return Status.OK
        return Status.ERROR

    def _set(self, sub: bytes, arg: bytes) -> Response:
        value = strtoul32(arg)
        if value is None:
            return BAD_FORMAT
        if sub == b"sleep":
            if value > SLEEP_MAX:
                return SLEEP_TOO_LONG
            self.sleep = value
        else:
            self.tocrawl = value
        return Status.OK

    def _dump(self, sub: bytes, arg: bytes, engine: Engine) -> Response:
        """memcached's order: disabled, then pipelined (the connection's check, through
        ``refusal``), then a bad class list; so even ``BADCLASS`` carries the refusal."""
        if not self.enabled:
            return DISABLED
        refusal = PIPELINED[sub]
        classes = parse_classes(arg)
        if classes is None:
            return Streamed(iter((BADCLASS,)), refusal)
        if sub == b"metadump":
            return Streamed(_dump(engine, classes, metadump_line, b"END\r\n"), refusal)
        return Streamed(_dump(engine, classes, mgdump_line, b"EN\r\n"), refusal)


def _lru_crawler(ctx: Context, request: LruCrawler) -> Response:
    return ctx.crawler.execute(request, ctx.engine)


HANDLERS: dict[type, Handler] = {LruCrawler: _lru_crawler}
