"""Request objects of memcached's binary protocol, produced by ``protocol.binary``.

Every binary request subclasses ``BinaryRequest`` so the executor hands them to
``petracache.commands.binary``. Each carries what its reply must echo: the wire ``opcode``
(a quiet form answers with its own opcode) and the client's ``opaque``. ``quiet`` is the
quiet form (``getq``, ``setq``...): which replies it suppresses is the command's business
(a getq hit is still sent, every error is), so ``noreply`` stays False and the reply itself
says whether it is sent (``BinaryReply.quiet``). Exptimes are the client's raw values, as for
the text protocol; the storage layer applies memcached's TTL rules.

Opcodes and status codes are memcached 1.6.18's ``protocol_binary.h``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from petracache.rules.verbs import StoreMode


class Opcode(enum.IntEnum):
    """The opcodes memcached 1.6.18 answers (others get ``Unknown command``)."""

    GET = 0x00
    SET = 0x01
    ADD = 0x02
    REPLACE = 0x03
    DELETE = 0x04
    INCREMENT = 0x05
    DECREMENT = 0x06
    QUIT = 0x07
    FLUSH = 0x08
    GETQ = 0x09
    NOOP = 0x0A
    VERSION = 0x0B
    GETK = 0x0C
    GETKQ = 0x0D
    APPEND = 0x0E
    PREPEND = 0x0F
    STAT = 0x10
    SETQ = 0x11
    ADDQ = 0x12
    REPLACEQ = 0x13
    DELETEQ = 0x14
    INCREMENTQ = 0x15
    DECREMENTQ = 0x16
    QUITQ = 0x17
    FLUSHQ = 0x18
    APPENDQ = 0x19
    PREPENDQ = 0x1A
    TOUCH = 0x1C
    GAT = 0x1D
    GATQ = 0x1E
    SASL_LIST_MECHS = 0x20
    SASL_AUTH = 0x21
    SASL_STEP = 0x22
    GATK = 0x23
    GATKQ = 0x24


# The quiet opcodes and the command each is the quiet form of (memcached's dispatch switch).
QUIET: dict[int, int] = {
    Opcode.GETQ: Opcode.GET,
    Opcode.GETKQ: Opcode.GETK,
    Opcode.SETQ: Opcode.SET,
    Opcode.ADDQ: Opcode.ADD,
    Opcode.REPLACEQ: Opcode.REPLACE,
    Opcode.DELETEQ: Opcode.DELETE,
    Opcode.INCREMENTQ: Opcode.INCREMENT,
    Opcode.DECREMENTQ: Opcode.DECREMENT,
    Opcode.QUITQ: Opcode.QUIT,
    Opcode.FLUSHQ: Opcode.FLUSH,
    Opcode.APPENDQ: Opcode.APPEND,
    Opcode.PREPENDQ: Opcode.PREPEND,
    Opcode.GATQ: Opcode.GAT,
    Opcode.GATKQ: Opcode.GATK,
}


_NAMES: dict[int, str] = {
    Opcode.DELETE: "delete",
    Opcode.INCREMENT: "incr",
    Opcode.DECREMENT: "decr",
    Opcode.QUIT: "quit",
    Opcode.FLUSH: "flush_all",
    Opcode.NOOP: "noop",
    Opcode.VERSION: "version",
    Opcode.STAT: "stats",
    Opcode.SASL_LIST_MECHS: "sasl_list_mechs",
    Opcode.SASL_AUTH: "sasl_auth",
    Opcode.SASL_STEP: "sasl_step",
}


class BinStatus(enum.IntEnum):
    """Reply status codes (``protocol_binary_response_status``)."""

    SUCCESS = 0x00
    KEY_ENOENT = 0x01
    KEY_EEXISTS = 0x02
    E2BIG = 0x03
    EINVAL = 0x04
    NOT_STORED = 0x05
    DELTA_BADVAL = 0x06
    AUTH_ERROR = 0x20
    AUTH_CONTINUE = 0x21
    UNKNOWN_COMMAND = 0x81
    ENOMEM = 0x82


@dataclass(slots=True)
class BinaryRequest:
    """Base of the binary protocol's requests: ``opcode`` and ``opaque`` come first in every
    one of them (a dataclass, so that compiled with mypyc its subclasses see them as fields
    without defaults), then each request's own fields, ``quiet`` among them."""

    opcode: int
    opaque: int

    @property
    def noreply(self) -> bool:
        """Never: a quiet form decides reply by reply (``BinaryReply.quiet``). A property,
        not a ClassVar, which mypyc's dataclasses would take for a field with a default."""
        return False

    @property
    def command(self) -> str:
        """The command's name in ``/metrics``: the text protocol's name for the same
        command (get, gat, touch, set, cas, incr, flush_all...), so both are counted alike."""
        return _NAMES.get(QUIET.get(self.opcode, self.opcode), "unknown")


