"""The ``lru_crawler`` request and the one reply shape that is produced piece by piece.

``lru_crawler <subcommand> [<arg>]`` is parsed no further than its tokens here: memcached
checks the token count per subcommand (``proto_text.c`` ``process_lru_crawler_command``),
so the command layer (``commands.crawler``) validates them and picks the reply.

``Streamed`` is a reply too large to build at once (a metadump of a 10 GB store): an
iterator of already-encoded chunks. ``MemcacheConnection.process`` writes one chunk per
call and reports ``more``, and the data plane yields between chunks, so the reply is never
held whole and other clients are served while it is written.

memcached hands a connection to its crawler or logger thread for ``lru_crawler metadump``,
``mgdump`` and ``watch``, and refuses to when replies of earlier requests are still held
(``resp_has_stack``: any request since the last flush point, ``noreply`` ones included):
``ERROR cannot pipeline other commands before metadump``. Such a reply carries that line
as ``refusal``; the connection, which knows what it holds, sends it instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(slots=True)
class LruCrawler:
    """``lru_crawler ...``; ``args`` are the tokens after ``lru_crawler``."""

    args: list[bytes]
    noreply: bool = False  # memcached has no noreply form for lru_crawler


@dataclass(slots=True)
class Streamed:
    """Reply bytes produced in bounded chunks; each ``next`` does one bounded step of work.

    ``refusal``: the reply instead when other requests' replies are held (see above);
    empty for a reply that may follow others (``stats cachedump``).
    """

    chunks: Iterator[bytes]
    refusal: bytes = b""
