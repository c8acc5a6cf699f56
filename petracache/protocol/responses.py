"""Results of executing a command, as the protocol layer understands them.

The commands build these from storage results; ``compose.encode`` turns them into wire
bytes, and is the only place reply formats are spelled out. Simple one-line replies are
members of ``Status`` whose value is the exact line; meta replies are ``MetaReply`` (a code,
the return flags, an optional value). The reply's type and code are also what ``/metrics``
labels a request's result by.

``Values``, ``Number`` and ``MetaReply`` spell out their ``__init__`` for the compiled build's
sake, as the request classes do (``requests`` says why).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from mypy_extensions import mypyc_attr

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
    # cache_memlimit's refusals (memcached proto_text.c process_memlimit_command)
    MEMLIMIT_TOO_SMALL = b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"
    MEMLIMIT_NOT_BYTES = b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"
    # lru_crawler's (memcached proto_text.c process_lru_crawler_command)
    BADCLASS = b"BADCLASS invalid class id\r\n"


class MetaCode(enum.Enum):
    """A meta reply's status code (memcached protocol.txt, "Meta Commands")."""

    HD = b"HD"  # success, no value
    VA = b"VA"  # success with a value
    EN = b"EN"  # mg miss
    NF = b"NF"  # not found (md, ma, ms in CAS mode)
    NS = b"NS"  # not stored
    EX = b"EX"  # CAS mismatch
    MN = b"MN"  # mn: end of a pipeline


@mypyc_attr(acyclic=True, free_list_len=1)  # one per request: protocol.requests says why
@dataclass(slots=True)
class MetaReply:
    """A meta reply: ``<code> <flags>`` then, for ``VA``, the value block.

    ``flags`` are the return flags in request order, each a token without its separating
    space (``b"c42"``, ``b"Oabc"``, ``b"k<key>"``, ``b"b"``). ``quiet``: ``q`` suppressed the
    reply (nothing is sent), but the result still counts as what it was.
    """

    code: MetaCode
    flags: list[bytes]
    value: bytes | None = None
    quiet: bool = False

    def __init__(
        self,
        code: MetaCode,
        flags: list[bytes],
        value: bytes | None = None,
        quiet: bool = False,
    ) -> None:
        self.code = code
        self.flags = flags
        self.value = value
        self.quiet = quiet


@dataclass(slots=True)
class MetaDebugReply:
    """``me``: one line of an item's internals (memcached 1.6.18's format)."""

    key: bytes
    exp: int
    last_access: int
    cas: int
    fetched: bool
    slab_class: int
    size: int


@dataclass(slots=True)
class PrefixDump:
    """``stats detail dump``: ``(prefix, gets, hits, sets, deletes)`` rows then ``END``."""

    rows: list[tuple[bytes, int, int, int, int]]


# One ``VALUE`` block of a get reply: (key, client flags, CAS unique, data). A plain tuple,
# not a NamedTuple: a tuple display is built natively, a NamedTuple's ``__new__`` is a
# Python-level call, and one is built per hit.
Hit: TypeAlias = tuple[bytes, int, int, bytes]


@mypyc_attr(acyclic=True, free_list_len=1)  # one per get: protocol.requests says why
@dataclass(slots=True)
class Values:
    """A retrieval reply: the hits in request order, then ``END``."""

    hits: list[Hit]
    with_cas: bool

    def __init__(self, hits: list[Hit], with_cas: bool) -> None:
        self.hits = hits
        self.with_cas = with_cas


@mypyc_attr(acyclic=True, free_list_len=1)  # one per request: protocol.requests says why
@dataclass(slots=True)
class Number:
    """The new value after incr/decr."""

    value: int

    def __init__(self, value: int) -> None:
        self.value = value


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


@dataclass(slots=True)
class BinaryReply:
    """One binary-protocol reply packet (``binary_compose.encode_reply`` spells it out).

    ``status`` is a ``BinStatus`` value; an error reply without a ``key`` carries the
    status's message as its body (memcached's ``write_bin_error``). ``quiet``: a quiet
    command's success, not sent. ``result`` is what ``/metrics`` counts it as (hit, miss,
    stored, not_stored, exists, not_found, ok, error), decided by the command.
    """

    opcode: int
    opaque: int
    status: int = 0
    cas: int = 0
    extras: bytes = b""
    key: bytes = b""
    value: bytes = b""
    quiet: bool = False
    result: str = "ok"


@dataclass(slots=True)
class BinaryStats:
    """A binary ``stat`` reply: one packet per ``(name, value)``, then an empty one unless
    ``terminated`` is False (memcached's ``stat sizes_enable``/``sizes_disable``)."""

    opcode: int
    opaque: int
    stats: list[tuple[bytes, bytes]]
    terminated: bool = True


Response: TypeAlias = (
    Status
    | Values
    | Number
    | ErrorReply
    | StatsReply
    | VersionReply
    | MetaReply
    | MetaDebugReply
    | PrefixDump
    | LeaseMiss
    | MetagetInfo
    | BinaryReply
    | BinaryStats
    | Streamed
)
