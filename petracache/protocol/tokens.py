"""memcached's ``tokenize_command``, shared by every text-protocol reader (classic, meta, auth).

Rules (memcached ``proto_text.c``): split on the space character only, so tabs and ``\\r``
belong to tokens; empty tokens are dropped; at most ``MAX_TOKENS - 1`` tokens are real and
memcached appends a terminal one, so its ``ntokens`` is ``min(len(tokens), 23) + 1``. The
arity checks of the readers compare with that count, exactly as ``process_command_ascii``
does, which is why ``count`` returns memcached's figure and not ``len(tokens)``.
"""

from __future__ import annotations

from typing import Final

MAX_TOKENS: Final = 24  # memcached's MAX_TOKENS, the terminal token included


def tokenize(line: bytes) -> list[bytes]:
    """Split on spaces, dropping empty tokens (memcached's ``tokenize_command``)."""
    tokens = line.split(b" ")
    if b"" in tokens:
        tokens = [t for t in tokens if t]
    return tokens


def count(tokens: list[bytes]) -> int:
    """memcached's ``ntokens`` for ``tokens``: the real ones (at most 23) plus the terminal."""
    return min(len(tokens), MAX_TOKENS - 1) + 1
