"""``server.watch.ConnectionTags``: connections run a tagged executor only while watched."""

from __future__ import annotations

from dataclasses import dataclass

from petracache.observability.counters import Counters
from petracache.observability.watch import FETCHERS, WatchLog
from petracache.protocol.detect import ClientConnection
from petracache.protocol.requests import Request, Version
from petracache.protocol.responses import Response, VersionReply
from petracache.server.exchange import Exchange
from petracache.server.watch import ConnectionTags


@dataclass
class View:
    fd: int
    exchange: Exchange | None


def test_connections_are_tagged_while_someone_watches() -> None:
    log = WatchLog()
    seen: list[int] = []

    def execute(request: Request) -> Response:
        seen.append(log.cfd)
        return VersionReply("x")

    views: list[View] = []
    tags = ConnectionTags(log, execute, views)
    before = Exchange(ClientConnection(), tags.execute_for(7), Counters(), 1 << 16)
    views.append(View(7, before))
    views.append(View(8, None))  # not serving yet: nothing to retag
    assert before.execute is execute  # nobody watches: the plain executor

    watcher = log.add(FETCHERS, lambda: None)
    assert watcher is not None
    during = Exchange(ClientConnection(), tags.execute_for(9), Counters(), 1 << 16)
    before.execute(Version())
    during.execute(Version())
    assert seen == [7, 9]

    log.remove(watcher)
    assert before.execute is execute
