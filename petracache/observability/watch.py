"""memcached's ``watch`` log stream: lines about fetches, stores, evictions and connections.

memcached (``logger.c``, doc/protocol.txt "Watchers") turns a connection into a watcher on
``watch [fetchers] [mutations] [evictions] [connevents] ...``: it answers ``OK`` and from
then on writes one ``key=value`` line per event of the kinds asked for, until the client
disconnects. The line formats, kept byte for byte (``_logger_parse_ige``, ``_ise``,
``_ee``, ``_cne``, ``_cce``), each after ``ts=<s>.<us> gid=<n>``::

    type=item_get key=<k> status=<found|not_found|flushed|expired> clsid=<c> cfd=<fd>
        size=<n>
    type=item_store key=<k> status=<stored|not_stored|exists|not_found|too_large> cmd=<set|
        add|replace|append|prepend|cas> ttl=<s> clsid=<c> cfd=<fd> size=<n>
    type=eviction key=<k> fetch=<yes|no> ttl=<s> la=<s> clsid=<c> size=<n>
    type=conn_new rip=<ip> rport=<port> transport=<tcp|local> cfd=<fd>
    type=conn_close rip=<ip> rport=<port> transport=<tcp|local> reason=<error|normal|
        idle_timeout|shutdown> cfd=<fd>

(one line each; wrapped here). ``<us>`` is printed without zero padding (``%d``), as
memcached does; ``clsid`` is the slab class memcached would use for the item
(``rules.slabs``), ``size`` its data length.

Who emits: the command layer (``commands.watching``: fetches and stores, where memcached's
``do_item_get``/``do_store_item`` log), the reclaimer (evictions, through a hook app.py
sets) and the connection handler (connection events). Nothing here does I/O: each watcher
has a bounded buffer the server drains to its socket (``server.watch``).

Invariants:

* ``active`` is the one thing the request path reads when nobody watches (through
  ``Context.watching``, which ``on_change`` keeps equal to it), so watching costs nothing
  until someone does.
* A watcher's buffer never holds more than ``WATCHER_BUFFER`` bytes: a line that does not
  fit (with ``LINE_ROOM`` to spare, as memcached asks ``bipbuf_request`` for) is dropped and
  counted, and the next line that fits is preceded by ``skipped=<n>``, memcached's notice.
* At most ``WATCHER_LIMIT`` watchers (memcached's); lines reach only watchers that asked for
  their kind, and only those that were watching when the event happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from petracache.rules.uri import uriencode

# memcached's LOG_* bits (logger.h), the kinds petracache has events for.
FETCHERS: Final = 1 << 2
MUTATIONS: Final = 1 << 3
CONNEVENTS: Final = 1 << 5
EVICTIONS: Final = 1 << 6
# ``watch`` arguments -> bits. memcached also takes rawcmds, sysevents and the proxy kinds;
# petracache has no such events, so those are accepted and stay silent.
KINDS: Final = {
    b"fetchers": FETCHERS,
    b"mutations": MUTATIONS,
    b"evictions": EVICTIONS,
    b"connevents": CONNEVENTS,
    b"rawcmds": 0,
    b"sysevents": 0,
    b"proxyreqs": 0,
    b"proxyevents": 0,
    b"proxyuser": 0,
}
WATCHER_LIMIT: Final = 20  # logger.c WATCHER_LIMIT
WATCHER_BUFFER: Final = 256 * 1024  # logger.h LOGGER_WATCHER_BUF_SIZE (-o watcher_logbuf_size)
LINE_ROOM: Final = 128  # logger_thread_write_entry asks for the line plus this much
OK: Final = b"OK\r\n"  # logger_add_watcher puts it first in the watcher's buffer
TOO_MANY: Final = b"WATCHER_TOO_MANY log watcher limit reached\r\n"


class Watcher:
    """One watching connection: the kinds it asked for and the lines not written yet.

    Args:
        kinds: ``KINDS`` bits.
        wake: called (on the trio thread) when lines arrive, so the writer wakes up.
    """

    __slots__ = ("buffer", "kinds", "skipped", "wake")

    def __init__(self, kinds: int, wake: Callable[[], None]) -> None:
        self.kinds = kinds
        self.wake = wake
        self.buffer = bytearray(OK)
        self.skipped = 0

    def offer(self, line: bytes) -> None:
        """Queue ``line``, or count it as skipped when the buffer is full (see the module)."""
        buffer = self.buffer
        if len(buffer) + len(line) + LINE_ROOM > WATCHER_BUFFER:
            self.skipped += 1
            return
        if self.skipped:
            buffer += b"skipped=%d\n" % self.skipped
            self.skipped = 0
        buffer += line
        self.wake()

    def take(self) -> bytes:
        """Everything queued, emptying the buffer."""
        out = bytes(self.buffer)
        self.buffer.clear()
        return out


class WatchLog:
    """The watchers and the events they receive.

    Args:
        clock: Unix time for the ``ts=`` field.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._watchers: list[Watcher] = []
        self._gid = 0
        self.active = False  # someone watches
        self.kinds = 0  # the union of the watchers' kinds
        # The connection whose request runs now (memcached's ``cfd``): set by the server
        # around each request while someone watches (``server.watch``).
        self.cfd = -1
        # Called with ``active`` whenever it changes (the command context's flag, the
        # server's connection tagging).
        self.on_change: list[Callable[[bool], None]] = []

    @property
    def full(self) -> bool:
        """No room for another watcher (memcached: ``WATCHER_TOO_MANY``)."""
        return len(self._watchers) >= WATCHER_LIMIT

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def add(self, kinds: int, wake: Callable[[], None]) -> Watcher | None:
        """A new watcher (its buffer starts with ``OK``), or None when there are too many."""
        if self.full:
            return None
        watcher = Watcher(kinds, wake)
        self._gid += 1  # memcached's min_gid takes one too, so its first line is gid=2
        self._watchers.append(watcher)
        self._changed()
        return watcher

    def remove(self, watcher: Watcher) -> None:
        """Stop sending ``watcher`` lines (its connection closed). Idempotent."""
        if watcher in self._watchers:
            self._watchers.remove(watcher)
            self._changed()

    def _changed(self) -> None:
        kinds = 0
        for watcher in self._watchers:
            kinds |= watcher.kinds
        self.kinds = kinds
        active = bool(self._watchers)
        if active != self.active:
            self.active = active
            for call in self.on_change:
                call(active)

    def _emit(self, kind: int, body: bytes) -> None:
        if not self.kinds & kind:
            return
        now = self._clock()
        seconds = int(now)
        micros = min(round((now - seconds) * 1e6), 999_999)
        self._gid += 1
        line = b"ts=%d.%d gid=%d %b\n" % (seconds, micros, self._gid, body)
        for watcher in self._watchers:
            if watcher.kinds & kind:
                watcher.offer(line)

    # -- events ------------------------------------------------------------------------------

    def item_get(self, key: bytes, status: bytes, clsid: int, size: int) -> None:
        """A lookup (``do_item_get``): ``status`` is found/not_found/flushed/expired."""
        if self.kinds & FETCHERS:
            self._emit(
                FETCHERS,
                b"type=item_get key=%b status=%b clsid=%d cfd=%d size=%d"
                % (uriencode(key), status, clsid, self.cfd, size),
            )

    def item_store(
        self, key: bytes, status: bytes, cmd: bytes, ttl: int, clsid: int, size: int
    ) -> None:
        """A store (``do_store_item``); ``ttl`` is printed as memcached's ``%u``."""
        if self.kinds & MUTATIONS:
            self._emit(
                MUTATIONS,
                b"type=item_store key=%b status=%b cmd=%b ttl=%d clsid=%d cfd=%d size=%d"
                % (uriencode(key), status, cmd, ttl & 0xFFFFFFFF, clsid, self.cfd, size),
            )

    def eviction(
        self, key: bytes, fetched: bool, ttl: int, last_access: int, clsid: int, size: int
    ) -> None:
        """An item evicted to stay under the disk bound; ``ttl`` -1 for none."""
        if self.kinds & EVICTIONS:
            self._emit(
                EVICTIONS,
                b"type=eviction key=%b fetch=%b ttl=%d la=%d clsid=%d size=%d"
                % (uriencode(key), b"yes" if fetched else b"no", ttl, last_access, clsid, size),
            )

    def conn_new(self, rip: str, rport: int, transport: bytes, cfd: int) -> None:
        """A client connection accepted (not one refused over max_connections)."""
        if self.kinds & CONNEVENTS:
            self._emit(
                CONNEVENTS,
                b"type=conn_new rip=%b rport=%d transport=%b cfd=%d"
                % (rip.encode(), rport, transport, cfd),
            )

    def conn_close(self, rip: str, rport: int, transport: bytes, reason: bytes, cfd: int) -> None:
        """A client connection closed, and why (error/normal/idle_timeout/shutdown)."""
        if self.kinds & CONNEVENTS:
            self._emit(
                CONNEVENTS,
                b"type=conn_close rip=%b rport=%d transport=%b reason=%b cfd=%d"
                % (rip.encode(), rport, transport, reason, cfd),
            )


def parse_kinds(args: list[bytes]) -> int | None:
    """``watch``'s arguments -> ``KINDS`` bits (no argument: fetchers); None if one is
    unknown (memcached answers ``ERROR``)."""
    if not args:
        return FETCHERS
    kinds = 0
    for arg in args:
        bit = KINDS.get(arg)
        if bit is None:
            return None
        kinds |= bit
    return kinds


class WatchStart:
    """The reply to a ``watch`` the command layer accepted: the chunks of a ``Streamed``
    reply that the server replaces with the watcher's lines (``server.watch``).

    As an iterator it is empty, unless the server could not attach the watcher after all
    (``refuse``: the limit was reached meanwhile); then it yields that one reply and the
    connection goes on as before, as memcached's does after ``WATCHER_TOO_MANY``.
    """

    __slots__ = ("_reply", "kinds")

    def __init__(self, kinds: int) -> None:
        self.kinds = kinds
        self._reply = b""

    def refuse(self, reply: bytes) -> None:
        self._reply = reply

    def __iter__(self) -> WatchStart:
        return self

    def __next__(self) -> bytes:
        reply, self._reply = self._reply, b""
        if not reply:
            raise StopIteration
        return reply
