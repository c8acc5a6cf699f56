"""Directories that survive a power cut: a created directory's name is durable only once its
parent directory is fsynced.

RocksDB fsyncs the directories it writes files in (the database directory, for its WAL,
SST, MANIFEST and CURRENT files), never the one above: so a ``db_path`` created with a bare
``os.makedirs`` can vanish, whole, in a power cut soon after the first start, with every
write acknowledged under ``durability = "fsync"`` (issue 27; ``tests/e2e/test_power_loss.py``
shows it). The same holds for the backup directory and for a restored database's name.
"""

from __future__ import annotations

import os


def fsync_dir(path: str) -> None:
    """fsync the directory ``path``: the names in it (created, renamed, removed) are durable.

    Raises:
        OSError: it cannot be opened or the fsync failed.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path: str) -> list[str]:
    """``os.makedirs(path, exist_ok=True)`` whose every created directory survives a power
    cut: the parent of each one it creates is fsynced, the top one's last. So is the parent
    of ``path`` itself, always (one cheap fsync): an earlier start may have created ``path``
    without it.

    Returns:
        The directories it created, outermost first.

    Raises:
        OSError: a directory cannot be created, or a parent's fsync failed.
    """
    path = os.path.abspath(path)
    missing: list[str] = []
    probe = path
    while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
        missing.append(probe)
        probe = os.path.dirname(probe)
    os.makedirs(path, exist_ok=True)
    missing.reverse()
    parents = [os.path.dirname(created) for created in missing]
    if not missing:
        parents.append(os.path.dirname(path))
    for parent in reversed(parents):  # innermost first: a name is synced after what it holds
        fsync_dir(parent)
    return missing
