"""memcached's ``tokenize_command`` (``protocol.tokens``), shared by text, meta and auth."""

from __future__ import annotations

import pytest

from petracache.protocol.tokens import count, tokenize


@pytest.mark.parametrize(
    ("line", "tokens"),
    [
        (b"get a b", [b"get", b"a", b"b"]),
        (b"  get   a  ", [b"get", b"a"]),  # empty tokens are dropped
        (b"get\ta b", [b"get\ta", b"b"]),  # only the space separates
        (b"set k 0 0 1\r", [b"set", b"k", b"0", b"0", b"1\r"]),
        (b"", []),
        (b"   ", []),
    ],
)
def test_tokenize(line: bytes, tokens: list[bytes]) -> None:
    assert tokenize(line) == tokens


@pytest.mark.parametrize(
    ("tokens", "ntokens"),
    [(0, 1), (1, 2), (22, 23), (23, 24), (24, 24), (100, 24)],
)
def test_count_is_memcacheds_ntokens(tokens: int, ntokens: int) -> None:
    """The real tokens plus the terminal one, at most 24 (memcached's MAX_TOKENS): a line
    with more tokens than that reads, for the arity checks, as exactly 24."""
    assert count([b"t"] * tokens) == ntokens
