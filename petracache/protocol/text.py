"""Classic text commands: one command line (without its line ending) -> a request.

Tokenizing is memcached's ``tokenize_command`` (``protocol.tokens``); the token counts below
are memcached's (``ntokens`` includes its terminal token), so the arity checks read exactly
like ``process_command_ascii``. A line is cut at its first NUL byte, as C's ``strlen`` does.

Strategy: ``parse_line`` handles what every command shares (NUL cut, tokenizing, the meta
prefix, the HTTP sniff; ``parse_tokens`` from the tokens on) and then makes one dict lookup
in ``_PARSERS``; each reader takes ``(tokens, ntokens, item_size_max)`` and re-reads its
variant (gets vs gats, the store verb) from ``tokens[0]``, so adding a command is one entry
and the dispatch costs the same for every command.

A storage command returns a ``StoreHeader``; the connection reads its data block and calls
``StoreHeader.complete``, as it calls ``MetaSetHeader.complete`` for ``ms``.

Fast path: ``get <key>`` and ``set <key> <flags> <exptime> <bytes> [noreply]`` in their
plainest spelling (one space between tokens, no NUL, plain digits) are most of the traffic,
and ``parse_line`` recognises them from the one ``split`` of a line without NUL, before the
general reader. It takes a line only when its tokens already prove what the general reader
would return (the same object, built the same way); anything else, malformed or merely
unusual, goes to the general reader, which stays the one definition of the grammar. A line
without NUL or empty token goes on with that same split, which is what ``tokenize`` returns
for it. ``tests/protocol/test_fast_path`` checks ``parse_line`` against ``parse_general``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from mypy_extensions import mypyc_attr

from petracache.protocol import errors
from petracache.protocol.admin import parse_admin
from petracache.protocol.crawler import LruCrawler
from petracache.protocol.meta import parse_meta
from petracache.protocol.requests import (
    Arithmetic,
    CacheMemlimit,
    Delete,
    FlushAll,
    Get,
    LeaseGet,
    LeaseSet,
    McrouterMetaget,
    Quit,
    Request,
    Stats,
    Store,
    TooLarge,
    Touch,
    Verbosity,
    Version,
)
from petracache.protocol.tokens import MAX_TOKENS, tokenize
from petracache.rules.numbers import strtol32, strtoul32, strtoull
from petracache.rules.sizes import KEY_MAX_LENGTH, MAX_DATA_LENGTH, item_size_ok
from petracache.rules.verbs import StoreMode


@mypyc_attr(acyclic=True, free_list_len=1)  # one per store: protocol.requests says why
@dataclass(slots=True)
class StoreHeader:
    """A parsed storage command line waiting for its ``nbytes`` data block (its ``__init__``
    is written out for the compiled build: ``protocol.requests`` says why)."""

    mode: StoreMode
    key: bytes
    flags: int
    exptime: int
    nbytes: int
    cas_unique: int
    noreply: bool
    lease_token: int | None = None  # set for mcrouter's lease-set

    def __init__(
        self,
        mode: StoreMode,
        key: bytes,
        flags: int,
        exptime: int,
        nbytes: int,
        cas_unique: int,
        noreply: bool,
        lease_token: int | None = None,
    ) -> None:
        self.mode = mode
        self.key = key
        self.flags = flags
        self.exptime = exptime
        self.nbytes = nbytes
        self.cas_unique = cas_unique
        self.noreply = noreply
        self.lease_token = lease_token

    def complete(self, data: bytes) -> Store | LeaseSet:
        """The request once its data block (without ``\\r\\n``) has arrived.

        The header decides which request it becomes, so the connection completes every
        header kind (classic, lease-set, ms) with the same call.
        """
        if self.lease_token is not None:
            return LeaseSet(self.key, self.lease_token, self.flags, self.exptime, data)
        return Store(
            self.mode, self.key, self.flags, self.exptime, data, self.cas_unique, self.noreply
        )


_STORE_MODES: Final = {
    b"set": StoreMode.SET,
    b"add": StoreMode.ADD,
    b"replace": StoreMode.REPLACE,
    b"append": StoreMode.APPEND,
    b"prepend": StoreMode.PREPEND,
    b"cas": StoreMode.CAS,
}
# command -> (return_cas, touch)
_GETS: Final = {
    b"get": (False, False),
    b"bget": (False, False),
    b"gets": (True, False),
    b"gat": (False, True),
    b"gats": (True, True),
}


def _want(ntokens: int, low: int, high: int) -> None:
    if ntokens < low or ntokens > high:
        raise errors.UnknownCommand()


def _noreply(tokens: list[bytes], ntokens: int) -> bool:
    """memcached's ``set_noreply_maybe``: the last real token is exactly ``noreply``."""
    return tokens[ntokens - 2] == b"noreply"


