"""memcached's ``tokenize_command`` (``protocol.tokens``), shared by text, meta and auth."""

from __future__ import annotations

import pytest

from petracache.protocol.tokens import MAX_TOKENS, tokenize


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


def test_max_tokens_is_memcacheds() -> None:
    assert MAX_TOKENS == 24
