"""Runs meta protocol requests (mg ms md ma mn me) against the engine, replying like memcached.

Strategy: each command reads the live item once (``engine.lookup``), computes the new item
state in locals, walks the request's flag tokens in order (the reply echoes return flags in
request order, and ``T``/``N`` take effect at their position: ``t T30`` shows the old TTL),
and writes at most one new version. Commands run synchronously on the trio thread, so each
is atomic like every other engine operation.

Per-item meta state lives in the value header (``storage.codec``, format v2): the fetched,
stale and win-token-sent bits, the binary-key bit, and the last access time. A fetch sets
the fetched bit and moves the access time only when it is older than 60 s
(``codec.fetch_is_news``), so a hot item is not rewritten on every read.

Invariants (memcached 1.6's): ``q`` suppresses EN (mg), HD (ms, md) and successful HD/VA
(ma, except when it created the counter); errors are never suppressed. A stale item's
first fetch wins (``W``), later ones see ``Z``; any store clears stale/win state.
"""

from __future__ import annotations

from petracache.observability.counters import Counters
from petracache.protocol.meta import OPAQUE_TOO_LONG, b64encode_key, opaque_too_long
from petracache.protocol.meta_requests import (
    MetaArithmetic,
    MetaDebug,
    MetaDelete,
    MetaGet,
    MetaNoop,
    MetaRejected,
    MetaRequest,
    MetaSet,
)
from petracache.protocol.responses import RawReply, Response, Status
from petracache.rules import ttl
from petracache.rules.numbers import U64_MAX, parse_stored_counter
from petracache.rules.sizes import CAS_SIZE, ITEM_HEADER_SIZE, item_size_ok
from petracache.storage import codec
from petracache.storage.codec import FETCHED, KEY_BINARY, STALE, WIN_SENT, Item
from petracache.storage.engine import Engine

