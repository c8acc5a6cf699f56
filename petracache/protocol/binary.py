"""memcached's binary protocol, sans-I/O: bytes in, requests out, replies to bytes.

The same interface as ``connection.MemcacheConnection`` (``receive_data``, ``process``,
``buffered``, ``streaming``), so both data-plane paths run it unchanged. Rules, from
memcached 1.6.18's ``proto_bin.c`` (``try_read_command_binary``, ``dispatch_bin_command``):

1. A request is a 24-byte header, then ``extlen`` extras, ``keylen`` key bytes and the rest
   of ``bodylen``: the value, for the commands that have one. A first byte other than 0x80
   closes the connection without a reply, dropping the replies held since the last flush
   point (rule 5).
2. The header is judged once its extras and key are buffered: a key or extras longer than
   the body gets ``Unknown command`` and a close; without authentication (when
   credentials are configured) every command but the SASL ones and version gets
   ``Auth failure.`` and a close; a key over 250 bytes, or extras, key or body lengths the
   command does not take, get ``Invalid arguments`` and a close. Only the header, extras
   and key are consumed for a command without a value: body bytes beyond them (touch, stat)
   are read as the next request, as memcached does.
3. An unknown opcode gets ``Unknown command`` and memcached then skips ``bodylen`` bytes
   *after* the extras and key (so a body with a key eats the next request's first bytes):
   reproduced. Without SASL configured, the SASL opcodes are unknown commands that skip
   their value.
4. A value is buffered until complete (at most the item size limit); one too large for an
   item is skipped as it arrives (``Too large.``), so memory per connection stays bounded
   by the item size limit plus the longest header, extras and key (64 KiB + 279 bytes).
5. Replies are written at memcached's flush points: after noop, after an error it did not
   skip a body for, every ``reqs_per_event`` requests after the ``reqs_per_event + 1``-th
   (memcached's ``-R``; each counted in ``Batch.yields``), and when the input runs dry.
   quit answers (quitq does not) and closes.
6. SASL: ``PLAIN`` only, checked against the auth file's users. Every auth or step first
   drops the connection's authentication, as memcached's ``init_sasl_conn`` does. An auth
   with no data answers ``AUTH_CONTINUE`` and waits for a step with the credentials.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable
from typing import Final, NamedTuple

from petracache.protocol import binary_compose, compose
from petracache.protocol.binary_requests import (
    QUIET,
    BinaryRequest,
    BinDelete,
    BinDelta,
    BinFlush,
    BinGet,
    BinNoop,
    BinSasl,
    BinStat,
    BinStatus,
    BinStore,
    BinTooLarge,
    Opcode,
)
from petracache.protocol.connection import (
    NEED_DATA,
    REQS_PER_EVENT,
    Batch,
    Execute,
    InputBuffer,
    final_write_yield,
)
from petracache.protocol.responses import BinaryReply, ErrorReply, Response
from petracache.rules.sizes import DEFAULT_ITEM_SIZE_MAX, KEY_MAX_LENGTH, item_size_ok
from petracache.rules.verbs import StoreMode

REQUEST_MAGIC: Final = 0x80
HEADER: Final = struct.Struct(">BBHBBHIIQ")  # protocol_binary_request_header, network order
HEADER_SIZE: Final = 24
MAX_SASL_MECH_LEN: Final = 32  # memcached.h
MECHANISMS: Final = b"PLAIN"
AUTHENTICATED: Final = b"Authenticated"
_STORE_EXTRAS: Final = struct.Struct(">II")  # flags, expiration
_DELTA_EXTRAS: Final = struct.Struct(">QQI")  # delta, initial, expiration
_U32: Final = struct.Struct(">I")
_STORE_MODES: Final[dict[int, StoreMode]] = {
    Opcode.SET: StoreMode.SET,
    Opcode.ADD: StoreMode.ADD,
    Opcode.REPLACE: StoreMode.REPLACE,
    Opcode.APPEND: StoreMode.APPEND,
    Opcode.PREPEND: StoreMode.PREPEND,
}
_UNGUARDED: Final = (Opcode.SASL_LIST_MECHS, Opcode.SASL_AUTH, Opcode.SASL_STEP, Opcode.VERSION)
_SASL_NONE, _SASL_CONTINUE, _SASL_DONE = 0, 1, 2  # where a SASL exchange stands


class Header(NamedTuple):
    """A request's header fields, with its extras and key (the value comes later)."""

    opcode: int
    opaque: int
    cas: int
    extras: bytes
    key: bytes
    vlen: int  # body bytes after the extras and key


