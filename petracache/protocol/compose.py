"""Response -> bytes. Pure functions; the only place reply formats are spelled out.

``encode`` dispatches on the response's class through one table (``ENCODERS``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

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
    head = reply.code._value_ if value is None else b"VA %d" % len(value)
    if reply.flags:
        head = b" ".join([head, *reply.flags])
    if value is None:
        return head + b"\r\n"
    return b"%b\r\n%b\r\n" % (head, value)


def _status(status: Status) -> bytes:
    # ``_value_`` is the member's value as stored; ``.value`` is a descriptor: a call a read.
    return status._value_


def _number(number: Number) -> bytes:
    return b"%d\r\n" % number.value


def _error(error: ErrorReply) -> bytes:
    return error.line


def _stats(stats: StatsReply) -> bytes:
    lines = [f"STAT {name} {value}\r\n" for name, value in stats.stats]
    lines.append("END\r\n")
    return "".join(lines).encode()


def _version(version: VersionReply) -> bytes:
    return b"VERSION %b\r\n" % version.text.encode()


def _meta_debug(r: MetaDebugReply) -> bytes:
    return b"ME %b exp=%d la=%d cas=%d fetch=%b cls=%d size=%d\r\n" % (
        r.key,
        r.exp,
        r.last_access,
        r.cas,
        b"yes" if r.fetched else b"no",
        r.slab_class,
        r.size,
    )


def _prefix_dump(dump: PrefixDump) -> bytes:
    rows = [b"PREFIX %b get %d hit %d set %d del %d\r\n" % row for row in dump.rows]
    rows.append(b"END\r\n")
    return b"".join(rows)


def _lease_miss(miss: LeaseMiss) -> bytes:
    # mcrouter's lease-get grammar: LVALUE <key> <token> <flags> <bytes>, an (empty)
    # data block, END. A bare END would be a parse error there, so a miss is never one.
    return b"LVALUE %b %d 0 0\r\n\r\nEND\r\n" % (miss.key, miss.token)


def _metaget_info(info: MetagetInfo) -> bytes:
    # mcrouter's metaget grammar; petracache does not record the writer's address.
    return b"META %b age: %d; exptime: %d; from: unknown\r\nEND\r\n" % (
        info.key,
        info.age,
        info.exptime,
    )


def _streamed(streamed: Streamed) -> bytes:
    # Only a caller that cannot write piece by piece gets here; the connection streams.
    return b"".join(streamed.chunks)


# One encoder per response class (``Response`` is a closed union of final classes, so the
# class is the key: one dict lookup, where a chain of isinstance tests cost one per class
# tried). Each encoder takes its own class; ``Any`` lets one table hold them all. The
# connection's loop looks encoders up here itself, one call less per reply than ``encode``.
ENCODERS: Final[dict[type, Callable[[Any], bytes]]] = {
    Status: _status,
    Values: encode_values,
    MetaReply: encode_meta,
    BinaryReply: encode_reply,
    Number: _number,
    ErrorReply: _error,
    StatsReply: _stats,
    VersionReply: _version,
    MetaDebugReply: _meta_debug,
    PrefixDump: _prefix_dump,
    LeaseMiss: _lease_miss,
    MetagetInfo: _metaget_info,
    BinaryStats: encode_stats,
    Streamed: _streamed,
}


def encode(response: Response) -> bytes:
    """Encode any response to its exact memcached wire form.

    Raises:
        TypeError: ``response`` is not one of ``Response``'s classes.
    """
    encoder = ENCODERS.get(type(response))
    if encoder is None:
        raise TypeError(f"not a response: {response!r}")
    return encoder(response)