def _check_key(key: bytes, noreply: bool = False) -> bytes:
    if len(key) > KEY_MAX_LENGTH:
        raise errors.BadCommandLine(noreply=noreply)
    return key


def parse_line(line: bytes, item_size_max: int) -> Request | StoreHeader:
    """Parse one classic command line.

    Args:
        line: the command line without its line ending.
        item_size_max: memcached's ``-I``; a larger value becomes ``TooLarge``.

    Raises:
        ProtocolError: with memcached's reply for the malformed line.
        CloseConnection: memcached would drop the connection (an HTTP request line).
    """
    if 0 in line:  # cut at a NUL: rare, and never the fast path (``0 in`` is a memchr)
        return parse_general(line, item_size_max)
    # get <key>: one non-empty token without NUL or space is the whole key list. Sliced,
    # not split: the compiled build slices and compares bytes natively, while ``split``
    # is a method call with its argument parsing and a list.
    if line[:4] == b"get ":
        key = line[4:]
        if 0 < len(key) <= KEY_MAX_LENGTH and 32 not in key:
            return Get([key], False)
    tokens = line.split(b" ")
    count = len(tokens)
    if (count == 5 or (count == 6 and tokens[5] == b"noreply")) and tokens[0] == b"set":
        header = _plain_set(tokens, count == 6, item_size_max)
        if header is not None:
            return header
    if b"" in tokens:  # spaces to drop: let tokenize do it
        return parse_general(line, item_size_max)
    return parse_tokens(tokens, item_size_max)  # no NUL, no empty token: this is tokenize(line)


# Plain digits this short are below 2**31: safe_strtoul/safe_strtol read them as int() does,
# with no wrapping (rules.numbers).
_PLAIN_DIGITS: Final = 9


def _plain_set(tokens: list[bytes], noreply: bool, item_size_max: int) -> StoreHeader | None:
    """``set`` whose fields need none of ``_parse_store``'s checks to fail or differ: a key
    of at most 250 bytes, and flags, exptime and length of at most 9 plain digits (so no
    sign, no wrap, length <= MAX_DATA_LENGTH) of an item that fits. None: ask the general
    reader (which then answers the error or ``TooLarge``)."""
    key, flags, exptime, nbytes = tokens[1], tokens[2], tokens[3], tokens[4]
    if (
        0 < len(key) <= KEY_MAX_LENGTH
        and flags.isdigit()
        and exptime.isdigit()
        and nbytes.isdigit()
        and len(flags) <= _PLAIN_DIGITS
        and len(exptime) <= _PLAIN_DIGITS
        and len(nbytes) <= _PLAIN_DIGITS
    ):
        size = int(nbytes)
        client_flags = int(flags)
        if item_size_ok(len(key), client_flags, size, item_size_max):
            return StoreHeader(StoreMode.SET, key, client_flags, int(exptime), size, 0, noreply)
    return None


def parse_general(line: bytes, item_size_max: int) -> Request | StoreHeader:
    """``parse_line`` without its fast path: the general reader, for every line.

    ``parse_line`` returns what this returns (tests compare the two).
    """
    nul = line.find(b"\0")
    if nul >= 0:
        line = line[:nul]
    return parse_tokens(tokenize(line), item_size_max)


def parse_tokens(tokens: list[bytes], item_size_max: int) -> Request | StoreHeader:
    """Parse a command line's tokens (``tokenize``'s, after the NUL cut): one dict lookup."""
    if not tokens or len(tokens[0]) < 2:
        raise errors.UnknownCommand()
    cmd = tokens[0]
    ntokens = min(len(tokens), MAX_TOKENS - 1) + 1  # memcached's count, terminal token included
    if cmd[0] == 109 and len(cmd) == 2:  # memcached: first == 'm' && length == 2
        return parse_meta(tokens, ntokens, item_size_max)
    parser = _PARSERS.get(cmd)
    if parser is not None:
        return parser(tokens, ntokens, item_size_max)
    if tokens[ntokens - 2].startswith(b"HTTP/"):
        raise errors.CloseConnection("HTTP request on the memcached port")
    raise errors.UnknownCommand()


