"""One client connection's protocol state: bytes in, requests out, responses to bytes.

Modelled on h11's ``Connection``: ``receive_data(data)`` appends input (``b""`` means EOF),
``next_request()`` returns the next complete request or ``NEED_DATA``, and ``send()`` turns
a response into the bytes to write. No I/O happens here.

Rules, from memcached's ``try_read_command_ascii`` and ``conn_nread``/``conn_swallow``:

1. A command line ends at ``\\n``; one ``\\r`` before it is dropped.
2. More than ``MAX_LINE`` (2048) buffered bytes without a ``\\n`` closes the connection,
   unless the line starts (after at most 100 spaces) with ``get `` or ``gets ``; such
   multiget lines may grow to ``MAX_MULTIGET_LINE`` (our bound; memcached has none).
3. A storage command's data block is exactly ``nbytes + 2`` bytes and must end ``\\r\\n``;
   otherwise ``CLIENT_ERROR bad data chunk`` and parsing resumes after those bytes.
4. The data of an oversized storage command is discarded as it arrives (never buffered), so
   memory per connection stays bounded by the item size limit plus one read.
5. ``process(execute, limit)`` answers everything complete in the buffer and returns the
   reply bytes to write (a ``Batch``). Two memcached behaviours decide *which* replies reach
   the client when a connection ends badly, and ``process`` follows them to stay
   byte-identical: memcached writes a read's replies at *flush points* only: after every
   get/gets/gat/gats and mn, after the ``FLUSH_AFTER``-th request of a read and every
   ``FLUSH_EVERY`` requests after that (its ``reqs_per_event`` yield: ``reqs_per_event + 1``
   and every ``reqs_per_event``, 21 and 20 by default, memcached's ``-R``), and when the
   input runs dry. A too-long line (``CloseConnection``) drops the replies held since the
   last flush point, and so does a get with a too-long key (``ProtocolError.discard_unsent``).
   ``quit`` closes after the replies before it. ``Batch.yields`` counts the yield points
   passed (memcached's ``conn_yields``), and one more when the input runs dry with replies
   held and exactly a multiple of ``reqs_per_event`` requests answered: memcached's write
   of what it holds then takes the last share of the requests' count.
6. A ``Streamed`` reply (``lru_crawler metadump``) is written one chunk per ``process``
   call (``Batch.more``); requests after it wait until it ends. ``streaming`` tells the
   data plane to yield between chunks, so other connections are served meanwhile. One
   with a ``refusal`` (metadump, mgdump, ``watch``) is refused with it when a request came
   since the last flush point (memcached's ``resp_has_stack``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Final, NamedTuple

from petracache.protocol import compose, errors
from petracache.protocol.crawler import Streamed
from petracache.protocol.meta_requests import MetaNoop, MetaRejected, MetaSetHeader
from petracache.protocol.requests import Get, Quit, Request, TooLarge
from petracache.protocol.responses import ErrorReply, Response
from petracache.protocol.text import StoreHeader, parse_line
from petracache.rules.build import compiled
from petracache.rules.sizes import DEFAULT_ITEM_SIZE_MAX

REQS_PER_EVENT: Final = 20  # memcached's -R default
FLUSH_AFTER: Final = REQS_PER_EVENT + 1  # memcached: reqs_per_event + the first request
FLUSH_EVERY: Final = REQS_PER_EVENT
MAX_LINE: Final = 2048  # memcached: "no '\n' in the first few k" -> close
MAX_MULTIGET_LINE: Final = 1024 * 1024  # ~4000 max-length keys; memcached leaves this unbounded
_COMPACT_AT: Final = 64 * 1024
_PARTITION_MAX: Final = 2048  # reads up to this long are split with ``partition`` (next_request)
# The compiled build looks for a line's end byte by byte, natively, up to this far (``_newline``).
_SCAN_MAX: Final = 80
_NATIVE: Final = compiled(sys.modules[__name__])


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


class Batch(NamedTuple):
    """What ``process`` produced from the buffered input."""

    data: bytes  # replies to write, in order
    close: bool  # close the connection once ``data`` is written
    more: bool  # stopped at the write limit: write ``data``, then call ``process`` again
    errors: int  # protocol errors answered (memcached counts them; the caller keeps counters)
    yields: int = 0  # reqs_per_event yield points passed (memcached's conn_yields)


Execute = Callable[[Request], Response]
# Final: the compiled build reads these from C statics, not the module's dict, at each read.
_BATCH: Final = Batch
_tuple_new: Final = tuple.__new__


class InputBuffer:
    """A connection's unconsumed input, shared by the text and binary parsers.

    ``_buf[_pos:]`` is what has not been parsed yet; consumed bytes are dropped lazily (all
    at once when everything was consumed, else past ``_COMPACT_AT``), so parsing stays
    O(n). ``_swallow`` counts bytes still to skip as they arrive (memcached's
    ``conn_swallow``: the data of a request refused as too large), never buffered.

    A read that arrives when everything before it was consumed (nearly every read of a
    request/response client) becomes ``_buf`` as it is, ``bytes``, without a copy, and its
    lines and data blocks are sliced straight out of it. Only input left waiting for more
    is copied, once, into a ``bytearray`` that later reads are appended to.
    """

    __slots__ = ("_buf", "_pos", "_swallow")

    def __init__(self) -> None:
        self._buf: bytes | bytearray = b""
        self._pos = 0  # start of unconsumed input in _buf
        self._swallow = 0

    @property
    def buffered(self) -> int:
        """Unconsumed input bytes: what the memory bound per connection limits (tests check
        it against hostile input)."""
        return len(self._buf) - self._pos

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add received bytes to the input buffer (trio's memory streams give a bytearray,
        which is copied: the buffer never grows an object the caller holds)."""
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):  # all consumed: the read is the buffer
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
        elif isinstance(buf, bytearray):
            if pos >= _COMPACT_AT:
                del buf[:pos]
                self._pos = 0
            buf += data
        else:  # a read's leftover waits for this one: from here on the buffer grows
            grown = bytearray(memoryview(buf)[pos:])
            grown += data
            self._buf = grown
            self._pos = 0

    def _swallowing(self) -> bool:
        """Skip what is buffered of ``_swallow``; whether more is still to come."""
        take = min(self._swallow, len(self._buf) - self._pos)
        self._pos += take
        self._swallow -= take
        return self._swallow > 0