NON_NUMERIC = RawReply(b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
OPAQUE_ERROR = RawReply(OPAQUE_TOO_LONG)
MN = RawReply(b"MN\r\n")
SILENT = Status.NOTHING


def execute(request: MetaRequest, engine: Engine, counters: Counters) -> Response:
    """Run one meta request."""
    if isinstance(request, MetaGet):
        return _mg(request, engine, counters)
    if isinstance(request, MetaSet):
        return _ms(request, engine, counters)
    if isinstance(request, MetaDelete):
        return _md(request, engine, counters)
    if isinstance(request, MetaArithmetic):
        return _ma(request, engine, counters)
    if isinstance(request, MetaNoop):
        return MN
    if isinstance(request, MetaDebug):
        return _me(request, engine)
    if isinstance(request, MetaRejected):
        counters.protocol_errors += 1
        return RawReply(request.reply)
    raise AssertionError(f"unhandled meta request {request!r}")  # pragma: no cover


# -- reply pieces ----------------------------------------------------------------------------


def key_flag(key: bytes, binary: bool) -> bytes:
    """`` k<key>``; a binary key is printed base64-encoded and followed by `` b``."""
    if binary:
        return b" k" + b64encode_key(key) + b" b"
    return b" k" + key


def _ttl_flag(deadline: int, now: int) -> bytes:
    """`` t<seconds left>``, `` t-1`` for an item that never expires."""
    if deadline == ttl.NEVER:
        return b" t-1"
    return b" t%d" % max(deadline - now, 0)


def _echo_flags(tokens: tuple[bytes, ...], key: bytes, binary: bool) -> bytes | None:
    """The O and k return flags of a reply without an item; None if an opaque is too long."""
    out = b""
    for token in tokens:
        first = token[0]
        if first == 79:  # O
            if opaque_too_long(token):
                return None
            out += b" " + token
        elif first == 107:  # k
            out += key_flag(key, binary)
    return out


# -- mg ----------------------------------------------------------------------------------------


def _mg(r: MetaGet, engine: Engine, counters: Counters) -> Response:
    now = engine.now()
    item = engine.lookup(r.key, now)
    created = False
    if item is None and r.vivify is not None:
        cas = r.new_cas or engine.next_cas()
        item = Item(0, ttl.NEVER, now, cas, b"", now, 0)
        created = True
    if item is None:
        return _mg_miss(r, counters)

    deadline, bits, last_access = item.deadline, item.bits, item.last_access
    won = ttl_set = False
    out = [b"VA %d" % len(item.data) if r.value else b"HD"]
    error = False
    for token in r.tokens:
        first = token[0]
        if first == 84:  # T
            ttl_set = True
            deadline = ttl.deadline(r.ttl or 0, now)
        elif first == 78:  # N
            if created:
                deadline = ttl.deadline(r.vivify or 0, now)
                won = True
        elif first == 82:  # R
            recache = ttl.deadline(r.recache or 0, now)
            if not bits & WIN_SENT and not created and deadline and deadline < recache:
                won = True
        elif first == 115:  # s
            out.append(b" s%d" % len(item.data))
        elif first == 116:  # t
            out.append(_ttl_flag(deadline, now))
        elif first == 99:  # c
            out.append(b" c%d" % item.cas)
        elif first == 102:  # f
            out.append(b" f%d" % item.flags)
        elif first == 108:  # l
            out.append(b" l%d" % max(now - last_access, 0))
        elif first == 104:  # h
            out.append(b" h1" if bits & FETCHED else b" h0")
        elif first == 79:  # O
            if opaque_too_long(token):
                error = True
                break
            out.append(b" " + token)
        elif first == 107:  # k
            out.append(key_flag(r.key, bool(bits & KEY_BINARY)))
    if not error:
        if bits & WIN_SENT:
            out.append(b" Z")
        if bits & STALE:
            out.append(b" X")
            if not bits & WIN_SENT:
                won = True
        if won:
            out.append(b" W")
            bits |= WIN_SENT
    if not r.no_update and (not error or not _locked(r.tokens)):
        bits, last_access = bits | FETCHED, codec.accessed(last_access, now)

    new = item._replace(deadline=deadline, bits=bits, last_access=last_access)
    if created:
        engine.put(r.key, 0, deadline, b"", now, cas=item.cas, bits=bits, last_access=now)
    elif new._replace(bits=new.bits & ~FETCHED, last_access=0) == item._replace(
        bits=item.bits & ~FETCHED, last_access=0
    ):
        if new != item:  # only the fetch record changed
            engine.record_fetch(r.key, new)
    else:
        engine.rewrite(r.key, new, item)
    if error:
        return OPAQUE_ERROR

    if ttl_set:
        counters.cmd_touch += 1
        counters.touch_hits += 1
    else:
        counters.cmd_get += 1
        counters.get_hits += 1
    out.append(b"\r\n")
    if r.value:
        out.append(item.data)
        out.append(b"\r\n")
    return RawReply(b"".join(out))


def _locked(tokens: tuple[bytes, ...]) -> bool:
    """memcached fetches with the item lock (and records the fetch only after a successful
    reply) when h, l, T, N or R is present; otherwise the fetch is recorded as it is read,
    so it stands even if the reply then fails on a too-long opaque."""
    return any(t[0] in b"hlTNR" for t in tokens)


def _mg_miss(r: MetaGet, counters: Counters) -> Response:
    if r.ttl is not None:
        counters.cmd_touch += 1
        counters.touch_misses += 1
    else:
        counters.cmd_get += 1
        counters.get_misses += 1
    echoed = _echo_flags(r.tokens, r.key, r.binary)
    if echoed is None:
        return OPAQUE_ERROR
    if r.quiet:
        return SILENT
    return RawReply(b"EN" + echoed + b"\r\n")


# -- ms ----------------------------------------------------------------------------------------


def _ms(r: MetaSet, engine: Engine, counters: Counters) -> Response:
    """memcached's do_store_item for ms: C turns set/replace into cas, add ignores C."""
    counters.cmd_set += 1
    now = engine.now()
    old = engine.lookup(r.key, now)
    mode = r.mode
    compare = r.compare_cas
    cas_mode = compare is not None and mode in ("S", "R")
    flags, deadline, data = r.client_flags, ttl.deadline(r.ttl, now), r.data
    bits = KEY_BINARY if r.binary else 0
    code = b"HD"
    if cas_mode:
        if old is None:
            counters.cas_misses += 1
            code = b"NF"
        elif old.cas == compare:
            counters.cas_hits += 1
        elif r.invalidate and compare and compare < old.cas:  # C0 never matches
            # A stale write: keeps the TTL and the win state, marks the item stale.
            counters.cas_hits += 1
            deadline = old.deadline
            bits |= STALE | (old.bits & WIN_SENT)
        else:
            counters.cas_badval += 1
            code = b"EX"
    elif mode == "E":
        if old is not None:
            code = b"NS"
    elif old is None and mode != "S":
        if mode in ("A", "P") and r.vivify is not None:
            deadline = ttl.deadline(r.vivify, now)
        else:
            code = b"NS"
    elif old is not None and mode in ("A", "P"):
        if compare and compare != old.cas:  # memcached: C0 compares nothing here
            code = b"EX"
        else:
            data = old.data + data if mode == "A" else data + old.data
            flags, deadline, bits = old.flags, old.deadline, 0
            if not item_size_ok(len(r.key), flags, len(data), engine.item_size_max):
                code = b"NS"
    cas = 0
    if code == b"HD":
        cas = engine.put(r.key, flags, deadline, data, now, cas=r.new_cas or 0, old=old, bits=bits)
    if code == b"HD" and r.quiet:
        return SILENT
    out = [code]
    for token in r.tokens:
        first = token[0]
        if first == 79:  # O
            out.append(b" " + token)
        elif first == 107:  # k
            out.append(key_flag(r.key, r.binary))
        elif first == 99:  # c
            out.append(b" c%d" % cas)
        elif first == 115:  # s: the stored item's size (after append), else the request's
            out.append(b" s%d" % len(data if code == b"HD" else r.data))
    out.append(b"\r\n")
    return RawReply(b"".join(out))


# -- md ----------------------------------------------------------------------------------------


def _md(r: MetaDelete, engine: Engine, counters: Counters) -> Response:
    now = engine.now()
    item = engine.lookup(r.key, now)
    if item is None:
        counters.delete_misses += 1
        code = b"NF"
    elif r.compare_cas is not None and item.cas != r.compare_cas:
        counters.delete_misses += 1
        code = b"EX"
    else:
        code = b"HD"
        current = item
        if r.drop_value:
            # newer memcached: replace with an empty item (flags F, TTL T), same CAS unless E.
            deadline = ttl.deadline(r.ttl or 0, now)
            current = Item(r.client_flags, deadline, now, r.new_cas or item.cas, b"", now, 0)
        if r.invalidate:
            deadline = current.deadline
            if r.ttl is not None:
                deadline = ttl.deadline(r.ttl, now)
            bits = (current.bits | STALE) & ~WIN_SENT
            cas = r.new_cas or engine.next_cas()
            engine.rewrite(r.key, current._replace(deadline=deadline, bits=bits, cas=cas), item)
        else:
            counters.delete_hits += 1
            if r.drop_value:
                engine.rewrite(r.key, current, item)
            else:
                engine.delete_item(r.key, item)
        if r.quiet:
            return SILENT
    return RawReply(code + (_echo_flags(r.tokens, r.key, r.binary) or b"") + b"\r\n")


# -- ma ----------------------------------------------------------------------------------------


def _ma(r: MetaArithmetic, engine: Engine, counters: Counters) -> Response:
    now = engine.now()
    item = engine.lookup(r.key, now)
    created = False
    if item is None:
        if r.vivify is None:
            if r.incr:
                counters.incr_misses += 1
            else:
                counters.decr_misses += 1
            return _no_item_reply(b"NF", r)
        number = b"%d" % r.initial
        item = Item(0, ttl.NEVER, now, r.new_cas or engine.next_cas(), number, now, 0)
        new = item
        created = True
    elif r.compare_cas and item.cas != r.compare_cas:  # memcached: C0 compares nothing
        return _no_item_reply(b"EX", r)
    else:
        value = parse_stored_counter(item.data)
        if value is None:
            return NON_NUMERIC
        value = (value + r.delta) & U64_MAX if r.incr else max(value - r.delta, 0)
        number = b"%d" % value
        digits = number.ljust(len(item.data)) if len(number) < len(item.data) else number
        last_access, bits = codec.after_delta(item, digits, now)
        cas = r.new_cas or engine.next_cas()
        new = item._replace(data=digits, stored_at=now, cas=cas, last_access=last_access, bits=bits)
        if r.incr:
            counters.incr_hits += 1
        else:
            counters.decr_hits += 1

    # memcached applies T and N to the item it hands back: the live one when the counter
    # was created or rewritten in place, but the replaced (unlinked) one when the number
    # grew into a new item; then they only show in a later ``t`` of this same reply.
    in_place = created or len(new.data) == len(item.data)
    deadline = new.deadline
    out = [b"VA %d" % len(number) if r.value else b"HD"]
    error = False
    for token in r.tokens:
        first = token[0]
        if first == 99:  # c
            out.append(b" c%d" % new.cas)
        elif first == 116:  # t
            out.append(_ttl_flag(deadline, now))
        elif first == 84:  # T
            deadline = ttl.deadline(r.ttl or 0, now)
        elif first == 78:  # N
            if created:
                deadline = ttl.deadline(r.vivify or 0, now)
        elif first == 79:  # O
            if opaque_too_long(token):
                error = True
                break
            out.append(b" " + token)
        elif first == 107:  # k
            out.append(key_flag(r.key, r.binary))
    engine.put(
        r.key,
        new.flags,
        deadline if in_place else new.deadline,
        new.data,
        now,
        cas=new.cas,
        old=None if created else item,
        last_access=new.last_access,
        bits=new.bits,
    )
    if error:
        return OPAQUE_ERROR
    if r.quiet and not created:
        return SILENT
    out.append(b"\r\n")
    if r.value:
        out.append(number)
        out.append(b"\r\n")
    return RawReply(b"".join(out))


def _no_item_reply(code: bytes, r: MetaArithmetic) -> Response:
    echoed = _echo_flags(r.tokens, r.key, r.binary)
    if echoed is None:
        return OPAQUE_ERROR
    return RawReply(code + echoed + b"\r\n")


# -- me ----------------------------------------------------------------------------------------


def _me(r: MetaDebug, engine: Engine) -> Response:
    now = engine.now()
    item = engine.lookup(r.key, now)
    if item is None:
        return RawReply(b"EN\r\n")
    key = b64encode_key(r.key) if item.bits & KEY_BINARY else r.key
    # memcached 1.6.18 prints now - exptime (so a TTL of 100 s left reads exp=-100).
    exp = -1 if item.deadline == ttl.NEVER else now - item.deadline
    size = item_total_size(len(r.key), item.flags, len(item.data))
    return RawReply(
        b"ME %b exp=%d la=%d cas=%d fetch=%b cls=%d size=%d\r\n"
        % (
            key,
            exp,
            max(now - item.last_access, 0),
            item.cas,
            b"yes" if item.bits & FETCHED else b"no",
            slab_class(size, engine.item_size_max),
            size,
        )
    )


def item_total_size(key_length: int, flags: int, data_length: int) -> int:
    """memcached's ``ITEM_ntotal`` for this item (what ``me`` reports as ``size``)."""
    suffix = 4 if flags else 0
    return ITEM_HEADER_SIZE + key_length + 1 + suffix + data_length + 2 + CAS_SIZE


def slab_class(size: int, item_size_max: int) -> int:
    """The slab class memcached (default ``-n 48 -f 1.25``) would store ``size`` bytes in.

    petracache has no slabs; ``me`` reports the class a memcached with the same item size
    limit would use, so tools that read ``cls=`` see familiar numbers.
    """
    chunk_max = max(item_size_max // 2, 1)
    chunk = ITEM_HEADER_SIZE + 48
    cls = 1
    while chunk < chunk_max / 1.25:
        if chunk % 8:
            chunk += 8 - chunk % 8
        if size <= chunk:
            return cls
        cls += 1
        chunk = int(chunk * 1.25)
    return cls
