"""Request objects of the meta protocol (mg, ms, md, ma, mn, me), produced by ``protocol.meta``.

Every meta request subclasses ``MetaRequest`` so the executor hands them all to
``petracache.commands.meta`` with one ``case``. The four that address an item (mg, ms, md,
ma) start with ``MetaKeyed``'s fields: the key, already base64-decoded when the request
carried ``b`` (``binary`` remembers it), and ``tokens``, the raw flag tokens in request
order: the reply echoes its return flags in that order, so the executor walks them.

``noreply`` is always False: quiet mode (``q``) suppresses only some replies (EN on mg, HD on
ms/md/ma), which the executor decides, and errors are never suppressed.
TTL fields hold the client's raw exptime (storage applies memcached's TTL rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mypy_extensions import mypyc_attr


@mypyc_attr(acyclic=True)
class MetaRequest:
    """Base of the meta protocol's requests. Compiled, every one is ``acyclic`` and the
    four item commands keep a freed instance for the next (``protocol.requests`` says
    why)."""

    __slots__ = ()
    noreply: ClassVar[bool] = False


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class MetaKeyed(MetaRequest):
    """The fields every item command (mg, ms, md, ma) starts with: its key, whether the key
    came base64-encoded (``b``: the reply encodes it again), and its flag tokens."""

    key: bytes
    binary: bool
    tokens: tuple[bytes, ...]


@mypyc_attr(acyclic=True, free_list_len=1)
@dataclass(slots=True)
class MetaGet(MetaKeyed):
    """mg: ``ttl`` is T (touch), ``vivify`` N, ``recache`` R, ``new_cas`` E."""

    value: bool = False
    quiet: bool = False
    no_update: bool = False
    ttl: int | None = None
    vivify: int | None = None
    recache: int | None = None
    new_cas: int | None = None


@mypyc_attr(acyclic=True, free_list_len=1)
@dataclass(slots=True)
class MetaSet(MetaKeyed):
    """ms with its data block. ``mode`` is the M letter (S set, E add, A append, P prepend,
    R replace); ``vivify`` (N) lets append/prepend create a missing item with that TTL."""

    data: bytes
    client_flags: int = 0
    ttl: int = 0
    mode: str = "S"
    compare_cas: int | None = None
    new_cas: int | None = None
    invalidate: bool = False
    quiet: bool = False
    vivify: int | None = None


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class MetaSetHeader(MetaRequest):
    """An ms command line waiting for its ``nbytes`` data block (see ``connection``)."""

    fields: MetaSet  # every field but the data (data is b"")
    nbytes: int

    def complete(self, data: bytes) -> MetaSet:
        """The ms request once its data block has arrived."""
        f = self.fields
        return MetaSet(
            f.key,
            f.binary,
            f.tokens,
            data,
            f.client_flags,
            f.ttl,
            f.mode,
            f.compare_cas,
            f.new_cas,
            f.invalidate,
            f.quiet,
            f.vivify,
        )


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class MetaRejected(MetaRequest):
    """An ms whose flags were refused after its data length was known: memcached answers
    ``reply`` and swallows the ``swallow`` bytes of data that follow the line."""

    reply: bytes
    swallow: int


@mypyc_attr(acyclic=True, free_list_len=1)
@dataclass(slots=True)
class MetaDelete(MetaKeyed):
    """md: ``invalidate`` (I) marks stale instead of removing, ``drop_value`` (x) keeps an
    empty item with ``client_flags``/``ttl``."""

    compare_cas: int | None = None
    new_cas: int | None = None
    invalidate: bool = False
    ttl: int | None = None
    client_flags: int = 0
    drop_value: bool = False
    quiet: bool = False


@mypyc_attr(acyclic=True, free_list_len=1)
@dataclass(slots=True)
class MetaArithmetic(MetaKeyed):
    """ma: incr (or decr) by ``delta``; ``vivify`` (N) creates a missing counter at ``initial``."""

    incr: bool = True
    delta: int = 1
    initial: int = 0
    vivify: int | None = None
    ttl: int | None = None
    compare_cas: int | None = None
    new_cas: int | None = None
    quiet: bool = False
    value: bool = False


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class MetaNoop(MetaRequest):
    """mn: answers ``MN`` (marks the end of a pipeline of quiet commands)."""


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class MetaDebug(MetaRequest):
    """me: one line of an item's internals."""

    key: bytes