class Refusal(NamedTuple):
    """A reply the connection gives itself (a protocol error), and what follows it."""

    reply: bytes
    close: bool = False  # close once the replies so far are written
    flush: bool = True  # a flush point (memcached skipped no body after it)


class _Pending(NamedTuple):
    """A command whose value is still arriving, and how to build it once complete."""

    header: Header
    build: Callable[[Header, bytes], BinaryRequest]


_CLOSE: Final = Refusal(b"", close=True, flush=False)  # invalid magic: no reply


def _refuse(head: Header, status: BinStatus, *, close: bool = False, skip: int = 0) -> Refusal:
    return Refusal(binary_compose.error(head.opcode, head.opaque, status), close, not skip)


class BinaryConnection(InputBuffer):
    """Parser and SASL state for one binary-protocol connection.

    Args:
        item_size_max: memcached's ``-I``; larger values get ``Too large.``.
        users: user -> password (the auth file); None: no authentication, and the SASL
            commands are unknown, as without memcached's ``-S``.
        reqs_per_event: memcached's ``-R``: where the flush points of rule 5 fall.
    """

    __slots__ = (
        "_authenticated",
        "_every",
        "_first",
        "_flushed_at",
        "_handled",
        "_item_size_max",
        "_pending",
        "_sasl",
        "_users",
    )

    def __init__(
        self,
        item_size_max: int = DEFAULT_ITEM_SIZE_MAX,
        users: dict[bytes, bytes] | None = None,
        reqs_per_event: int = REQS_PER_EVENT,
    ) -> None:
        super().__init__()
        self._pending: _Pending | None = None
        self._item_size_max = item_size_max
        self._handled = 0
        self._flushed_at = 0
        self._first = reqs_per_event + 1
        self._every = reqs_per_event
        self._users = users
        self._authenticated = users is None
        self._sasl = _SASL_NONE

    streaming: Final = False  # no streamed replies in the binary protocol

    @property
    def authenticated(self) -> bool:
        """Whether requests other than SASL's are served (no users, or SASL PLAIN passed)."""
        return self._authenticated

    def next_request(self) -> BinaryRequest | Refusal | object:
        """The next request, a ``Refusal`` (a protocol error's reply), or ``NEED_DATA``."""
        if self._swallow and self._swallowing():
            return NEED_DATA
        pending = self._pending
        if pending is not None:
            head = pending.header
            end = self._pos + head.vlen
            if len(self._buf) < end:
                return NEED_DATA
            value = bytes(self._buf[self._pos : end])
            self._pos, self._pending = end, None
            return pending.build(head, value)
        return self._next_header()

    def _next_header(self) -> BinaryRequest | Refusal | object:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < HEADER_SIZE:
            return NEED_DATA
        if buf[pos] != REQUEST_MAGIC:
            return _CLOSE
        _magic, opcode, keylen, extlen, _dt, _vb, bodylen, opaque, cas = HEADER.unpack_from(
            buf, pos
        )
        start = pos + HEADER_SIZE
        end = start + extlen + keylen
        if len(buf) < end:
            return NEED_DATA
        self._pos = end
        head = Header(
            opcode,
            opaque,
            cas,
            bytes(buf[start : start + extlen]),
            bytes(buf[start + extlen : end]),
            max(bodylen - extlen - keylen, 0),
        )
        if keylen > bodylen or keylen + extlen > bodylen:
            return _refuse(head, BinStatus.UNKNOWN_COMMAND, close=True)
        if not self._authenticated and opcode not in _UNGUARDED:
            return _refuse(head, BinStatus.AUTH_ERROR, close=True)
        if keylen > KEY_MAX_LENGTH:
            return _refuse(head, BinStatus.EINVAL, close=True)
        command = QUIET.get(opcode, opcode)
        parse = _PARSERS.get(command)
        if parse is None:  # rule 3: memcached skips bodylen bytes after the key
            self._swallow = bodylen
            return _refuse(head, BinStatus.UNKNOWN_COMMAND, skip=bodylen)
        parsed = parse(self, head, opcode != command)
        if parsed is None:
            return _refuse(head, BinStatus.EINVAL, close=True)
        return parsed

    # -- per command: the request, None for invalid arguments (rule 2) -----------------------

    def _get(self, head: Header, quiet: bool) -> BinaryRequest | None:
        command = QUIET.get(head.opcode, head.opcode)
        if command in (Opcode.GET, Opcode.GETK):
            if head.extras or head.vlen or not head.key:
                return None
            return BinGet(
                head.opcode, head.opaque, head.key, with_key=command == Opcode.GETK, quiet=quiet
            )
        if len(head.extras) != 4 or not head.key:
            return None
        return BinGet(
            head.opcode,
            head.opaque,
            head.key,
            _U32.unpack(head.extras)[0],
            with_key=command == Opcode.GATK,
            with_value=command != Opcode.TOUCH,
            quiet=quiet,
        )

    def _store(self, head: Header, quiet: bool) -> object:
        mode = _STORE_MODES[QUIET.get(head.opcode, head.opcode)]
        appending = mode in (StoreMode.APPEND, StoreMode.PREPEND)
        if len(head.extras) != (0 if appending else 8) or not head.key:
            return None
        flags, exptime = (0, 0) if appending else _STORE_EXTRAS.unpack(head.extras)
        if not item_size_ok(len(head.key), flags, head.vlen, self._item_size_max):
            self._swallow = head.vlen
            return BinTooLarge(head.opcode, head.opaque, mode, head.key)

        def build(head: Header, value: bytes) -> BinaryRequest:
            return BinStore(
                head.opcode, head.opaque, mode, head.key, flags, exptime, value, head.cas, quiet
            )

        return self._await_value(head, build)

    def _await_value(
        self, head: Header, build: Callable[[Header, bytes], BinaryRequest]
    ) -> BinaryRequest | Refusal | object:
        self._pending = _Pending(head, build)
        return self.next_request()

    def _delete(self, head: Header, quiet: bool) -> BinaryRequest | None:
        if not head.key or head.extras or head.vlen:
            return None
        return BinDelete(head.opcode, head.opaque, head.key, head.cas, quiet)

    def _delta(self, head: Header, quiet: bool) -> BinaryRequest | None:
        if not head.key or len(head.extras) != _DELTA_EXTRAS.size or head.vlen:
            return None
        delta, initial, exptime = _DELTA_EXTRAS.unpack(head.extras)
        incr = QUIET.get(head.opcode, head.opcode) == Opcode.INCREMENT
        return BinDelta(
            head.opcode, head.opaque, head.key, incr, delta, initial, exptime, head.cas, quiet
        )

    def _flush(self, head: Header, quiet: bool) -> BinaryRequest | None:
        if head.key or head.vlen or len(head.extras) not in (0, 4):
            return None
        delay = _U32.unpack(head.extras)[0] if head.extras else 0
        return BinFlush(head.opcode, head.opaque, delay, quiet)

    def _bare(self, head: Header, quiet: bool) -> BinaryRequest | None:
        """noop, version, quit(q): no extras, key or body."""
        if head.key or head.extras or head.vlen:
            return None
        return BinNoop(head.opcode, head.opaque, quiet)

    def _stat(self, head: Header, quiet: bool) -> BinaryRequest | None:
        return None if head.extras else BinStat(head.opcode, head.opaque, head.key)

    # -- SASL (rule 6) -----------------------------------------------------------------------

    def _sasl_list(self, head: Header, quiet: bool) -> BinaryRequest | Refusal | None:
        if head.key or head.extras or head.vlen:
            return None
        if self._users is None:
            return _refuse(head, BinStatus.UNKNOWN_COMMAND)
        return BinSasl(head.opcode, head.opaque, BinStatus.SUCCESS, MECHANISMS, counted=False)

    def _sasl_auth(self, head: Header, quiet: bool) -> BinaryRequest | Refusal | object | None:
        if head.extras or not head.key:
            return None
        if self._users is None or len(head.key) > MAX_SASL_MECH_LEN:
            self._swallow = head.vlen
            status = BinStatus.UNKNOWN_COMMAND if self._users is None else BinStatus.EINVAL
            return _refuse(head, status, skip=head.vlen)
        if not item_size_ok(len(head.key), 0, head.vlen, self._item_size_max):
            self._swallow = head.vlen
            return _refuse(head, BinStatus.ENOMEM, skip=head.vlen)
        return self._await_value(head, self._sasl_judge)

    def _sasl_judge(self, head: Header, data: bytes) -> BinaryRequest:
        """The outcome of an auth or step whose data has arrived."""
        self._authenticated = False
        if head.opcode == Opcode.SASL_AUTH:
            if head.key != MECHANISMS:
                self._sasl = _SASL_NONE
                return BinSasl(head.opcode, head.opaque, BinStatus.AUTH_ERROR)
            if not data:
                self._sasl = _SASL_CONTINUE
                return BinSasl(head.opcode, head.opaque, BinStatus.AUTH_CONTINUE, counted=False)
        elif self._sasl != _SASL_CONTINUE:  # a step with no exchange awaiting one
            return BinSasl(head.opcode, head.opaque, BinStatus.AUTH_ERROR)
        ok = self._check_plain(data)
        self._sasl = _SASL_DONE if ok else _SASL_NONE
        self._authenticated = ok
        if ok:
            return BinSasl(head.opcode, head.opaque, BinStatus.SUCCESS, AUTHENTICATED)
        return BinSasl(head.opcode, head.opaque, BinStatus.AUTH_ERROR)

    def _check_plain(self, data: bytes) -> bool:
        """RFC 4616 PLAIN: ``[authzid] NUL authcid NUL passwd``; an authzid must be the
        user itself (Cyrus SASL's default policy, which memcached -S uses)."""
        parts = data.split(b"\0")
        if len(parts) != 3 or self._users is None:
            return False
        authzid, user, password = parts
        expected = self._users.get(user)
        if expected is None or (authzid and authzid != user):
            return False
        return hmac.compare_digest(expected, password)

    # -- the loop ----------------------------------------------------------------------------

    def process(self, execute: Execute, limit: int) -> Batch:
        """Execute every complete request in the buffer and collect the replies to write
        (see ``MemcacheConnection.process``: the same contract)."""
        out: list[bytes] = []
        size = flushed = failures = yields = 0
        handled = self._handled
        flushed_at = self._flushed_at
        first = self._first
        every = self._every
        encode = compose.encode
        while True:
            request = self.next_request()
            if request is NEED_DATA:
                yields += final_write_yield(handled, flushed_at, every)
                self._handled = self._flushed_at = 0
                break
            if type(request) is Refusal:
                refusal: Refusal = request
                failures += 1
                if refusal is _CLOSE:
                    del out[flushed:]
                    return Batch(b"".join(out), True, False, failures, yields)
                out.append(refusal.reply)
                size += len(refusal.reply)
                if refusal.close:
                    return Batch(b"".join(out), True, False, failures, yields)
                flush = refusal.flush
            else:
                response = execute(request)  # type: ignore[arg-type]
                opcode = request.opcode  # type: ignore[attr-defined]
                if type(response) is ErrorReply:
                    # A storage failure (the executor's SERVER_ERROR): memcached's binary
                    # out_of_memory answers ENOMEM, "Out of memory".
                    response = BinaryReply(opcode, request.opaque, BinStatus.ENOMEM)  # type: ignore[attr-defined]
                reply = encode(response)
                out.append(reply)
                size += len(reply)
                if opcode in (Opcode.QUIT, Opcode.QUITQ):
                    return Batch(b"".join(out), True, False, failures, yields)
                flush = opcode == Opcode.NOOP or _flushes(response, self._swallow)
            handled += 1
            if handled >= first and (handled - first) % every == 0:
                flushed = len(out)
                flushed_at = handled
                yields += 1
            elif flush:
                flushed = len(out)
                flushed_at = handled
            if size >= limit:
                self._handled = handled
                self._flushed_at = flushed_at
                return Batch(b"".join(out), False, True, failures, yields)
        return Batch(b"".join(out), False, False, failures, yields)


