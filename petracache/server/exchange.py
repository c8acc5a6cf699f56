"""One connection's exchange of requests and replies, without I/O: what every read runs.

A connection is served by the reactor (``server.reactor_pass``, synchronous) or by its own
trio task (``server.handler``: TLS, before authentication, fsync mode, the drain). Both do
the same with what they read, and ``Exchange`` is that part: count the bytes, let them
through the authentication gate while it is closed, hand them to the protocol connection,
answer every complete request (``ClientConnection.process``), count the reply bytes,
protocol errors and ``reqs_per_event`` yields, and say what the caller must do next. The
callers keep only their I/O (``os.read``/``os.write`` and hand-backs;
``receive_some``/``send_all``, the fsync wait, checkpoints), the way h11's ``Connection``
leaves the sockets to its user::

    out = exchange.answer(data)  # one read's bytes
    while True:
        write(out)  # the caller's I/O
        if exchange.then in (READ, CLOSE):
            break  # read again, or close
        if exchange.then == STREAM:
            ...  # let the other connections run
        out = exchange.replies()

``then`` after ``answer`` and ``replies``:

* ``READ``: every complete request is answered; read again.
* ``MORE``: the replies reached ``server.write_buffer_size``. Write them before calling
  ``replies`` for the rest: nothing more is parsed until they are written, so a client that
  pipelines without reading is held back by TCP instead of growing our memory.
* ``STREAM``: a streamed reply (``lru_crawler metadump``) has more chunks; write this one,
  let the other connections run, then call ``replies``.
* ``CLOSE``: write ``out``, then close (``quit``, a protocol close, a refused login).

This module runs for every read of every connection, so it is compiled with the request
path (pyproject.toml, ``[tool.petracache.mypyc]``). ``then`` is a plain int: the compiled
build compares it natively, where reading an enum member is an attribute look-up. (An
``Exchange`` is built once per connection, so its dataclass ``__init__`` staying
interpreted costs nothing per request.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from petracache.observability.counters import Counters
from petracache.protocol.connection import Execute
from petracache.protocol.detect import ClientConnection
from petracache.server.auth import AuthGate

# What the caller does once ``out`` is written (``Exchange.then``).
READ: Final = 0
MORE: Final = 1
STREAM: Final = 2
CLOSE: Final = 3


@dataclass(eq=False, slots=True)
class Exchange:
    """A connection's protocol state plus what the server counts per read.

    Args:
        conn: the connection's parser (text or binary, picked by its first byte).
        execute: runs one request (the instrumented executor).
        counters: ``bytes_read``, ``bytes_written`` and ``protocol_errors`` move here.
        write_size: reply bytes after which a batch is handed out before parsing on
            (``server.write_buffer_size``).
        gate: the text protocol's authentication (``server.auth_file``), None when off.
    """

    conn: ClientConnection
    execute: Execute
    counters: Counters
    write_size: int
    gate: AuthGate | None = None
    then: int = field(default=READ, init=False)

    @property
    def authenticated(self) -> bool:
        """Whether requests reach the parser (no gate, or the client logged in)."""
        return self.gate is None

    def answer(self, data: bytes | bytearray) -> bytes:
        """Take one read's bytes; returns the first replies to write (see ``then``)."""
        self.counters.bytes_read += len(data)
        if self.gate is not None:
            return self._authenticate(data)
        self.conn.receive_data(data)
        return self.replies()

    def replies(self) -> bytes:
        """The next replies to write for what is buffered (see ``then``)."""
        out, close, more, errors, yields = self.conn.process(self.execute, self.write_size)
        counters = self.counters
        if errors:
            counters.protocol_errors += errors
        if yields:
            counters.conn_yields += yields
        if out:
            counters.bytes_written += len(out)
        if close:
            self.then = CLOSE
        elif not more:
            self.then = READ
        elif self.conn.streaming:
            self.then = STREAM
        else:
            self.then = MORE
        return out

    def _authenticate(self, data: bytes | bytearray) -> bytes:
        """``answer`` before the client has logged in: only its credentials may pass."""
        gate = self.gate
        assert gate is not None
        reply = gate.receive_data(bytes(data))
        if gate.closed:
            self.then = CLOSE
            return b""
        if not gate.authenticated:
            self.then = READ
            return reply
        self.gate = None
        self.conn.receive_data(gate.leftover())
        return reply + self.replies()
