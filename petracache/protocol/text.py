"""Classic text commands: one command line (without its line ending) -> a request.

Tokenizing follows memcached's ``tokenize_command``: split on the space character only
(tabs belong to tokens), ignore empty tokens, and count at most 23 tokens plus a terminal
one; the token counts below are memcached's (``ntokens`` includes that terminal token), so
the arity checks read exactly like ``process_command_ascii``. A line is cut at its first NUL
byte, as C's ``strlen`` does.

A storage command returns a ``StoreHeader``; the connection then reads its data block.
"""

from __future__ import annotations

from dataclasses import dataclass

from petracache.protocol import errors
from petracache.protocol.crawler import LruCrawler
from petracache.protocol.meta import parse_meta
from petracache.protocol.requests import (
    Arithmetic,
    CacheMemlimit,
    Delete,
    FlushAll,
    Get,
    LeaseGet,
    McrouterMetaget,
    Quit,
    Request,
    Stats,
    TooLarge,
    Touch,
    Verbosity,
    Version,
)
from petracache.rules.numbers import strtol32, strtoul32, strtoull
from petracache.rules.sizes import KEY_MAX_LENGTH, item_size_ok
from petracache.rules.verbs import StoreMode

MAX_TOKENS = 24  # memcached's MAX_TOKENS, including the terminal token
INT_MAX = (1 << 31) - 1


@dataclass(frozen=True, slots=True)
class StoreHeader:
    """A parsed storage command line waiting for its ``nbytes`` data block."""

    mode: StoreMode
    key: bytes
    flags: int
    exptime: int
    nbytes: int
    cas_unique: int
    noreply: bool
    lease_token: int | None = None  # set for mcrouter's lease-set


_STORE_MODES = {
    b"set": StoreMode.SET,
    b"add": StoreMode.ADD,
    b"replace": StoreMode.REPLACE,
    b"append": StoreMode.APPEND,
    b"prepend": StoreMode.PREPEND,
    b"cas": StoreMode.CAS,
}
_GETS = {b"get": (False, False), b"bget": (False, False), b"gets": (True, False)}
_GATS = {b"gat": (False, True), b"gats": (True, True)}
_MCROUTER_COMMANDS = frozenset((b"lease-get", b"lease-set", b"metaget"))


def tokenize(line: bytes) -> list[bytes]:
    """Split on spaces, dropping empty tokens."""
    tokens = line.split(b" ")
    if b"" in tokens:
        tokens = [t for t in tokens if t]
    return tokens


def parse_line(line: bytes, item_size_max: int) -> Request | StoreHeader:
    """Parse one classic command line.

    Raises:
        ProtocolError: with memcached's reply for the malformed line.
        CloseConnection: memcached would drop the connection (an HTTP request line).
    """
    nul = line.find(b"\0")
    if nul >= 0:
        line = line[:nul]
    tokens = tokenize(line)
    if not tokens or len(tokens[0]) < 2:
        raise errors.UnknownCommand()
    cmd = tokens[0]
    if cmd[0] == 109 and len(cmd) == 2:  # memcached: first == 'm' && length == 2
        return parse_meta(tokens, item_size_max)
    ntokens = min(len(tokens), MAX_TOKENS - 1) + 1

    modes = _GETS.get(cmd) or _GATS.get(cmd)
    if modes is not None:
        return _parse_get(tokens, ntokens, *modes)
    mode = _STORE_MODES.get(cmd)
    if mode is not None:
        return _parse_store(tokens, ntokens, mode, item_size_max)
    if cmd == b"delete":
        return _parse_delete(tokens, ntokens)
    if cmd == b"incr" or cmd == b"decr":
        return _parse_arithmetic(tokens, ntokens, cmd == b"incr")
    if cmd == b"touch":
        return _parse_touch(tokens, ntokens)
    if cmd in _MCROUTER_COMMANDS:
        return _parse_mcrouter(tokens, ntokens, item_size_max)
    if cmd == b"version":
        return Version()
    if cmd == b"quit":
        return Quit()
    if cmd == b"stats":
        return Stats(tokens[1:])
    if cmd == b"lru_crawler":
        return LruCrawler(tokens[1:])
    if cmd == b"flush_all":
        return _parse_flush_all(tokens, ntokens)
    if cmd == b"verbosity":
        _want(ntokens, 3, 4)
        noreply = _noreply(tokens, ntokens)
        level = strtoul32(tokens[1])
        if level is None:
            raise errors.BadCommandLine(noreply=noreply)
        return Verbosity(level, noreply)
    if cmd == b"cache_memlimit":
        _want(ntokens, 3, 4)
        noreply = _noreply(tokens, ntokens)
        megabytes = strtoul32(tokens[1])
        if megabytes is None:
            raise errors.UnknownCommand(noreply=noreply)
        return CacheMemlimit(megabytes, noreply)
    if cmd == b"shutdown":
        raise errors.ProtocolError(b"ERROR: shutdown not enabled\r\n")
    if tokens[ntokens - 2].startswith(b"HTTP/"):
        raise errors.CloseConnection("HTTP request on the memcached port")
    raise errors.UnknownCommand()


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


