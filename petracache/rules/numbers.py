"""Number parsing with the exact acceptance rules of memcached's ``safe_strto*`` helpers.

memcached parses numeric fields with C's ``strtoul``/``strtol``/``strtoull`` and then checks
what follows the digits (``util.c``). The quirks matter for byte-identical replies:

* leading C whitespace and one ``+`` or ``-`` sign are accepted by the C library;
* the digits must be followed by the end of the token or by a C whitespace character
  (tabs and ``\\r`` can sit inside a token because tokens are split on spaces only);
* a value out of range of the C type is an error (``ERANGE``); for the unsigned parsers a
  negative number is refused, except that ``-0`` passes;
* ``safe_strtoul`` stores into a 32-bit ``uint32_t``, so flags above 2**32 are truncated;
  ``safe_strtol`` stores a 64-bit ``long`` into an ``int32_t``, so it wraps.

Every function returns ``None`` where memcached's helper returns false.
"""

from __future__ import annotations

from typing import Final

C_SPACE: Final = b" \t\n\v\f\r"
INT_MAX: Final = (1 << 31) - 1  # C's INT_MAX (a 32-bit int)
U64_MAX: Final = (1 << 64) - 1
I64_MIN: Final = -(1 << 63)
I64_MAX: Final = (1 << 63) - 1
_DIGITS: Final = frozenset(b"0123456789")
_MAX_DIGITS: Final = 20  # len(str(U64_MAX)); longer digit runs (after leading zeros) overflow
_OUT_OF_RANGE: Final = 1 << 65


def _strto(token: bytes) -> tuple[int, bool] | None:
    """Parse like ``strto*(token, &end, 10)`` plus the trailing-byte check of ``safe_strto*``.

    Returns:
        ``(magnitude, negative)`` or ``None`` when no digits were read or junk follows them.
    """
    if token.isdigit() and len(token) <= _MAX_DIGITS:  # fast path: plain ASCII digits
        return int(token), False
    i = 0
    n = len(token)
    while i < n and token[i] in C_SPACE:
        i += 1
    negative = False
    if i < n and token[i] in b"+-":
        negative = token[i] == 0x2D
        i += 1
    start = i
    while i < n and token[i] in _DIGITS:
        i += 1
    if i == start:
        return None
    if i < n and token[i] not in C_SPACE and token[i] != 0:
        return None
    digits = token[start:i].lstrip(b"0")
    if len(digits) > _MAX_DIGITS:  # out of range for every caller; int() would refuse it
        return _OUT_OF_RANGE, negative
    return int(digits or b"0"), negative


def strtoull(token: bytes) -> int | None:
    """memcached ``safe_strtoull``: an unsigned 64-bit value, or ``None``."""
    parsed = _strto(token)
    if parsed is None:
        return None
    value, negative = parsed
    if value > U64_MAX:
        return None
    if negative and value:
        # strtoull negates into the unsigned range: (-x mod 2**64) >= 2**63 for 0 < x <= 2**63,
        # and x > 2**63 yields a "positive" long, which memcached accepts.
        value = (-value) & U64_MAX
    if value > I64_MAX and b"-" in token:
        # safe_strtoull refuses a value whose signed reading is negative when strchr() finds a
        # '-' anywhere in the string, even after the digits ("18446744073709551615\t-").
        return None
    return value


def strtoul32(token: bytes) -> int | None:
    """memcached ``safe_strtoul`` (64-bit ``unsigned long`` stored into ``uint32_t``)."""
    value = strtoull(token)
    return None if value is None else value & 0xFFFFFFFF


def strtol32(token: bytes) -> int | None:
    """memcached ``safe_strtol`` (64-bit ``long`` stored into ``int32_t``, wrapping)."""
    parsed = _strto(token)
    if parsed is None:
        return None
    value, negative = parsed
    if negative:
        value = -value
    if value < I64_MIN or value > I64_MAX:
        return None
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def parse_stored_counter(data: bytes) -> int | None:
    """Read an item's data as incr/decr does: ``safe_strtoull`` over ``data + "\\r\\n"``.

    memcached refuses an empty value; a C string stops at the first NUL byte.
    """
    if not data:
        return None
    nul = data.find(b"\0")
    if nul >= 0:
        data = data[:nul]
        if not data:
            return None
    return strtoull(data + b"\r\n")


def strtod(token: bytes) -> float | None:
    """memcached ``safe_strtod``: the whole token is a C floating-point number, or ``None``.

    ``strtod`` skips leading white space and reads decimal, hex, ``inf`` and ``nan`` forms;
    Python's ``float`` reads the same set except hex, which no memcached setting needs, and
    also takes ``_`` separators, which C does not.
    """
    if b"_" in token:
        return None
    try:
        return float(token.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
