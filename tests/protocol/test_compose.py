"""``compose.encode``'s dispatch: one encoder per response class, and nothing else accepted.

The wire forms themselves are checked where the replies are produced (``test_executor``,
the transcripts and the differential tests against memcached).
"""

from __future__ import annotations

import typing

import pytest

from petracache.protocol import compose
from petracache.protocol.responses import Number, Response, Status


def test_every_response_class_has_an_encoder() -> None:
    assert set(typing.get_args(Response)) == set(compose.ENCODERS)


def test_status_is_its_wire_line() -> None:
    for status in Status:
        assert compose.encode(status) == status.value


def test_number() -> None:
    assert compose.encode(Number(42)) == b"42\r\n"


def test_anything_else_is_refused() -> None:
    # The pure build says "not a response"; the compiled one refuses the argument's type.
    with pytest.raises(TypeError, match=r"not a response|object expected"):
        compose.encode(object())  # type: ignore[arg-type]
