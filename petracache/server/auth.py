"""Text-protocol authentication the way memcached 1.6 does it (``-Y authfile``).

memcached's ``try_read_command_asciiauth`` (proto_text.c) is the reference. Until a
connection authenticates, the only thing it may send is a ``set`` whose data block is
``<user> <password>``; key, flags and exptime are ignored::

    set <anykey> <flags> <exptime> <bytes>\\r\\n<user> <password>\\r\\n  -> STORED

Replies, exactly memcached's:

* a line that is not ``set`` with at least five tokens and a numeric ``<bytes>``:
  ``CLIENT_ERROR unauthenticated`` (the line is consumed; the connection stays open);
* a data block that does not end in ``\\r\\n``: ``CLIENT_ERROR bad command line termination``;
* a data block with fewer than two words: ``CLIENT_ERROR bad authentication token format``;
* unknown user or wrong password: ``CLIENT_ERROR authentication failure``;
* more than 2048 bytes without a newline: the connection is closed, and the replies of
  that read are dropped (observed on memcached 1.6.18; its source says 1024 in later versions).

memcached 1.6.18 answers these through one response object per read, so when one read
holds several unauthenticated commands, each reply overwrites the previous one and only
the last is sent (``get a\r\nget b\r\n`` in one packet gets one ``CLIENT_ERROR
unauthenticated``; sent in two packets, two). We do the same, per ``receive_data`` call,
so that a client sees byte-identical replies; a well-behaved client authenticates first
and never meets this.

Our one addition: a declared ``<bytes>`` over ``MAX_CREDENTIALS`` closes the connection
(memcached would wait for that many bytes; nothing legitimate is that long).

A connection whose first byte is the binary protocol's request magic (0x80) is let through
at once: the binary protocol authenticates with SASL PLAIN against the same users
(``protocol.binary``), as memcached's binary protocol does with ``-S``.

``AuthGate`` is sans-I/O (bytes in, reply bytes out), like ``protocol.connection``; the
handler feeds it until ``authenticated`` and then hands the leftover bytes to the parser.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path

from petracache.observability.counters import Counters
from petracache.protocol.tokens import tokenize

MAX_UNTERMINATED = 2048  # memcached 1.6.18 closes past this many bytes without a newline
MAX_CREDENTIALS = 64 * 1024
UNAUTHENTICATED = b"CLIENT_ERROR unauthenticated\r\n"
BAD_TERMINATION = b"CLIENT_ERROR bad command line termination\r\n"
BAD_TOKEN_FORMAT = b"CLIENT_ERROR bad authentication token format\r\n"
AUTH_FAILURE = b"CLIENT_ERROR authentication failure\r\n"
STORED = b"STORED\r\n"
BINARY_MAGIC = b"\x80"  # a binary-protocol request's first byte (protocol.binary)


class AuthFileError(Exception):
    """The auth file is missing, unreadable or has a line that is not ``user:password``."""


def load_auth_file(path: str | Path) -> dict[bytes, bytes]:
    """Read ``user:password`` lines (memcached's authfile format); blank lines are skipped.

    Raises:
        AuthFileError: with the file name and line number of the problem.
    """
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise AuthFileError(f"cannot read {path}: {exc.strerror}") from None
    users: dict[bytes, bytes] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip(b"\r")
        if not line:
            continue
        user, sep, password = line.partition(b":")
        if not sep or not user or not password:
            raise AuthFileError(f"{path} line {number}: expected user:password")
        users[user] = password
    if not users:
        raise AuthFileError(f"{path}: no user:password lines")
    return users


def _strtoul(token: bytes) -> int | None:
    """memcached's ``safe_strtoul`` on a token that may keep the line's trailing ``\\r``."""
    digits = token.rstrip(b"\r")
    if not digits.isdigit() or len(digits) > 10:
        return None
    value = int(digits)
    return value if value <= 0xFFFFFFFF else None


@dataclass(slots=True)
class AuthGate:
    """One connection's authentication state.

    Args:
        users: user -> password, from ``load_auth_file``.
        counters: where ``auth_cmds`` and ``auth_errors`` are counted (memcached's stats).
        binary: let a connection whose first byte is the binary magic through (it runs
            SASL itself); False when only the text protocol is served (``-B ascii``).
    """

    users: dict[bytes, bytes]
    counters: Counters = field(default_factory=Counters)
    binary: bool = True
    authenticated: bool = False
    closed: bool = False
    _buf: bytes = b""
    _need: int = -1  # bytes of the credentials block still awaited (-1: reading a line)
    _seen: bool = False  # whether any byte has arrived (the first decides the protocol)

    def receive_data(self, data: bytes) -> bytes:
        """Consume input; returns the replies to send. Check ``closed`` and ``authenticated``.

        Once authenticated, whatever followed the credentials is in ``leftover()``.
        """
        if not self._seen and self.binary and data[:1] == BINARY_MAGIC:
            # A binary-protocol connection: not ours to judge; it answers SASL itself
            # (``protocol.binary``), so everything passes through as ``leftover()``.
            self.authenticated = True
        self._seen = self._seen or bool(data)
        self._buf += data
        reply = b""  # memcached keeps only the last reply of a read (see the module doc)
        while not self.authenticated and not self.closed:
            if self._need < 0:
                nl = self._buf.find(b"\n")
                if nl < 0:
                    if len(self._buf) > MAX_UNTERMINATED:
                        self.closed = True
                    break
                line, self._buf = self._buf[:nl], self._buf[nl + 1 :]
                tokens = tokenize(line)
                size = _strtoul(tokens[4]) if len(tokens) >= 5 and tokens[0] == b"set" else None
                if size is None:
                    reply = UNAUTHENTICATED
                    continue
                if size > MAX_CREDENTIALS:
                    self.closed = True
                    break
                self._need = size + 2
            if len(self._buf) < self._need:
                break
            block, self._buf = self._buf[: self._need], self._buf[self._need :]
            self._need = -1
            reply = self._check(block)
        return b"" if self.closed else reply

    def _check(self, block: bytes) -> bytes:
        if not block.endswith(b"\r\n"):
            return BAD_TERMINATION
        words = tokenize(block[:-2])
        if len(words) < 2:
            return BAD_TOKEN_FORMAT
        self.counters.auth_cmds += 1
        expected = self.users.get(words[0])
        if expected is not None and hmac.compare_digest(expected, words[1]):
            self.authenticated = True
            return STORED
        self.counters.auth_errors += 1
        return AUTH_FAILURE

    def leftover(self) -> bytes:
        """Bytes received after the successful credentials (the client's first commands)."""
        out, self._buf = self._buf, b""
        return out
