"""A server whose background reclaim runs every 50 ms, and the client calls its tests use.

``FAST`` is the environment (short reaper interval, 256 KiB memtables and SST files, so
flushes and compactions happen within a test's writes); ``wait_for_stat`` polls ``stats``
until a counter arrives (bounded, not timed). Shared by ``test_expiry`` and
``test_eviction``.
"""

from __future__ import annotations

from tests.harness import WAIT, RawClient, wait_until

FAST = {
    "PETRACACHE_STORAGE__REAPER_INTERVAL": "0.05",
    "PETRACACHE_STORAGE__WRITE_BUFFER_SIZE": str(256 * 1024),
    "PETRACACHE_STORAGE__TARGET_FILE_SIZE_BASE": str(256 * 1024),
}
VALUE = b"v" * 1000


def stats(client: RawClient) -> dict[str, int]:
    """The numeric ``stats`` lines."""
    out = {}
    for line in client.call(b"stats\r\n").split(b"\r\n"):
        parts = line.split()
        if len(parts) == 3 and parts[0] == b"STAT" and parts[2].isdigit():
            out[parts[1].decode()] = int(parts[2])
    return out


def wait_for_stat(
    client: RawClient, name: str, at_least: int, timeout: float = WAIT
) -> dict[str, int]:
    """Poll ``stats`` until counter ``name`` reaches ``at_least``; those stats.

    Raises:
        TimeoutError: not within ``timeout`` seconds (the message has the last stats).
    """
    last: dict[str, int] = {}

    def reached() -> dict[str, int] | None:
        last.update(stats(client))
        return dict(last) if last.get(name, 0) >= at_least else None

    try:
        return wait_until(reached, timeout, what=f"stat {name} >= {at_least}")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; stats: {last}") from None


def set_many(client: RawClient, keys: list[bytes], exptime: int, value: bytes = VALUE) -> None:
    """``set ... noreply`` for every key, pipelined 200 at a time."""
    for start in range(0, len(keys), 200):
        chunk = keys[start : start + 200]
        client.call(
            b"".join(
                b"set %b 0 %d %d noreply\r\n%b\r\n" % (k, exptime, len(value), value) for k in chunk
            )
        )


def get(client: RawClient, key: bytes) -> bytes | None:
    """The value of ``key``, or None on a miss."""
    reply = client.call(b"get %b\r\n" % key)
    if reply == b"END\r\n":
        return None
    header, _, rest = reply.partition(b"\r\n")
    size = int(header.split()[3])
    return rest[:size]