def _parse_get(tokens: list[bytes], ntokens: int, return_cas: bool, touch: bool) -> Get:
    if ntokens < 3:
        raise errors.UnknownCommand()
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


def _parse_store(
    tokens: list[bytes], ntokens: int, mode: StoreMode, item_size_max: int
) -> StoreHeader | TooLarge:
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
    if nbytes < 0 or nbytes > INT_MAX - 2:
        raise errors.BadCommandLine(noreply=noreply)
    if not item_size_ok(len(key), flags, nbytes, item_size_max):
        return TooLarge(mode, key, nbytes + 2, noreply)
    return StoreHeader(mode, key, flags, exptime, nbytes, cas_unique, noreply)


def _parse_delete(tokens: list[bytes], ntokens: int) -> Delete:
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


def _parse_arithmetic(tokens: list[bytes], ntokens: int, incr: bool) -> Arithmetic:
    _want(ntokens, 4, 5)
    noreply = _noreply(tokens, ntokens)
    key = _check_key(tokens[1], noreply)
    delta = strtoull(tokens[2])
    if delta is None:
        raise errors.InvalidDelta(noreply=noreply)
    return Arithmetic(key, delta, incr, noreply)


def _parse_touch(tokens: list[bytes], ntokens: int) -> Touch:
    _want(ntokens, 4, 5)
    noreply = _noreply(tokens, ntokens)
    key = _check_key(tokens[1], noreply)
    exptime = strtol32(tokens[2])
    if exptime is None:
        raise errors.InvalidExptime(noreply=noreply)
    return Touch(key, exptime, noreply)


def _parse_flush_all(tokens: list[bytes], ntokens: int) -> FlushAll:
    _want(ntokens, 2, 4)
    noreply = _noreply(tokens, ntokens)
    delay = 0
    if ntokens != (3 if noreply else 2):
        parsed = strtol32(tokens[1])
        if parsed is None:
            raise errors.InvalidExptime(noreply=noreply)
        delay = parsed
    return FlushAll(delay, noreply)


def _parse_mcrouter(tokens: list[bytes], ntokens: int, item_size_max: int) -> Request | StoreHeader:
    """mcrouter's own commands: ``lease-get <key>``, ``metaget <key>`` and
    ``lease-set <key> <token> <flags> <exptime> <bytes>`` (its AsciiSerialized.cpp).

    mcrouter never sends ``noreply`` with them and sends one key per request; a malformed
    line gets ``CLIENT_ERROR`` (never ``ERROR``, which would mark the backend down).
    """
    cmd = tokens[0]
    if cmd != b"lease-set":
        if ntokens != 3:
            raise errors.BadCommandLine()
        key = _check_key(tokens[1])
        return LeaseGet(key) if cmd == b"lease-get" else McrouterMetaget(key)
    if ntokens != 7:
        raise errors.BadCommandLine()
    key = _check_key(tokens[1])
    token = strtoull(tokens[2])
    flags = strtoul32(tokens[3])
    exptime = strtol32(tokens[4])
    nbytes = strtol32(tokens[5])
    if token is None or flags is None or exptime is None or nbytes is None:
        raise errors.BadCommandLine()
    if nbytes < 0 or nbytes > INT_MAX - 2:
        raise errors.BadCommandLine()
    if not item_size_ok(len(key), flags, nbytes, item_size_max):
        return TooLarge(StoreMode.ADD, key, nbytes + 2)
    return StoreHeader(StoreMode.ADD, key, flags, exptime, nbytes, 0, False, token)
