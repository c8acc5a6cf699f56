"""memcached's ``uriencode`` (``util.c``): how metadump and watch lines print a key.

Letters, digits and ``-._~`` stay as they are; every other byte becomes ``%XX`` (upper-case
hex), so a key with spaces, ``%``, control bytes or UTF-8 still makes one token.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote_from_bytes

URI_SAFE: Final = b"-._~"  # besides letters and digits


def uriencode(key: bytes) -> bytes:
    """``key`` as memcached prints it in a ``key=`` field."""
    return quote_from_bytes(key, URI_SAFE).encode()