@dataclass(slots=True)
class BinGet(BinaryRequest):
    """get/getk/gat/gatk and their quiet forms, and touch.

    ``exptime`` is None for a get and the new TTL for gat and touch; ``with_key`` echoes the
    key (getk, gatk); ``with_value`` is False only for touch, whose hit carries the flags.
    """

    key: bytes
    exptime: int | None = None
    with_key: bool = False
    with_value: bool = True
    quiet: bool = False

    @property
    def command(self) -> str:
        if self.exptime is None:
            return "get"
        return "gat" if self.with_value else "touch"


@dataclass(slots=True)
class BinStore(BinaryRequest):
    """set/add/replace/append/prepend(q); a non-zero ``cas`` makes set/add/replace a cas."""

    mode: StoreMode
    key: bytes
    flags: int
    exptime: int
    data: bytes
    cas: int = 0
    quiet: bool = False

    @property
    def command(self) -> str:
        if self.cas and self.mode in (StoreMode.SET, StoreMode.ADD, StoreMode.REPLACE):
            return "cas"
        return self.mode.value


@dataclass(slots=True)
class BinTooLarge(BinaryRequest):
    """A store whose value exceeds the item size limit: ``Too large.``, value swallowed."""

    mode: StoreMode
    key: bytes

    @property
    def command(self) -> str:
        return self.mode.value


@dataclass(slots=True)
class BinDelete(BinaryRequest):
    """delete(q); a non-zero ``cas`` must match the item's."""

    key: bytes
    cas: int = 0
    quiet: bool = False


@dataclass(slots=True)
class BinDelta(BinaryRequest):
    """increment/decrement(q): a miss creates ``initial`` unless ``exptime`` is 0xffffffff."""

    key: bytes
    incr: bool
    delta: int
    initial: int
    exptime: int
    cas: int = 0
    quiet: bool = False


@dataclass(slots=True)
class BinFlush(BinaryRequest):
    """flush(q) with an optional delay (the 4-byte extras)."""

    delay: int = 0
    quiet: bool = False


@dataclass(slots=True)
class BinNoop(BinaryRequest):
    """noop (a flush point), version and quit: a reply without a body, or the version."""

    quiet: bool = False


@dataclass(slots=True)
class BinStat(BinaryRequest):
    """stat: ``group`` is the key (empty for the general statistics)."""

    group: bytes


@dataclass(slots=True)
class BinSasl(BinaryRequest):
    """SASL list mechanisms, auth or step, already judged by the connection.

    The connection holds the credentials and the authentication state (sans-I/O, like the
    text protocol's ``AuthGate``); the command layer counts ``auth_cmds``/``auth_errors``
    and builds the reply from ``status``.
    """

    status: BinStatus
    body: bytes = b""
    counted: bool = True  # an auth attempt (memcached's auth_cmds); list/continue are not


BINARY_REQUESTS: Final = (
    BinGet,
    BinStore,
    BinTooLarge,
    BinDelete,
    BinDelta,
    BinFlush,
    BinNoop,
    BinStat,
    BinSasl,
)
