"""Results of executing a command, as the protocol layer understands them.

The executor builds these from storage results; ``compose.encode`` turns them into wire
bytes. Simple one-line replies are members of ``Status`` whose value is the exact line.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

from petracache.protocol.crawler import Streamed


class Status(enum.Enum):
    """Fixed one-line replies, valued by their wire bytes."""

    STORED = b"STORED\r\n"
    NOT_STORED = b"NOT_STORED\r\n"
    EXISTS = b"EXISTS\r\n"
    NOT_FOUND = b"NOT_FOUND\r\n"
    DELETED = b"DELETED\r\n"
    TOUCHED = b"TOUCHED\r\n"
    OK = b"OK\r\n"
    END = b"END\r\n"
    RESET = b"RESET\r\n"
    ERROR = b"ERROR\r\n"
    NOTHING = b""


class Hit(NamedTuple):
    """One ``VALUE`` block of a get reply."""

    key: bytes
    flags: int
    cas: int
    data: bytes


@dataclass(slots=True)
class Values:
    """A retrieval reply: the hits in request order, then ``END``."""

    hits: list[Hit]
    with_cas: bool


@dataclass(slots=True)
class Number:
    """The new value after incr/decr."""

    value: int


@dataclass(slots=True)
class ErrorReply:
    """A ``CLIENT_ERROR``/``SERVER_ERROR`` line computed at execution time."""

    line: bytes


@dataclass(slots=True)
class StatsReply:
    """``STAT name value`` lines then ``END``."""

    stats: list[tuple[str, str]]


@dataclass(slots=True)
class VersionReply:
    text: str


@dataclass(slots=True)
class RawReply:
    """Already-encoded reply bytes (used by less common commands with bespoke texts)."""

    data: bytes


@dataclass(slots=True)
class LeaseMiss:
    """A lease-get miss: ``LVALUE <key> <token> <flags> <bytes>`` (token 1 = hot miss)."""

    key: bytes
    token: int


@dataclass(slots=True)
class MetagetInfo:
    """An mcrouter metaget hit: the item's age and absolute expiry (0 = never)."""

    key: bytes
    age: int
    exptime: int


Response: TypeAlias = (
    Status
    | Values
    | Number
    | ErrorReply
    | StatsReply
    | VersionReply
    | RawReply
    | LeaseMiss
    | MetagetInfo
    | Streamed
)
