"""pymemcache, a real memcached client, against a real petracache process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheIllegalInputError,
    MemcacheServerError,
)

from tests.harness import PetracacheProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def client(shared_server: PetracacheProcess) -> Iterator[Client]:
    c = Client(("127.0.0.1", shared_server.port), connect_timeout=5, timeout=10)
    yield c
    c.close()


def test_set_get_delete(client: Client) -> None:
    assert client.set("pm:a", b"1", noreply=False)
    assert client.get("pm:a") == b"1"
    assert client.get_many(["pm:a", "pm:missing"]) == {"pm:a": b"1"}
    assert client.delete("pm:a", noreply=False)
    assert client.get("pm:a") is None
    assert not client.delete("pm:a", noreply=False)


class FlagsSerde:
    """Passes bytes through and returns (value, flags) so the test can see the flags."""

    def serialize(self, key: str, value: bytes) -> tuple[bytes, int]:
        return value, 4294967295

    def deserialize(self, key: str, value: bytes, flags: int) -> tuple[bytes, int]:
        return value, flags


def test_flags_round_trip(shared_server: PetracacheProcess) -> None:
    c = Client(("127.0.0.1", shared_server.port), serde=FlagsSerde(), connect_timeout=5)
    try:
        c.set("pm:f", b"x", noreply=False)
        assert c.get("pm:f") == (b"x", 4294967295)
    finally:
        c.close()


def test_add_replace_append_prepend(client: Client) -> None:
    assert client.add("pm:b", b"m", noreply=False)
    assert not client.add("pm:b", b"x", noreply=False)
    assert client.replace("pm:b", b"M", noreply=False)
    assert not client.replace("pm:nope", b"x", noreply=False)
    assert client.append("pm:b", b">", noreply=False)
    assert client.prepend("pm:b", b"<", noreply=False)
    assert client.get("pm:b") == b"<M>"


def test_gets_and_cas(client: Client) -> None:
    client.set("pm:c", b"1", noreply=False)
    value, token = client.gets("pm:c")
    assert value == b"1"
    assert client.cas("pm:c", b"2", token, noreply=False) is True
    assert client.cas("pm:c", b"3", token, noreply=False) is False  # EXISTS
    assert client.cas("pm:nope", b"3", token, noreply=False) is None  # NOT_FOUND
    assert client.gets_many(["pm:c"])["pm:c"][0] == b"2"


def test_incr_decr(client: Client) -> None:
    client.set("pm:n", b"10", noreply=False)
    assert client.incr("pm:n", 5, noreply=False) == 15
    assert client.decr("pm:n", 20, noreply=False) == 0
    assert client.incr("pm:missing", 1, noreply=False) is None
    client.set("pm:n", b"18446744073709551615", noreply=False)
    assert client.incr("pm:n", 1, noreply=False) == 0
    client.set("pm:s", b"abc", noreply=False)
    with pytest.raises(MemcacheClientError, match="non-numeric"):
        client.incr("pm:s", 1, noreply=False)


def test_touch(client: Client) -> None:
    client.set("pm:t", b"v", noreply=False)
    assert client.touch("pm:t", 100, noreply=False)
    assert not client.touch("pm:missing", 100, noreply=False)
    assert client.get("pm:t") == b"v"  # (pymemcache 4 has no gat; test_commands covers it)
    assert client.touch("pm:t", -1, noreply=False)
    assert client.get("pm:t") is None


def test_noreply_default(client: Client) -> None:
    for i in range(100):
        client.set(f"pm:nr{i}", b"%d" % i)  # pymemcache's default is noreply
    assert client.get_many([f"pm:nr{i}" for i in range(100)]) == {
        f"pm:nr{i}": b"%d" % i for i in range(100)
    }


def test_large_values(client: Client) -> None:
    value = b"z" * (1048516 - len(b"pm:big") + 1)
    assert client.set("pm:big", value, noreply=False)
    assert client.get("pm:big") == value
    with pytest.raises(MemcacheServerError, match="object too large"):
        client.set("pm:big", value + b"z", noreply=False)
    assert client.get("pm:big") is None


def test_stats_version_and_the_rest(client: Client) -> None:
    assert client.version().startswith(b"1.6.18")
    stats = client.stats()
    assert b"curr_connections" in stats
    assert client.raw_command("verbosity 1") == b"OK"
    assert client.cache_memlimit(100)
    assert client.delete_many(["pm:x", "pm:y"], noreply=False)
    client.flush_all(delay=1000, noreply=False)  # delayed: nothing changes now
    client.set("pm:after", b"1", noreply=False)
    assert client.get("pm:after") == b"1"


def test_client_side_key_checks_and_binary_values(client: Client) -> None:
    with pytest.raises(MemcacheIllegalInputError):
        client.set("k" * 251, b"x")
    data = bytes(range(256)) * 4
    client.set("pm:bin", data, noreply=False)
    assert client.get("pm:bin") == data