class MemcacheConnection(InputBuffer):
    """Parser state for one connection.

    Args:
        item_size_max: memcached's ``-I``; larger values get ``SERVER_ERROR object too large``.
        reqs_per_event: memcached's ``-R``: where the flush points of rule 5 fall.
    """

    __slots__ = (
        "_every",
        "_first",
        "_flushed_at",
        "_handled",
        "_item_size_max",
        "_pending",
        "_scanned",
        "_stream",
    )

    def __init__(
        self, item_size_max: int = DEFAULT_ITEM_SIZE_MAX, reqs_per_event: int = REQS_PER_EVENT
    ) -> None:
        super().__init__()
        self._scanned = 0  # bytes after _pos already searched for b"\n"
        self._pending: StoreHeader | MetaSetHeader | None = None
        self._item_size_max = item_size_max
        self._first = reqs_per_event + 1  # FLUSH_AFTER, FLUSH_EVERY with -R
        self._every = reqs_per_event
        self._handled = 0  # requests answered since the input last ran dry (flush points)
        self._flushed_at = 0  # ... of which answered before the last flush point
        self._stream: Iterator[bytes] | None = None  # a Streamed reply being written (rule 6)

    @property
    def streaming(self) -> bool:
        """Whether a ``Streamed`` reply is being written (the caller yields between chunks)."""
        return self._stream is not None

    @property
    def stream(self) -> Iterator[bytes] | None:
        """The chunks of the ``Streamed`` reply being written (the server takes a ``watch``
        over from here), or None."""
        return self._stream

    def next_request(self) -> Request | _NeedData:
        """The next complete request, or ``NEED_DATA``.

        Raises:
            ProtocolError: the next command is malformed; send ``exc.reply`` unless
                ``exc.noreply`` and call again to continue with the following input.
            CloseConnection: drop the connection without a reply.
        """
        buf = self._buf
        pos = self._pos
        if pos == len(buf):  # all consumed: how most reads end (nothing pending can be done)
            return NEED_DATA
        if self._swallow:
            if self._swallowing():
                return NEED_DATA
            pos = self._pos
        pending = self._pending
        if pending is not None:
            return self._data_block(pending)
        if pos == 0 and type(buf) is bytes and len(buf) <= _PARTITION_MAX:
            # A short read as it came (nearly every read of a request/response client): its
            # first line with ``partition``, which the compiled build calls without argument
            # parsing, unlike ``find``. What follows the line is copied into a new buffer,
            # so the bound keeps a pipelined read from copying its tail once per request.
            line, newline, rest = buf.partition(b"\n")
            if not newline:
                self._check_incomplete_line()
                return NEED_DATA
            self._buf = rest
            if len(line) > 1 and line[-1] == 13:  # memcached keeps a lone "\r" line as is
                line = line[:-1]
        else:
            nl = _newline(buf, pos + self._scanned)
            if nl < 0:
                self._check_incomplete_line()
                return NEED_DATA
            self._scanned = 0
            self._pos = nl + 1
            line = _line(buf, pos, nl)
        parsed = parse_line(line, self._item_size_max)
        if isinstance(parsed, (StoreHeader, MetaSetHeader)):
            return self._data_block(parsed)
        if isinstance(parsed, (TooLarge, MetaRejected)):
            self._swallow = parsed.swallow
        return parsed

    def _data_block(self, header: StoreHeader | MetaSetHeader) -> Request | _NeedData:
        """The storage request of ``header`` once its data block is buffered (rule 3)."""
        buf = self._buf
        start = self._pos
        end = start + header.nbytes + 2
        if len(buf) < end:
            self._pending = header
            return NEED_DATA
        self._pending = None
        self._pos = end
        data = _block(buf, start, end)
        if data is None:
            raise errors.BadDataChunk(noreply=header.noreply)
        return header.complete(data)

    def _check_incomplete_line(self) -> None:
        pending = len(self._buf) - self._pos
        self._scanned = pending
        if pending <= MAX_LINE:
            return
        head = bytes(self._buf[self._pos : self._pos + 105])
        stripped = head.lstrip(b" ")
        if len(head) - len(stripped) > 100 or not (
            stripped.startswith(b"get ") or stripped.startswith(b"gets ")
        ):
            raise errors.CloseConnection("command line too long")
        if pending > MAX_MULTIGET_LINE:
            raise errors.CloseConnection("multiget line too long")

    def process(self, execute: Execute, limit: int) -> Batch:
        """Execute every complete request in the buffer and collect the replies to write.

        Stops early once ``limit`` reply bytes are held (``Batch.more``), so a client that
        pipelines without reading cannot grow our memory: the caller writes them (waiting
        for the socket if it must) before asking for more.

        Args:
            execute: runs one request (synchronously) and returns its response.
            limit: reply bytes after which to stop and hand back what is held.
        """
        streamed = self._next_chunk()
        if streamed is not None:
            return streamed
        out: list[bytes] = []
        size = 0
        flushed = 0  # out[:flushed] is what memcached would have written already (rule 5)
        handled = self._handled
        flushed_at = self._flushed_at  # ``handled`` at the last flush point of this read
        failures = 0
        yields = 0
        first = self._first
        every = self._every
        encoders = compose.ENCODERS
        while True:
            try:
                request = self.next_request()
            except errors.ProtocolError as exc:
                failures += 1
                size = _refuse(exc, execute, out, flushed, size)
                handled += 1
                if _yields_at(handled, first, every):
                    flushed = len(out)
                    flushed_at = handled
                    yields += 1
                continue
            except errors.CloseConnection:
                del out[flushed:]
                return Batch(b"".join(out), True, False, failures, yields)
            if request is NEED_DATA:
                # memcached writes what is held when the input runs dry, and that write takes
                # a request's share of reqs_per_event: a yield when none is left.
                yields += final_write_yield(handled, flushed_at, every)
                self._handled = self._flushed_at = 0
                break
            cls = type(request)
            if cls is Quit:
                return Batch(b"".join(out), True, False, failures, yields)
            response = execute(request)  # type: ignore[arg-type]
            if type(response) is Streamed:
                if handled == flushed_at or not response.refusal:
                    self._stream = response.chunks
                    self._handled = self._flushed_at = handled + 1
                    return Batch(b"".join(out), False, True, failures, yields)
                response = ErrorReply(response.refusal)  # replies are held (rule 6)
            if not request.noreply:  # type: ignore[union-attr]
                reply = encoders[type(response)](response)
                if reply:
                    out.append(reply)
                    size += len(reply)
            handled += 1
            # A flush point: memcached's yield (rule 5), and after get/gets/gat/gats and mn.
            if _yields_at(handled, first, every):
                flushed = len(out)
                flushed_at = handled
                yields += 1
            elif cls is Get or cls is MetaNoop:
                flushed = len(out)
                flushed_at = handled
            if size >= limit:
                self._handled = handled
                self._flushed_at = flushed_at
                return Batch(b"".join(out), False, True, failures, yields)
        data = out[0] if len(out) == 1 else b"".join(out)
        # Every read ends here: tuple.__new__ builds the Batch without NamedTuple's __new__,
        # which is a Python-level function even in the compiled build.
        return _tuple_new(_BATCH, (data, False, False, failures, yields))

    def _next_chunk(self) -> Batch | None:
        """The streamed reply's next chunk; None when no reply streams (any more)."""
        stream = self._stream
        if stream is None:
            return None
        chunk = next(stream, None)
        if chunk is None:
            self._stream = None
            return None
        return Batch(chunk, False, True, 0, 0)

    @staticmethod
    def send(request: Request, response: Response) -> bytes:
        """The bytes to write for ``response`` (nothing if the request said ``noreply``)."""
        if request.noreply:
            return b""
        return compose.encode(response)