def _parse_get(tokens: list[bytes], ntokens: int, _item_size_max: int) -> Get:
    """get/bget/gets/gat/gats: a key over 250 bytes answers for the keys before it."""
    if ntokens < 3:
        raise errors.UnknownCommand()
    return_cas, touch = _GETS[tokens[0]]
    exptime = None
    keys = tokens[1:]
    if touch:
        exptime = strtol32(tokens[1])
        if exptime is None:
            raise errors.InvalidExptime()
        keys = tokens[2:]
    for i, key in enumerate(keys):
        if len(key) > KEY_MAX_LENGTH:
            raise errors.BadGetKey(Get(keys[:i], return_cas, exptime, True) if i else None)
    return Get(keys, return_cas, exptime)


def _parse_store(tokens: list[bytes], ntokens: int, item_size_max: int) -> StoreHeader | TooLarge:
    """set/add/replace/append/prepend/cas: the header of a data block."""
    mode = _STORE_MODES[tokens[0]]
    if mode is StoreMode.CAS:
        _want(ntokens, 7, 8)
    else:
        _want(ntokens, 6, 7)
    noreply = _noreply(tokens, ntokens)
    key = _check_key(tokens[1], noreply)
    flags = strtoul32(tokens[2])
    exptime = strtol32(tokens[3])
    nbytes = strtol32(tokens[4])
    if flags is None or exptime is None or nbytes is None:
        raise errors.BadCommandLine(noreply=noreply)
    cas_unique = 0
    if mode is StoreMode.CAS:
        parsed_cas = strtoull(tokens[5])
        if parsed_cas is None:
            raise errors.BadCommandLine(noreply=noreply)
        cas_unique = parsed_cas
    if nbytes < 0 or nbytes > MAX_DATA_LENGTH:
        raise errors.BadCommandLine(noreply=noreply)
    if not item_size_ok(len(key), flags, nbytes, item_size_max):
        return TooLarge(mode, key, nbytes + 2, noreply)
    return StoreHeader(mode, key, flags, exptime, nbytes, cas_unique, noreply)


def _parse_delete(tokens: list[bytes], ntokens: int, _item_size_max: int) -> Delete:
    """delete <key> [<hold time>] [noreply]."""
    _want(ntokens, 3, 5)
    noreply = False
    if ntokens > 3:
        # memcached accepts only the legacy hold time 0; mcrouter sends
        # `delete <key> <exptime>` whenever its client gave one, so any number is taken
        # (and ignored: the item goes at once). See README "Behind a router".
        # Plain digits only: memcached compares with "0" exactly, so "0\r" or "+0" must
        # still get its usage error (the differential test sends them).
        hold_is_number = tokens[2].isdigit()
        noreply = _noreply(tokens, ntokens)
        valid = (ntokens == 4 and (hold_is_number or noreply)) or (
            ntokens == 5 and hold_is_number and noreply
        )
        if not valid:
            raise errors.BadDeleteUsage(noreply=noreply)
    return Delete(_check_key(tokens[1], noreply), noreply)


def _parse_arithmetic(tokens: list[bytes], ntokens: int, _item_size_max: int) -> Arithmetic:
    """incr/decr <key> <delta> [noreply]."""
    key, delta, noreply = _key_and_number(tokens, ntokens, strtoull, errors.InvalidDelta)
    return Arithmetic(key, delta, tokens[0] == b"incr", noreply)


def _parse_touch(tokens: list[bytes], ntokens: int, _item_size_max: int) -> Touch:
    """touch <key> <exptime> [noreply]."""
    key, exptime, noreply = _key_and_number(tokens, ntokens, strtol32, errors.InvalidExptime)
    return Touch(key, exptime, noreply)


def _key_and_number(
    tokens: list[bytes],
    ntokens: int,
    parse: Callable[[bytes], int | None],
    error: type[errors.ProtocolError],
) -> tuple[bytes, int, bool]:
    """``<command> <key> <number> [noreply]``: the key, ``parse`` of the number, and noreply;
    ``error`` if it is not a number (memcached checks the key first)."""
    _want(ntokens, 4, 5)
    noreply = _noreply(tokens, ntokens)
    key = _check_key(tokens[1], noreply)
    value = parse(tokens[2])
    if value is None:
        raise error(noreply=noreply)
    return key, value, noreply


