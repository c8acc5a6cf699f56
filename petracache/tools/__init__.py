"""Operator commands beside the server: ``petracache migrate|backup|restore``.

``run_tool`` is the entry point's hook: it imports a tool only when its name is the first
argument, so starting the server never loads the tools' dependencies (tqdm).
"""

from __future__ import annotations

from collections.abc import Sequence

TOOLS = ("migrate", "backup", "restore")


def run_tool(argv: Sequence[str]) -> int | None:
    """Run ``argv[0]`` as a tool and return its exit status; None if it names no tool."""
    if not argv or argv[0] not in TOOLS:
        return None
    name, rest = argv[0], list(argv[1:])
    if name == "migrate":
        from petracache.tools import migrate

        return migrate.main(rest)
    from petracache.tools import backup_cli

    return backup_cli.backup_main(rest) if name == "backup" else backup_cli.restore_main(rest)