def _yields_at(handled: int, first: int, every: int) -> bool:
    """Whether memcached yields after the ``handled``-th request of a read (rule 5)."""
    return handled >= first and (handled - first) % every == 0


def final_write_yield(handled: int, flushed_at: int, every: int) -> int:
    """1 if a read's final write is a yield: replies held (answered since the last flush
    point) and exactly a multiple of ``reqs_per_event`` requests answered; else 0."""
    return 1 if handled > flushed_at and handled % every == 0 else 0


def _newline(buf: bytes | bytearray, start: int) -> int:
    """The index of the first ``\\n`` in ``buf`` from ``start`` on, or -1.

    Why not only ``find``: in the compiled build a ``find`` with a start position is a
    method call with argument parsing (bytes.find is METH_VARARGS in CPython 3.11), while
    reading a ``bytes`` byte by byte is native there, and a get or set line is 20-60 bytes:
    the scan is cheaper up to ``_SCAN_MAX`` bytes (docs/benchmarks.md has the counts). Past
    that (a long multi-get) and in the interpreter, ``find`` is cheaper.
    """
    if _NATIVE and type(buf) is bytes:
        stop = min(len(buf), start + _SCAN_MAX)
        i = start
        while i < stop:
            if buf[i] == 10:
                return i
            i += 1
        if stop == len(buf):
            return -1
        start = stop
    return buf.find(b"\n", start)


