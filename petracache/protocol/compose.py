"""Response -> bytes. Pure functions; the only place reply formats are spelled out.

The common replies (``Status``, ``Values``, ``MetaReply``) are tested first.
"""

from __future__ import annotations

from petracache.protocol.binary_compose import encode_reply, encode_stats
from petracache.protocol.crawler import Streamed
from petracache.protocol.responses import (
    BinaryReply,
    BinaryStats,
    ErrorReply,
    LeaseMiss,
    MetaDebugReply,
    MetagetInfo,
    MetaReply,
    Number,
    PrefixDump,
    Response,
    StatsReply,
    Status,
    Values,
    VersionReply,
)


def encode_values(values: Values) -> bytes:
    """``VALUE <key> <flags> <bytes>[ <cas>]\\r\\n<data>\\r\\n`` per hit, then ``END``."""
    hits = values.hits
    if len(hits) == 1:  # the common get: one format, no list
        key, flags, cas, data = hits[0]
        if values.with_cas:
            return b"VALUE %b %d %d %d\r\n%b\r\nEND\r\n" % (key, flags, len(data), cas, data)
        return b"VALUE %b %d %d\r\n%b\r\nEND\r\n" % (key, flags, len(data), data)
    parts: list[bytes] = []
    append = parts.append
    if values.with_cas:
        for key, flags, cas, data in hits:
            append(b"VALUE %b %d %d %d\r\n%b\r\n" % (key, flags, len(data), cas, data))
    else:
        for key, flags, _cas, data in hits:
            append(b"VALUE %b %d %d\r\n%b\r\n" % (key, flags, len(data), data))
    append(b"END\r\n")
    return b"".join(parts)


def encode_meta(reply: MetaReply) -> bytes:
    """``<code>[ <flag>...]\\r\\n``; ``VA`` is ``VA <bytes>[ <flag>...]\\r\\n<data>\\r\\n``."""
    if reply.quiet:
        return b""
    value = reply.value
    head = reply.code.value if value is None else b"VA %d" % len(value)
    if reply.flags:
        head = b" ".join([head, *reply.flags])
    if value is None:
        return head + b"\r\n"
    return b"%b\r\n%b\r\n" % (head, value)


def encode(response: Response) -> bytes:
    """Encode any response to its exact memcached wire form."""
    if isinstance(response, Status):
        return response.value
    if isinstance(response, Values):
        return encode_values(response)
    if isinstance(response, MetaReply):
        return encode_meta(response)
    if isinstance(response, BinaryReply):
        return encode_reply(response)
    if isinstance(response, Number):
        return b"%d\r\n" % response.value
    if isinstance(response, ErrorReply):
        return response.line
    if isinstance(response, StatsReply):
        lines = [f"STAT {name} {value}\r\n" for name, value in response.stats]
        lines.append("END\r\n")
        return "".join(lines).encode()
    if isinstance(response, VersionReply):
        return b"VERSION %b\r\n" % response.text.encode()
    if isinstance(response, MetaDebugReply):
        r = response
        return b"ME %b exp=%d la=%d cas=%d fetch=%b cls=%d size=%d\r\n" % (
            r.key,
            r.exp,
            r.last_access,
            r.cas,
            b"yes" if r.fetched else b"no",
            r.slab_class,
            r.size,
        )
    if isinstance(response, PrefixDump):
        rows = [b"PREFIX %b get %d hit %d set %d del %d\r\n" % row for row in response.rows]
        rows.append(b"END\r\n")
        return b"".join(rows)
    if isinstance(response, LeaseMiss):
        # mcrouter's lease-get grammar: LVALUE <key> <token> <flags> <bytes>, an (empty)
        # data block, END. A bare END would be a parse error there, so a miss is never one.
        return b"LVALUE %b %d 0 0\r\n\r\nEND\r\n" % (response.key, response.token)
    if isinstance(response, MetagetInfo):
        # mcrouter's metaget grammar; petracache does not record the writer's address.
        return b"META %b age: %d; exptime: %d; from: unknown\r\nEND\r\n" % (
            response.key,
            response.age,
            response.exptime,
        )
    if isinstance(response, BinaryStats):
        return encode_stats(response)
    if isinstance(response, Streamed):
        # Only a caller that cannot write piece by piece gets here; the connection streams.
        return b"".join(response.chunks)
    raise TypeError(f"not a response: {response!r}")  # pragma: no cover
