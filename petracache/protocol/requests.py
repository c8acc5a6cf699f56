"""Command objects: what the parser produces and the executor consumes.

One slotted dataclass per command shape. ``Request`` is the closed union of them so the
executor can ``match`` exhaustively. Keys are raw ``bytes`` (memcached keys are octets),
exptimes are the client's raw values (the storage layer applies memcached's TTL rules), and
``noreply`` is carried on the request so the connection can drop the reply.

Requests are values: nothing changes one after the parser built it. They are not
``frozen=True`` all the same, because a frozen dataclass's ``__init__`` sets every field
through ``object.__setattr__``, a cost paid by every request (the same holds for
``meta_requests``, ``binary_requests`` and ``StoreHeader``; figures in docs/benchmarks.md,
"The per-request Python path").

Hand-written ``__init__``s, an accepted repetition: the classes that carry the traffic
(``Get``, ``Store``, ``Delete``, ``Arithmetic``; the replies ``Values``, ``Number``,
``MetaReply``; ``text.StoreHeader``) spell out an ``__init__`` that repeats their field list,
because the one ``dataclass`` generates is an interpreted function even in the compiled build
(mypyc compiles only what is in the source), and these are built once or more per request.
The dataclass still provides ``__eq__`` and ``__repr__``; a field added to one of them goes
into its ``__init__`` too. ``Get``, ``Store``, ``Delete``, ``Arithmetic``, ``Touch``, the
replies ``Values``, ``Number`` and ``MetaReply``, and ``StoreHeader`` are built and dropped
once per request: compiled, they are ``acyclic`` (never tracked by the garbage
collector: they hold no object that could refer back to them) and keep their last freed
instance for the next (``free_list_len=1``), saving an allocation and a collector entry
per request. Duplicate-code reports list these on purpose; the other request
classes keep the generated ``__init__``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from mypy_extensions import mypyc_attr

from petracache.protocol.admin import Admin
from petracache.protocol.binary_requests import BinaryRequest
from petracache.protocol.crawler import LruCrawler
from petracache.protocol.meta_requests import MetaRequest
from petracache.rules.verbs import StoreMode


@mypyc_attr(acyclic=True, free_list_len=1)  # one per request: see the module docstring
@dataclass(slots=True)
class Get:
    """get/gets/gat/gats: ``exptime`` is None for plain get, the new TTL for gat."""

    keys: list[bytes]
    return_cas: bool
    exptime: int | None = None
    noreply: bool = False

    def __init__(
        self,
        keys: list[bytes],
        return_cas: bool,
        exptime: int | None = None,
        noreply: bool = False,
    ) -> None:
        self.keys = keys
        self.return_cas = return_cas
        self.exptime = exptime
        self.noreply = noreply


@mypyc_attr(acyclic=True, free_list_len=1)  # one per request: see the module docstring
@dataclass(slots=True)
class Store:
    """set/add/replace/append/prepend/cas with its data block (without the ``\\r\\n``)."""

    mode: StoreMode
    key: bytes
    flags: int
    exptime: int
    data: bytes
    cas_unique: int = 0
    noreply: bool = False

    def __init__(
        self,
        mode: StoreMode,
        key: bytes,
        flags: int,
        exptime: int,
        data: bytes,
        cas_unique: int = 0,
        noreply: bool = False,
    ) -> None:
        self.mode = mode
        self.key = key
        self.flags = flags
        self.exptime = exptime
        self.data = data
        self.cas_unique = cas_unique
        self.noreply = noreply


@dataclass(slots=True)
class TooLarge:
    """A storage command whose value exceeds the item size limit; its data is swallowed."""

    mode: StoreMode
    key: bytes
    swallow: int
    noreply: bool = False


@mypyc_attr(acyclic=True, free_list_len=1)  # one per request: see the module docstring
@dataclass(slots=True)
class Delete:
    key: bytes
    noreply: bool = False

    def __init__(self, key: bytes, noreply: bool = False) -> None:
        self.key = key
        self.noreply = noreply


@mypyc_attr(acyclic=True, free_list_len=1)  # one per request: see the module docstring
@dataclass(slots=True)
class Arithmetic:
    """incr (``incr=True``) or decr by an unsigned 64-bit delta."""

    key: bytes
    delta: int
    incr: bool
    noreply: bool = False

    def __init__(self, key: bytes, delta: int, incr: bool, noreply: bool = False) -> None:
        self.key = key
        self.delta = delta
        self.incr = incr
        self.noreply = noreply


@mypyc_attr(acyclic=True, free_list_len=1)  # one per request: see the module docstring
@dataclass(slots=True)
class Touch:
    key: bytes
    exptime: int
    noreply: bool = False


@dataclass(slots=True)
class FlushAll:
    """flush_all; ``delay`` <= 0 means now, None that it was not a number."""

    delay: int | None = 0
    noreply: bool = False


@dataclass(slots=True)
class Version:
    noreply: bool = False


@dataclass(slots=True)
class Verbosity:
    level: int
    noreply: bool = False


@dataclass(slots=True)
class Stats:
    """stats [group]; ``args`` are the tokens after ``stats``."""

    args: list[bytes]
    noreply: bool = False


@dataclass(slots=True)
class CacheMemlimit:
    megabytes: int
    noreply: bool = False


@dataclass(slots=True)
class LeaseGet:
    """mcrouter's ``lease-get <key>``: a get that hands out a fill lease on a miss."""

    key: bytes
    noreply: bool = False


@dataclass(slots=True)
class LeaseSet:
    """mcrouter's ``lease-set <key> <token> <flags> <exptime> <bytes>`` with its data."""

    key: bytes
    token: int
    flags: int
    exptime: int
    data: bytes
    noreply: bool = False


@dataclass(slots=True)
class McrouterMetaget:
    """mcrouter's ``metaget <key>`` (not the meta protocol's ``mg``): item age and TTL."""

    key: bytes
    noreply: bool = False


@dataclass(slots=True)
class Quit:
    """Flush the replies queued so far, then close the connection."""

    noreply: bool = True


Request: TypeAlias = (
    Get
    | Store
    | TooLarge
    | Delete
    | Arithmetic
    | Touch
    | FlushAll
    | Version
    | Verbosity
    | Stats
    | CacheMemlimit
    | LeaseGet
    | LeaseSet
    | McrouterMetaget
    | Quit
    | MetaRequest
    | BinaryRequest
    | LruCrawler
    | Admin
)
