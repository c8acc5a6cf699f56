"""memcached's administrative commands that have no data-plane meaning here.

``slabs``, ``lru``, ``watch`` and ``shutdown`` parse to one request, ``Admin``, carrying
the tokens after the command word; the command layer (``commands.admin``) checks them as
memcached's ``proto_text.c`` does and picks memcached's reply. Only ``noreply`` is decided
here, because the connection needs it to drop the reply: memcached calls
``set_noreply_maybe`` for ``slabs automove``, ``lru`` and ``watch``, never for
``slabs reassign`` or ``shutdown``.

``misbehave`` and ``debugtime`` exist only in memcached's debug builds; a release build
(1.6.18 as shipped) answers ``ERROR``, and so does petracache (they are not parsed).
"""

from __future__ import annotations

from dataclasses import dataclass

from petracache.protocol import errors


@dataclass(slots=True)
class Admin:
    """``slabs|lru|watch|shutdown ...``; ``args`` are the tokens after the command word."""

    command: bytes
    args: list[bytes]
    noreply: bool = False


def parse_admin(tokens: list[bytes], ntokens: int, _item_size_max: int) -> Admin:
    """One of memcached's admin commands (memcached's ``ntokens`` counts the terminal token)."""
    command = tokens[0]
    last_is_noreply = tokens[ntokens - 2] == b"noreply"
    if command == b"lru":
        if ntokens < 3:  # memcached: WANT_TOKENS_MIN(ntokens, 3)
            raise errors.UnknownCommand()
        noreply = last_is_noreply
    elif command == b"slabs":
        noreply = ntokens >= 4 and tokens[1] == b"automove" and last_is_noreply
    else:
        noreply = command == b"watch" and last_is_noreply
    return Admin(command, tokens[1 : ntokens - 1], noreply)
