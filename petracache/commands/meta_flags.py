"""The meta protocol's return flags: the walk over a request's flag tokens, in order.

The reply echoes return flags in request order, and ``T``/``N`` take effect at their
position (``t T30`` shows the old TTL, then the new one), as memcached's proto_text.c walks
the tokens once while it fills the reply. Shared by mg, ms, md and ma (``commands.meta``).
"""

from __future__ import annotations

from typing import Final

from petracache.protocol.meta import OPAQUE_TOO_LONG, b64encode_key, opaque_too_long
from petracache.protocol.responses import ErrorReply, MetaCode, MetaReply, Response
from petracache.rules import ttl
from petracache.storage.items import FETCHED, Item

OPAQUE_ERROR: Final = ErrorReply(OPAQUE_TOO_LONG)
NO_MARK: Final = -1  # a T or N flag that does not apply
NO_FLAGS: Final = b""


def return_flags(
    out: list[bytes],
    tokens: tuple[bytes, ...],
    letters: bytes,
    key: bytes,
    binary: bool,
    now: int = 0,
    item: Item | None = None,
    *,
    cas: int = 0,
    size: int = 0,
    deadline: int = 0,
    t_mark: int = 0,
    n_mark: int = NO_MARK,
    recache: int = 0,
) -> tuple[bool, int, bool]:
    """Append the return flags of ``tokens`` to ``out``, in request order.

    ``O`` and ``k`` are echoed for every command; of the other letters only ``letters``.
    ``c`` and ``s`` show ``cas`` and ``size``; ``f``, ``l`` and ``h`` come from ``item``;
    ``t`` shows the TTL in effect at its position: ``deadline``, then ``t_mark`` after a
    ``T`` and ``n_mark`` after an ``N`` (when it applies). ``R`` wins the token if that TTL
    is below ``recache``; an applying ``N`` wins it too.

    Returns:
        (False if an opaque is too long (the walk stops there), the TTL in effect where the
        walk stopped, whether N or R won the token).
    """
    won = False
    for token in tokens:
        first = token[0]
        if first == 79:  # O
            if opaque_too_long(token):
                return False, deadline, won
            out.append(token)
        elif first == 107:  # k
            if binary:
                out.append(b"k" + b64encode_key(key))
                out.append(b"b")
            else:
                out.append(b"k" + key)
        elif first not in letters:
            continue
        elif first == 99:  # c
            out.append(b"c%d" % cas)
        elif first == 115:  # s
            out.append(b"s%d" % size)
        elif first == 116:  # t
            out.append(b"t%d" % ttl.remaining(deadline, now))
        elif first == 84:  # T
            deadline = t_mark
        elif first == 78:  # N
            if n_mark != NO_MARK:
                deadline, won = n_mark, True
        elif first == 82:  # R
            won = won or (recache != 0 and deadline != 0 and deadline < recache)
        elif item is not None:
            out.append(_item_flag(first, item, now))
    return True, deadline, won


def _item_flag(letter: int, item: Item, now: int) -> bytes:
    """One of an item's state flags: f (client flags), l (seconds since access), h (hit)."""
    if letter == 102:  # f
        return b"f%d" % item.flags
    if letter == 108:  # l
        return b"l%d" % max(now - item.last_access, 0)
    return b"h1" if item.bits & FETCHED else b"h0"  # h


def no_item(
    code: MetaCode, tokens: tuple[bytes, ...], key: bytes, binary: bool, quiet: bool = False
) -> Response:
    """A reply without an item: the code and the echoed O and k flags."""
    out: list[bytes] = []
    if not return_flags(out, tokens, NO_FLAGS, key, binary)[0]:
        return OPAQUE_ERROR
    return MetaReply(code, out, None, quiet)