def _flushes(response: Response, swallowing: int) -> bool:
    """Whether memcached answered with ``write_bin_error`` and no body to skip, which goes
    to ``conn_mwrite``: a flush point. A getk miss (it echoes the key) and a quiet miss are
    not errors there."""
    if type(response) is not BinaryReply:
        return False
    reply: BinaryReply = response
    return bool(reply.status) and not reply.key and not reply.quiet and not swallowing


_Parser = Callable[[BinaryConnection, Header, bool], "BinaryRequest | Refusal | object | None"]
_PARSERS: Final[dict[int, _Parser]] = {
    Opcode.GET: BinaryConnection._get,
    Opcode.GETK: BinaryConnection._get,
    Opcode.GAT: BinaryConnection._get,
    Opcode.GATK: BinaryConnection._get,
    Opcode.TOUCH: BinaryConnection._get,
    Opcode.SET: BinaryConnection._store,
    Opcode.ADD: BinaryConnection._store,
    Opcode.REPLACE: BinaryConnection._store,
    Opcode.APPEND: BinaryConnection._store,
    Opcode.PREPEND: BinaryConnection._store,
    Opcode.DELETE: BinaryConnection._delete,
    Opcode.INCREMENT: BinaryConnection._delta,
    Opcode.DECREMENT: BinaryConnection._delta,
    Opcode.FLUSH: BinaryConnection._flush,
    Opcode.NOOP: BinaryConnection._bare,
    Opcode.VERSION: BinaryConnection._bare,
    Opcode.QUIT: BinaryConnection._bare,
    Opcode.STAT: BinaryConnection._stat,
    Opcode.SASL_LIST_MECHS: BinaryConnection._sasl_list,
    Opcode.SASL_AUTH: BinaryConnection._sasl_auth,
    Opcode.SASL_STEP: BinaryConnection._sasl_auth,
}