def _line(buf: bytes | bytearray, pos: int, nl: int) -> bytes:
    """The command line ``buf[pos:nl]`` (``nl``: its ``\\n``) as bytes, less one ``\\r``
    before the newline (rule 1; memcached keeps a lone ``\\r`` line as is)."""
    if type(buf) is bytes:  # sliced natively in the compiled build
        if nl - pos > 1 and buf[nl - 1] == 13:
            nl -= 1
        return buf[pos:nl]
    return _line(bytes(buf[pos : nl + 1]), 0, nl - pos)  # a grown buffer: copy the line out


def _block(buf: bytes | bytearray, start: int, end: int) -> bytes | None:
    """The data block ``buf[start:end]`` as bytes without its ``\\r\\n``, or None if it
    does not end so (rule 3)."""
    if type(buf) is bytes:  # indexed and sliced natively in the compiled build
        if buf[end - 2] != 13 or buf[end - 1] != 10:
            return None
        return buf[start : end - 2]
    return _block(bytes(buf[start:end]), 0, end - start)  # a grown buffer: copy it out


def _refuse(
    exc: errors.ProtocolError, execute: Execute, out: list[bytes], flushed: int, size: int
) -> int:
    """Answer a malformed request into ``out``; the reply bytes ``out`` now holds.

    A get with a too-long key first drops the replies held since the last flush point
    (``discard_unsent``, rule 5), and runs what memcached did before it met the key.
    """
    if exc.discard_unsent:
        size -= sum(map(len, out[flushed:]))
        del out[flushed:]
    if exc.partial is not None:
        execute(exc.partial)  # for its effects only (a gat's touches)
    if not exc.noreply:
        out.append(exc.reply)
        size += len(exc.reply)
    return size
