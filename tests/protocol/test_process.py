"""``MemcacheConnection.process``: replies, flush points, closes and the write limit, sans I/O.

The executor here is a plain function that answers from the request type (no storage): the
rules under test are the protocol layer's, which replies memcached would have written when
a connection ends badly (rule 5 of ``protocol.connection``). The end-to-end differential
tests check the same behaviours against memcached 1.6 over sockets.
"""

from __future__ import annotations

import pytest

from petracache.protocol.connection import FLUSH_AFTER, FLUSH_EVERY, MemcacheConnection
from petracache.protocol.meta_requests import MetaNoop
from petracache.protocol.requests import Get, Request, Store
from petracache.protocol.responses import Response, Status, Values


def execute(request: Request) -> Response:
    """A miss for every get, STORED for every store, NOT_FOUND for everything else."""
    if isinstance(request, Get):
        return Values([], False)
    if isinstance(request, Store):
        return Status.STORED
    if isinstance(request, MetaNoop):
        return Status.END  # any reply will do: only its position matters here
    return Status.NOT_FOUND


def process(data: bytes, limit: int = 1 << 20) -> tuple[bytes, bool, bool, int]:
    conn = MemcacheConnection()
    conn.receive_data(data)
    batch = conn.process(execute, limit)
    return batch.data, batch.close, batch.more, batch.errors


def test_answers_every_complete_request_in_order() -> None:
    data, close, more, errors = process(b"get a\r\nset k 0 0 1\r\nx\r\ndelete k\r\nget")
    assert data == b"END\r\nSTORED\r\nNOT_FOUND\r\n"
    assert (close, more, errors) == (False, False, 0)


def test_noreply_requests_write_nothing() -> None:
    data, *_ = process(b"set k 0 0 1 noreply\r\nx\r\ndelete k noreply\r\nget k\r\n")
    assert data == b"END\r\n"


def test_protocol_errors_are_answered_and_counted() -> None:
    data, close, _more, errors = process(b"bogus\r\nget k\r\n")
    assert data == b"ERROR\r\nEND\r\n"
    assert not close
    assert errors == 1


def test_quit_closes_after_the_replies_before_it() -> None:
    data, close, _more, _errors = process(b"get a\r\nquit\r\nget b\r\n")
    assert data == b"END\r\n"
    assert close


def test_too_long_line_drops_replies_since_the_last_flush_point() -> None:
    # delete is not a flush point: its reply is still held when the long line closes.
    data, close, *_ = process(b"get a\r\ndelete k\r\n" + b"x" * 3000)
    assert data == b"END\r\n"
    assert close


@pytest.mark.parametrize("flusher", [b"get a\r\n", b"mn\r\n"])
def test_get_and_mn_are_flush_points(flusher: bytes) -> None:
    data, close, *_ = process(b"delete k\r\n" + flusher + b"delete k\r\n" + b"x" * 3000)
    assert close
    assert data.startswith(b"NOT_FOUND\r\n")
    assert data.count(b"NOT_FOUND") == 1  # the delete after the flush point is dropped


def test_every_nth_request_of_a_read_is_a_flush_point() -> None:
    deletes = FLUSH_AFTER + FLUSH_EVERY + 3
    data, close, *_ = process(b"delete k\r\n" * deletes + b"x" * 3000)
    assert close
    assert data.count(b"NOT_FOUND") == FLUSH_AFTER + FLUSH_EVERY


def test_a_long_get_key_discards_held_replies() -> None:
    data, close, _more, errors = process(b"delete k\r\nget " + b"k" * 251 + b"\r\n")
    assert data == b"CLIENT_ERROR bad command line format\r\n"
    assert not close
    assert errors == 1


def test_write_limit_hands_back_held_replies_and_continues() -> None:
    conn = MemcacheConnection()
    conn.receive_data(b"delete k\r\n" * 5)
    first = conn.process(execute, limit=20)
    assert (first.data, first.more) == (b"NOT_FOUND\r\n" * 2, True)
    rest = conn.process(execute, limit=1 << 20)
    assert (rest.data, rest.more) == (b"NOT_FOUND\r\n" * 3, False)


def test_flush_point_count_spans_write_limit_stops() -> None:
    # The count of requests in one read goes on across a stop at the write limit, as
    # memcached's reqs_per_event does across its partial writes.
    conn = MemcacheConnection()
    conn.receive_data(b"delete k\r\n" * (FLUSH_AFTER + 2) + b"x" * 3000)
    held = b""
    while True:
        batch = conn.process(execute, limit=11 * 4)
        held += batch.data
        if not batch.more:
            break
    assert batch.close
    # 20 replies went out at the limit stops; the 21st request of the read is a flush
    # point only if the count did not restart at each stop.
    assert held.count(b"NOT_FOUND") == FLUSH_AFTER


def test_incomplete_input_waits() -> None:
    data, close, more, _errors = process(b"set k 0 0 5\r\nab")
    assert (data, close, more) == (b"", False, False)


def yields_of(data: bytes, reqs_per_event: int) -> tuple[int, bytes]:
    """``Batch.yields`` and the replies kept before a closing long line, with ``-R``."""
    conn = MemcacheConnection(reqs_per_event=reqs_per_event)
    conn.receive_data(data)
    batch = conn.process(execute, 1 << 20)
    return batch.yields, batch.data


@pytest.mark.parametrize(
    ("data", "reqs_per_event", "yields"),
    [
        (b"delete k\r\n" * 2, 2, 1),  # the final write takes the third share
        (b"delete k noreply\r\n" * 4, 2, 2),  # noreply replies are held (and skipped) too
        (b"delete k\r\n", 2, 0),
        (b"get k\r\n" * 2, 2, 0),  # nothing held at the end: no final write
        (b"get k\r\ndelete k\r\n", 2, 1),
        (b"bogus\r\n" * 2, 2, 1),
        (b"delete k\r\n" * 20, 20, 1),
        (b"delete k\r\n" * 40, 20, 2),
        (b"delete k\r\n" * 41, 20, 2),  # the 41st is a yield point: nothing held after it
        (b"mn\r\n" * 7 + b"delete k\r\n" * 3, 2, 5),
    ],
)
def test_yields_are_counted_as_memcached_counts_conn_yields(
    data: bytes, reqs_per_event: int, yields: int
) -> None:
    assert yields_of(data, reqs_per_event)[0] == yields


@pytest.mark.parametrize("reqs_per_event", [1, 2, 5])
def test_reqs_per_event_moves_the_flush_points(reqs_per_event: int) -> None:
    count, data = yields_of(b"delete k\r\n" * 12 + b"x" * 3000, reqs_per_event)
    first, every = reqs_per_event + 1, reqs_per_event
    kept = first + (12 - first) // every * every  # the last flush point at or before 12
    assert data.count(b"NOT_FOUND") == kept
    assert count == 1 + (12 - first) // every
