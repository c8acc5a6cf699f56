"""``stats conns``: memcached's lines for the listeners and every client connection.

memcached (``memcached.c`` ``process_stats_conns``) prints, per descriptor,
``<fd>:addr``, then for a client ``<fd>:listen_addr``, then ``<fd>:state`` and
``<fd>:secs_since_last_cmd``. Addresses are ``tcp:<ip>:<port>`` (``tcp6:[<ip>]:<port>``),
or ``unix:<path>`` for a unix socket; a unix client's own address is ``?:<AF 0>``, as
memcached prints it (it never records a peer address for a unix connection).
Listeners are in ``conn_listening``; the connection asking is in ``conn_parse_cmd`` (its
command is being executed, as in memcached), every other client in ``conn_waiting``
(petracache does not track a connection's state between commands; between reads it is
waiting for input). ``secs_since_last_cmd`` counts from the connection's last input (from
its accept before any), and for a listener from when it was bound (memcached's listener
keeps the time it was created).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import trio
from trio.socket import SocketType

from petracache.server.handler import ConnectionTracker

UNIX_PEER = "?:<AF 0>"  # memcached.c get_conn_text() for a connection without a peer address


def _address(sock: SocketType, peer: bool) -> str:
    if sock.family == socket.AF_UNIX:
        if peer:
            return UNIX_PEER
        try:
            return f"unix:{sock.getsockname()}"
        except OSError:
            return "unknown"
    try:
        addr = sock.getpeername() if peer else sock.getsockname()
    except OSError:
        return "unknown"
    if sock.family == socket.AF_INET6:
        return f"tcp6:[{addr[0]}]:{addr[1]}"
    return f"tcp:{addr[0]}:{addr[1]}"


def conns_rows(
    listeners: Sequence[SocketType], tracker: ConnectionTracker, bound_at: float | None = None
) -> list[tuple[str, str]]:
    """The ``stats conns`` lines (without ``STAT``), listeners first, then by descriptor.

    ``bound_at``: when the listeners were bound (trio time): a listener's
    ``secs_since_last_cmd`` counts from then, as memcached's does from its creation.
    """
    now = trio.current_time()
    listening = str(max(int(now - bound_at), 0)) if bound_at is not None else "0"
    rows: list[tuple[str, str]] = []
    for sock in listeners:
        fd = sock.fileno()
        rows += [
            (f"{fd}:addr", _address(sock, peer=False)),
            (f"{fd}:state", "conn_listening"),
            (f"{fd}:secs_since_last_cmd", listening),
        ]
    reactor = tracker.reactor
    # The connection whose command runs now: its task's, else the reactor's (see handler).
    asking = tracker.serving
    if asking < 0 and reactor is not None:
        asking = reactor.serving
    clients = [
        (v.sock.fileno(), v.sock, v.last_active)
        for v in tracker.views
        if v.sock is not None and v.sock.fileno() >= 0
    ]
    for fd, client, last_active in sorted(clients, key=lambda c: c[0]):
        parked = reactor.last_active(fd) if reactor is not None else None
        idle = now - (parked if parked is not None else last_active)
        rows += [
            (f"{fd}:addr", _address(client, peer=True)),
            (f"{fd}:listen_addr", _address(client, peer=False)),
            (f"{fd}:state", "conn_parse_cmd" if fd == asking else "conn_waiting"),
            (f"{fd}:secs_since_last_cmd", str(max(int(idle), 0))),
        ]
    return rows
