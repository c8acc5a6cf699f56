"""Binary-protocol frames for tests: build requests, split replies, normalise CAS.

Independent of ``petracache.protocol.binary`` on purpose (written from memcached's
``protocol_binary.h``), so a parser bug cannot hide behind the same code on both sides.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

HEADER = struct.Struct(">BBHBBHIIQ")

GET, SET, ADD, REPLACE, DELETE, INCR, DECR, QUIT, FLUSH, GETQ, NOOP, VERSION = range(12)
GETK, GETKQ, APPEND, PREPEND, STAT, SETQ, ADDQ, REPLACEQ, DELETEQ, INCRQ, DECRQ = range(12, 23)
QUITQ, FLUSHQ, APPENDQ, PREPENDQ, VERBOSITY, TOUCH, GAT, GATQ = range(23, 31)
SASL_LIST, SASL_AUTH, SASL_STEP, GATK, GATKQ = range(0x20, 0x25)
FENCE_OPAQUE = 0xFEEDF00D


def req(
    opcode: int,
    key: bytes = b"",
    extras: bytes = b"",
    value: bytes = b"",
    *,
    opaque: int = 0,
    cas: int = 0,
    bodylen: int | None = None,
    magic: int = 0x80,
) -> bytes:
    """One request frame; ``bodylen`` overrides the computed body length."""
    body = len(extras) + len(key) + len(value) if bodylen is None else bodylen
    head = HEADER.pack(magic, opcode, len(key), len(extras), 0, 0, body, opaque, cas)
    return head + extras + key + value


def store(
    opcode: int,
    key: bytes,
    value: bytes,
    flags: int = 0,
    exptime: int = 0,
    *,
    opaque: int = 0,
    cas: int = 0,
) -> bytes:
    """set/add/replace(q) (extras: flags, expiration)."""
    return req(opcode, key, struct.pack(">II", flags, exptime), value, opaque=opaque, cas=cas)


def delta(
    opcode: int,
    key: bytes,
    amount: int,
    initial: int = 0,
    exptime: int = 0,
    *,
    opaque: int = 0,
    cas: int = 0,
) -> bytes:
    """increment/decrement(q) (extras: delta, initial, expiration)."""
    extras = struct.pack(">QQI", amount, initial, exptime)
    return req(opcode, key, extras, opaque=opaque, cas=cas)


def touch(opcode: int, key: bytes, exptime: int, *, opaque: int = 0) -> bytes:
    """touch/gat/gatk(q) (extras: expiration)."""
    return req(opcode, key, struct.pack(">I", exptime), opaque=opaque)


FENCE = req(NOOP, opaque=FENCE_OPAQUE)


class Frame(NamedTuple):
    opcode: int
    status: int
    extras: bytes
    key: bytes
    value: bytes
    opaque: int
    cas: int
    magic: int = 0x81


def split(raw: bytes) -> tuple[list[Frame], bytes]:
    """The complete reply frames in ``raw`` and the bytes after them."""
    frames: list[Frame] = []
    while len(raw) >= 24:
        magic, op, keylen, extlen, _dt, status, body, opaque, cas = HEADER.unpack_from(raw)
        if len(raw) < 24 + body:
            break
        payload = raw[24 : 24 + body]
        extras, key = payload[:extlen], payload[extlen : extlen + keylen]
        frames.append(
            Frame(op, status, extras, key, payload[extlen + keylen :], opaque, cas, magic)
        )
        raw = raw[24 + body :]
    return frames, raw


def is_fence(frame: Frame) -> bool:
    return frame.opcode == NOOP and frame.opaque == FENCE_OPAQUE


class BinClient:
    """A raw binary connection: sends frames, reads replies up to a fence noop or EOF, and
    numbers CAS uniques in order of first appearance (``normalised``)."""

    def __init__(self, port: int | str, timeout: float = 10.0) -> None:
        if isinstance(port, str):  # a unix socket's path
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(port)
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ordinals: dict[int, int] = {}
        self.last_cas = 0
        self.closed = False

    def send(self, data: bytes, cuts: list[int] | None = None) -> None:
        start = 0
        for point in [*(cuts or []), len(data)]:
            if point > start:
                self.sock.sendall(data[start:point])
                start = point

    def exchange(self, data: bytes, cuts: list[int] | None = None) -> list[Frame]:
        """Send ``data`` and a fence; every reply frame before the fence (or before EOF)."""
        self.send(data + FENCE, cuts)
        raw = b""
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                frames, _rest = split(raw)
                return frames
            raw += chunk
            frames, rest = split(raw)
            if frames and is_fence(frames[-1]) and not rest:
                return frames[:-1]

    def normalised(self, frames: list[Frame]) -> list[Frame]:
        """CAS uniques as ordinals, the version string as ``X``."""
        out = []
        for f in frames:
            if f.cas:
                self.last_cas = f.cas
            cas = self.ordinals.setdefault(f.cas, len(self.ordinals) + 1) if f.cas else 0
            value = b"X" if f.opcode == VERSION and f.status == 0 else f.value
            out.append(f._replace(cas=cas, value=value))
        return out

    def close(self) -> None:
        self.sock.close()
