"""Replay a large write-ahead log in a child process, so the server answers while it runs.

Why: rocksdict holds the GIL for the whole of RocksDB's ``Open``, and ``Open`` replays the
WAL. During a long replay no other thread of the server runs, so the admin sidecar cannot
answer ``/health`` or ``/ready``, and a liveness probe could kill a server that is only
recovering. When the WAL is large enough for that to matter (``CHILD_RECOVERY_BYTES``),
``app.py`` first runs ``python -m petracache.storage.recovery``. The child opens the database with
the same ``Engine`` (so the column families and options are the same), which replays the WAL
and flushes it on close. The server's own open then has almost nothing to replay. If the
child fails for any reason, the server carries on, and its own open reports the real problem.
"""

from __future__ import annotations

import sys

from petracache.config import StorageSettings

# Below this much WAL, RocksDB replays it in tens of milliseconds on this class of machine
# (100 MB took about 0.6 s); a child process (about 0.3 s of interpreter start-up) would
# cost more than the stall it avoids.
CHILD_RECOVERY_BYTES = 16 * 1024 * 1024


def main() -> int:
    """Child entry point: storage settings as JSON on stdin; open, replay, flush, close."""
    from petracache.storage.engine import Engine

    settings = StorageSettings.model_validate_json(sys.stdin.read())
    Engine(settings).close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
