"""Meta commands (``mg ms md ma mn me``): one tokenized command line -> a meta request.

Strategy: mirror memcached 1.6's ``process_m*_command`` checks in their order, because the
order decides which error a malformed line gets:

1. fewer than 3 tokens -> ``ERROR``; key over 250 bytes (before base64 decoding) ->
   ``CLIENT_ERROR bad command line format``; more than 20 tokens (including memcached's
   terminal token) -> ``... flags too long``;
2. the flag pre-parse (``_preparse``): a repeated flag or any byte >= 127 -> ``duplicate
   flag``, an unknown flag -> ``invalid flag`` (both stop at once); a bad numeric token
   records its error and parsing continues, the last recorded error wins;
3. command-specific checks (ms: mode, opaque length, item size; md: opaque length).

Invariants: meta errors are never suppressed by ``q``; an ms error found after its data
length was read swallows the data block (``MetaRejected`` / ``TooLarge``), an error before
that does not. The flag letters accepted are 1.6.18's plus ``E`` (explicit new CAS) and
``x`` (md: drop the value), which newer memcached added; ms ``s`` and ``N`` follow newer
memcached too (1.6.18 accepts and ignores them).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from petracache.protocol import errors
from petracache.protocol.meta_requests import (
    MetaArithmetic,
    MetaDebug,
    MetaDelete,
    MetaGet,
    MetaNoop,
    MetaRejected,
    MetaRequest,
    MetaSet,
    MetaSetHeader,
)
from petracache.protocol.requests import TooLarge
from petracache.rules.numbers import strtol32, strtoul32, strtoull
from petracache.rules.sizes import KEY_MAX_LENGTH, MAX_DATA_LENGTH, item_size_ok
from petracache.rules.verbs import StoreMode

MAX_OPT_TOKENS: Final = 20  # MFLAG_MAX_OPT_LENGTH, compared with ntokens
MAX_OPAQUE_LENGTH: Final = 32  # MFLAG_MAX_OPAQUE_LENGTH, the leading 'O' included

BAD_FORMAT: Final = b"CLIENT_ERROR bad command line format\r\n"
BAD_TOKEN: Final = b"CLIENT_ERROR bad token in command line format\r\n"
OPAQUE_TOO_LONG: Final = b"CLIENT_ERROR opaque token too long\r\n"
FLAG_ERROR: Final = b"CLIENT_ERROR invalid or duplicate flag\r\n"  # md and ma say only this

# Flags the pre-parse knows (1.6.18's set plus E and x); P and L are proxy hints, ignored.
_KNOWN: Final = frozenset(b"bNTRlOPLkstcfvhuqFCMJDIEx")

_B64_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUES: Final = {c: i for i, c in enumerate(_B64_ALPHABET)} | {ord("="): 0}


def b64decode_key(text: bytes) -> bytes | None:
    """Decode a base64 key exactly as memcached's ``base64_decode`` does; None on failure.

    Bytes outside the alphabet (and ``=``) are skipped; the remaining count must be a
    positive multiple of 4; decoding stops after the first quad containing padding, and a
    quad with more than two ``=`` is invalid. An empty result is a failure too.
    """
    values = _B64_VALUES
    quad: list[int] = []
    out = bytearray()
    pad = 0
    count = sum(1 for c in text if c in values)
    if count == 0 or count % 4:
        return None
    for c in text:
        v = values.get(c)
        if v is None:
            continue
        if c == 61:  # '='
            pad += 1
        quad.append(v)
        if len(quad) == 4:
            a, b, c2, d = quad
            out += bytes(((a << 2 | b >> 4) & 255, (b << 4 | c2 >> 2) & 255, (c2 << 6 | d) & 255))
            quad = []
            if pad:
                if pad > 2:
                    return None
                del out[-pad:]
                break
    return bytes(out) or None


def b64encode_key(key: bytes) -> bytes:
    """Standard padded base64, as memcached prints a binary key back."""
    return base64.b64encode(key)


@dataclass(slots=True)
class _Flags:
    """What the pre-parse learned from the flag tokens (memcached's ``struct _meta_flags``)."""

    key: bytes
    error: bytes | None = None
    binary: bool = False
    quiet: bool = False
    value: bool = False
    no_update: bool = False
    invalidate: bool = False
    drop_value: bool = False
    ttl: int | None = None
    vivify: int | None = None
    recache: int | None = None
    client_flags: int = 0
    compare_cas: int | None = None
    new_cas: int | None = None
    mode: int = 0
    initial: int = 0
    delta: int = 1


def _preparse(key: bytes, flags: list[bytes]) -> _Flags:
    """memcached's ``_meta_flag_preparse``.

    The loop keeps the checks every flag shares (duplicate, unknown); what a flag means is
    one dict lookup: a switch sets its attribute, a valued flag calls its reader.

    Raises:
        ProtocolError: ``duplicate flag`` / ``invalid flag`` (parsing stops there).
    Returns:
        The parsed flags; ``error`` is the last recorded token error, if any.
    """
    f = _Flags(key)
    seen: set[int] = set()
    for token in flags:
        o = token[0]
        if o >= 127 or o in seen:
            raise errors.ProtocolError(b"CLIENT_ERROR duplicate flag\r\n")
        seen.add(o)
        if o not in _KNOWN:
            raise errors.ProtocolError(b"CLIENT_ERROR invalid flag\r\n")
        switch = _SWITCHES.get(o)
        if switch is not None:
            setattr(f, switch, True)
            continue
        reader = _READERS.get(o)
        if reader is not None:
            reader(f, o, token)
    return f


def _read_binary(f: _Flags, o: int, token: bytes) -> None:
    """b: the key is base64; a key that does not decode is an error (and an empty key)."""
    decoded = b64decode_key(f.key)
    if decoded is None:
        f.error = b"CLIENT_ERROR error decoding key\r\n"
    f.key = decoded or b""
    f.binary = True


def _read_signed(f: _Flags, o: int, token: bytes) -> None:
    """N, T, R: a 32-bit signed number (vivify TTL, TTL, recache threshold)."""
    number = strtol32(token[1:])
    if number is None:
        f.error = BAD_TOKEN
    else:
        setattr(f, _SIGNED[o], number)


def _read_client_flags(f: _Flags, o: int, token: bytes) -> None:
    """F: a bad value keeps whatever error was recorded before."""
    parsed = strtoul32(token[1:])
    if parsed is None:
        f.error = f.error or BAD_FORMAT
    else:
        f.client_flags = parsed


def _read_cas(f: _Flags, o: int, token: bytes) -> None:
    """C (compare) and E (explicit new CAS): unsigned 64-bit."""
    cas = strtoull(token[1:])
    if cas is None:
        f.error = BAD_TOKEN
    elif o == 67:  # C
        f.compare_cas = cas
    else:
        f.new_cas = cas


def _read_mode(f: _Flags, o: int, token: bytes) -> None:
    """M: exactly one mode letter."""
    if len(token) != 2:
        f.error = b"CLIENT_ERROR incorrect length for M token\r\n"
    else:
        f.mode = token[1]


def _read_counter(f: _Flags, o: int, token: bytes) -> None:
    """J (initial value) and D (delta) of ma: unsigned 64-bit."""
    number = strtoull(token[1:])
    if number is None:
        name = b"initial" if o == 74 else b"delta"
        f.error = b"CLIENT_ERROR invalid numeric %b value\r\n" % name
    elif o == 74:  # J
        f.initial = number
    else:
        f.delta = number


# Flags without a value: the letter sets one attribute of _Flags.
_SWITCHES: Final = {
    ord("v"): "value",
    ord("u"): "no_update",
    ord("q"): "quiet",
    ord("x"): "drop_value",
    ord("I"): "invalidate",
}
_SIGNED: Final = {ord("N"): "vivify", ord("T"): "ttl", ord("R"): "recache"}
# Flags with a value (or, for b, an effect on the key). Known letters in neither table (k, s,
# t, c, f, h, l, O, P, L) only ask for return fields; the executor reads them from the tokens.
_READERS: Final[dict[int, Callable[[_Flags, int, bytes], None]]] = {
    ord("b"): _read_binary,
    **dict.fromkeys(_SIGNED, _read_signed),
    ord("F"): _read_client_flags,
    ord("C"): _read_cas,
    ord("E"): _read_cas,
    ord("M"): _read_mode,
    ord("J"): _read_counter,
    ord("D"): _read_counter,
}


def opaque_too_long(token: bytes) -> bool:
    """An ``O`` token longer than memcached's limit (checked where memcached checks it)."""
    return token[0] == 79 and len(token) > MAX_OPAQUE_LENGTH


def parse_meta(tokens: list[bytes], ntokens: int, item_size_max: int) -> MetaRequest | TooLarge:
    """Parse a line whose command is two bytes starting with ``m``.

    Args:
        tokens: the line's tokens (``protocol.tokens.tokenize``).
        ntokens: memcached's token count, its terminal token included (``text.parse_line``
            computes it once for every command).
        item_size_max: memcached's ``-I``.

    Raises:
        ProtocolError: memcached's reply for the malformed line (never suppressed).
    """
    kind = tokens[0][1]
    if kind == 110:  # mn
        return MetaNoop()
    if kind == 101:  # me
        return _parse_me(tokens, ntokens)
    if kind not in b"gsda":
        raise errors.UnknownCommand()
    if ntokens < 3:
        raise errors.UnknownCommand()
    key = tokens[1]
    if len(key) > KEY_MAX_LENGTH:
        raise errors.ProtocolError(BAD_FORMAT)
    if kind == 115:  # ms
        return _parse_ms(tokens, ntokens, item_size_max)
    if ntokens > MAX_OPT_TOKENS:
        text = b"options flags are too long" if kind == 103 else b"options flags too long"
        raise errors.ProtocolError(b"CLIENT_ERROR %b\r\n" % text)
    flag_tokens = tokens[2 : ntokens - 1]
    if kind == 103:  # mg
        f = _preparse(key, flag_tokens)
        if f.error:
            raise errors.ProtocolError(f.error)
        return MetaGet(
            f.key,
            f.binary,
            tuple(flag_tokens),
            f.value,
            f.quiet,
            f.no_update,
            f.ttl,
            f.vivify,
            f.recache,
            f.new_cas,
        )
    try:
        f = _preparse(key, flag_tokens)
    except errors.ProtocolError:
        f = _Flags(key, error=FLAG_ERROR)
    if f.error:
        raise errors.ProtocolError(FLAG_ERROR)
    if kind == 100:  # md
        if any(opaque_too_long(t) for t in flag_tokens):
            raise errors.ProtocolError(OPAQUE_TOO_LONG)
        return MetaDelete(
            f.key,
            f.binary,
            tuple(flag_tokens),
            f.compare_cas,
            f.new_cas,
            f.invalidate,
            f.ttl,
            f.client_flags,
            f.drop_value,
            f.quiet,
        )
    if f.mode not in (0, 73, 43, 68, 45):  # I + D -
        raise errors.ProtocolError(b"CLIENT_ERROR invalid mode for ma M token\r\n")
    return MetaArithmetic(
        f.key,
        f.binary,
        tuple(flag_tokens),
        f.mode not in (68, 45),
        f.delta,
        f.initial,
        f.vivify,
        f.ttl,
        f.compare_cas,
        f.new_cas,
        f.quiet,
        f.value,
    )


_MS_MODES: Final = {0: "S", 83: "S", 69: "E", 65: "A", 80: "P", 82: "R"}


def _parse_ms(tokens: list[bytes], ntokens: int, item_size_max: int) -> MetaRequest | TooLarge:
    if ntokens == 3:
        raise errors.ProtocolError(BAD_FORMAT)
    if ntokens > MAX_OPT_TOKENS:
        raise errors.ProtocolError(b"CLIENT_ERROR options flags too long\r\n")
    nbytes = strtol32(tokens[2])
    if nbytes is None or nbytes < 0 or nbytes > MAX_DATA_LENGTH:
        raise errors.ProtocolError(BAD_FORMAT)
    swallow = nbytes + 2
    flag_tokens = tokens[3 : ntokens - 1]
    try:
        f = _preparse(tokens[1], flag_tokens)
    except errors.ProtocolError as exc:
        return MetaRejected(exc.reply, swallow)
    if f.error:
        return MetaRejected(f.error, swallow)
    mode = _MS_MODES.get(f.mode)
    if mode is None:
        return MetaRejected(b"CLIENT_ERROR invalid mode for ms M token\r\n", swallow)
    if any(opaque_too_long(t) for t in flag_tokens):
        return MetaRejected(OPAQUE_TOO_LONG, swallow)
    if not item_size_ok(len(f.key), f.client_flags, nbytes, item_size_max):
        # memcached drops the stored item whatever the mode: a SET-mode TooLarge does that.
        return TooLarge(StoreMode.SET, f.key, swallow, False)
    fields = MetaSet(
        f.key,
        f.binary,
        tuple(flag_tokens),
        b"",
        f.client_flags,
        f.ttl or 0,
        mode,
        f.compare_cas,
        f.new_cas,
        f.invalidate,
        f.quiet,
        f.vivify,
    )
    return MetaSetHeader(fields, nbytes)


def _parse_me(tokens: list[bytes], ntokens: int) -> MetaDebug:
    if ntokens < 3 or len(tokens[1]) > KEY_MAX_LENGTH:
        raise errors.ProtocolError(BAD_FORMAT)
    key = tokens[1]
    if ntokens >= 4 and tokens[2] == b"b":
        decoded = b64decode_key(key)
        if decoded is None:
            raise errors.ProtocolError(BAD_FORMAT)
        key = decoded
    return MetaDebug(key)
