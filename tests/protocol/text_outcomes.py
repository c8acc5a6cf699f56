"""Feeding the classic text parser (``MemcacheConnection``) and collecting what it yields.

Shared by the table-driven tests (``test_text``) and the hypothesis properties
(``test_props``).
"""

from __future__ import annotations

from collections.abc import Iterable

from petracache.protocol import errors
from petracache.protocol.connection import NEED_DATA, MemcacheConnection

CLOSE = ("close",)


def outcomes(conn: MemcacheConnection, chunks: Iterable[bytes]) -> list[object]:
    """Feed ``chunks``; after each, drain every outcome until ``NEED_DATA`` or a close.

    An outcome is a request, ``("error", reply, noreply)`` for a ``ProtocolError``, or
    ``CLOSE``; any other exception propagates.
    """
    out: list[object] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        while True:
            try:
                request = conn.next_request()
            except errors.CloseConnection:
                out.append(CLOSE)
                return out
            except errors.ProtocolError as exc:
                out.append(("error", exc.reply, exc.noreply))
                continue
            if request is NEED_DATA:
                break
            out.append(request)
    return out
