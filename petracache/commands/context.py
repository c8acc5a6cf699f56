"""What every command handler gets: the engine and the server's command-side state.

Every command module exposes handlers of one shape, ``(ctx, request) -> Response``, and a
``HANDLERS`` table from request type to handler; ``executor`` merges the tables and
dispatches on ``type(request)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from petracache.commands.crawler import Crawler
from petracache.commands.leases import LeaseTable
from petracache.commands.prefix_stats import PrefixStats
from petracache.commands.stats import ServerInfo
from petracache.observability.counters import Counters
from petracache.observability.watch import WatchLog
from petracache.protocol.responses import Response
from petracache.storage.engine import Engine


@dataclass(slots=True)
class Context:
    """The state commands read and change.

    Attributes:
        engine: the item store.
        counters: memcached's counters; commands are the only code that moves them (the
            server moves connection and byte counts).
        info: facts about the server that ``stats`` reports and ``verbosity`` sets.
        leases: mcrouter lease-get/lease-set tokens, in memory only.
        prefixes: ``stats detail`` per-prefix counters.
        crawler: ``lru_crawler``'s settable state.
        watch: ``watch``'s watchers; commands report fetches and stores to it
            (``commands.watching``) only while ``watching``, which it keeps up to date.
    """

    engine: Engine
    counters: Counters
    info: ServerInfo
    leases: LeaseTable = field(default_factory=LeaseTable)
    prefixes: PrefixStats = field(default_factory=PrefixStats)
    crawler: Crawler = field(default_factory=Crawler)
    watch: WatchLog = field(default_factory=WatchLog)
    watching: bool = False  # the one check the request path makes for ``watch``

    def __post_init__(self) -> None:
        self.watch.on_change.append(self._set_watching)

    def _set_watching(self, active: bool) -> None:
        self.watching = active


# A handler takes the request type its table entry names; ``Any`` lets one table hold all.
Handler: TypeAlias = Callable[[Context, Any], Response]
