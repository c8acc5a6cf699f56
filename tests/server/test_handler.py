"""The connection handler in process, on trio's in-memory streams, with a real engine.

``trio.testing.memory_stream_pair`` lets a test count the handler's ``send_all`` calls, which a
socket cannot show; everything that needs a real process lives in ``tests/e2e``.
"""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from petracache.commands.executor import Executor
from petracache.commands.stats import ServerInfo
from petracache.config import StorageSettings
from petracache.observability.counters import Counters
from petracache.server.handler import ConnectionTracker, HandlerConfig, handle_connection
from petracache.storage.engine import Engine


def test_replies_of_one_read_go_out_in_one_write(tmp_path: Path) -> None:
    """Pipelined requests that arrive in one read are answered with a single send.

    In process, on trio's in-memory streams (they count the handler's ``send_all`` calls), with
    a real engine on tmp_path.
    """
    trio.run(_one_write, tmp_path)


async def _one_write(tmp_path: Path) -> None:
    engine = Engine(StorageSettings(db_path=str(tmp_path / "db")))
    counters = Counters()
    executor = Executor(engine, counters, ServerInfo(max_connections=10, item_size_max=1 << 20))
    client, server_side = trio.testing.memory_stream_pair()
    writes: list[int] = []
    original = server_side.send_stream.send_all_hook

    async def count_write() -> None:
        writes.append(1)
        if original is not None:
            await original()

    server_side.send_stream.send_all_hook = count_write
    config = HandlerConfig(
        item_size_max=1 << 20, read_size=1 << 20, max_connections=10, commit=engine.commit
    )
    payload = b"".join(b"set k%d 0 0 1\r\nx\r\nget k%d\r\n" % (i, i) for i in range(50))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            handle_connection, server_side, executor.execute, counters, config, ConnectionTracker()
        )
        await client.send_all(payload)
        got = b""
        while got.count(b"END\r\n") < 50:
            got += await client.receive_some(1 << 20)
        await client.aclose()
    engine.close()
    assert got.count(b"STORED\r\n") == 50
    assert len(writes) == 1