def _parse_flush_all(tokens: list[bytes], ntokens: int, _item_size_max: int) -> FlushAll:
    """flush_all [<delay>] [noreply]."""
    _want(ntokens, 2, 4)
    noreply = _noreply(tokens, ntokens)
    delay: int | None = 0
    if ntokens != (3 if noreply else 2):
        # None: not a number. memcached checks -F (flush_all disabled) before the argument,
        # so the command layer, which knows the setting, picks the error.
        delay = strtol32(tokens[1])
    return FlushAll(delay, noreply)


def _parse_verbosity(tokens: list[bytes], ntokens: int, _item_size_max: int) -> Verbosity:
    """verbosity <level> [noreply]."""
    level, noreply = _number_argument(tokens, ntokens, errors.BadCommandLine)
    return Verbosity(level, noreply)


def _parse_cache_memlimit(tokens: list[bytes], ntokens: int, _item_size_max: int) -> CacheMemlimit:
    """cache_memlimit <megabytes> [noreply]: memcached answers a bad number with ``ERROR``."""
    megabytes, noreply = _number_argument(tokens, ntokens, errors.UnknownCommand)
    return CacheMemlimit(megabytes, noreply)


def _number_argument(
    tokens: list[bytes], ntokens: int, error: type[errors.ProtocolError]
) -> tuple[int, bool]:
    """``<command> <unsigned> [noreply]``: the number and noreply; ``error`` if not a number."""
    _want(ntokens, 3, 4)
    noreply = _noreply(tokens, ntokens)
    value = strtoul32(tokens[1])
    if value is None:
        raise error(noreply=noreply)
    return value, noreply


def _parse_mcrouter_get(tokens: list[bytes], ntokens: int, _item_size_max: int) -> Request:
    """mcrouter's ``lease-get <key>`` and ``metaget <key>`` (its AsciiSerialized.cpp).

    mcrouter never sends ``noreply`` with them and sends one key per request; a malformed
    line gets ``CLIENT_ERROR`` (never ``ERROR``, which would mark the backend down).
    """
    if ntokens != 3:
        raise errors.BadCommandLine()
    key = _check_key(tokens[1])
    return LeaseGet(key) if tokens[0] == b"lease-get" else McrouterMetaget(key)


def _parse_lease_set(
    tokens: list[bytes], ntokens: int, item_size_max: int
) -> StoreHeader | TooLarge:
    """mcrouter's ``lease-set <key> <token> <flags> <exptime> <bytes>``: errors as lease-get."""
    if ntokens != 7:
        raise errors.BadCommandLine()
    key = _check_key(tokens[1])
    token = strtoull(tokens[2])
    flags = strtoul32(tokens[3])
    exptime = strtol32(tokens[4])
    nbytes = strtol32(tokens[5])
    if token is None or flags is None or exptime is None or nbytes is None:
        raise errors.BadCommandLine()
    if nbytes < 0 or nbytes > MAX_DATA_LENGTH:
        raise errors.BadCommandLine()
    if not item_size_ok(len(key), flags, nbytes, item_size_max):
        return TooLarge(StoreMode.ADD, key, nbytes + 2)
    return StoreHeader(StoreMode.ADD, key, flags, exptime, nbytes, 0, False, token)


_Parser: TypeAlias = Callable[[list[bytes], int, int], Request | StoreHeader]

# Every classic command but the meta ones (``m`` + one letter, routed before this lookup).
_PARSERS: Final[dict[bytes, _Parser]] = {
    **dict.fromkeys(_GETS, _parse_get),
    **dict.fromkeys(_STORE_MODES, _parse_store),
    b"delete": _parse_delete,
    b"incr": _parse_arithmetic,
    b"decr": _parse_arithmetic,
    b"touch": _parse_touch,
    b"lease-get": _parse_mcrouter_get,
    b"metaget": _parse_mcrouter_get,
    b"lease-set": _parse_lease_set,
    b"version": lambda _tokens, _ntokens, _size: Version(),
    b"quit": lambda _tokens, _ntokens, _size: Quit(),
    b"stats": lambda tokens, _ntokens, _size: Stats(tokens[1:]),
    b"lru_crawler": lambda tokens, _ntokens, _size: LruCrawler(tokens[1:]),
    b"flush_all": _parse_flush_all,
    b"verbosity": _parse_verbosity,
    b"cache_memlimit": _parse_cache_memlimit,
    **dict.fromkeys((b"slabs", b"lru", b"watch", b"shutdown"), parse_admin),
}
