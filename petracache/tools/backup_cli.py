"""``petracache backup`` and ``petracache restore``.

``backup`` asks a running server's admin sidecar for a backup (``POST /backup``, with the
admin token of ``--token-file`` as ``Authorization: Bearer``) and prints its absolute path as
the last line of output, so scripts can take ``tail -n1``. ``restore``
works offline on a data directory (``storage.backup.restore``). Every failure is one line on
stderr (``petracache <command>: <problem>``) and exit status 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import NoReturn

from petracache.admin.token import TokenFileError, load_token
from petracache.storage.backup import BackupError, restore

DEFAULT_ADMIN = "127.0.0.1:9090"  # metrics.listen_addr's default
ADMIN_ENV = "PETRACACHE_METRICS__LISTEN_ADDR"
TOKEN_ENV = "PETRACACHE_METRICS__TOKEN_FILE"  # the server's setting, so one export serves both
BACKUP_TIMEOUT = 3600.0  # seconds: a checkpoint of a large store hard-links, it does not copy
EXIT_FAILED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """A usage error is one line and exit status 2, as the server's own flags."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return EXIT_FAILED


def backup_main(argv: Sequence[str]) -> int:
    """``petracache backup [--admin HOST:PORT] [--token-file FILE]``."""
    prog = "petracache backup"
    parser = _Parser(prog=prog, description="Back up a running petracache (online).")
    parser.add_argument(
        "--admin",
        default=os.environ.get(ADMIN_ENV, DEFAULT_ADMIN),
        metavar="HOST:PORT",
        help=f"the server's admin sidecar (metrics.listen_addr; default {DEFAULT_ADMIN})",
    )
    parser.add_argument(
        "--token-file",
        default=os.environ.get(TOKEN_ENV, ""),
        metavar="FILE",
        help=f"the admin token the server's metrics.token_file holds (default ${TOKEN_ENV})",
    )
    args = parser.parse_args(argv)
    url = f"http://{args.admin}/backup"
    headers = {}
    if args.token_file:
        try:
            headers["Authorization"] = f"Bearer {load_token(args.token_file)}"
        except TokenFileError as exc:
            return _fail(prog, f"--token-file {exc}")
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=BACKUP_TIMEOUT) as reply:
            body = json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            detail = exc.reason
        return _fail(prog, f"{url}: {exc.code} {detail}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return _fail(prog, f"cannot reach the admin sidecar at {args.admin}: {reason}")
    except ValueError:
        return _fail(prog, f"{url}: not a petracache admin sidecar (the reply is not JSON)")
    for old in body.get("removed", []):
        print(f"removed old backup {old}")
    print(f"backup done in {body.get('seconds', 0)} s")
    print(body["path"])
    return 0


def restore_main(argv: Sequence[str]) -> int:
    """``petracache restore BACKUP --db-path DIR [--force]`` (the server must be stopped)."""
    prog = "petracache restore"
    parser = _Parser(prog=prog, description="Restore a backup into a data directory (offline).")
    parser.add_argument("backup", help="a backup directory made by petracache backup")
    parser.add_argument("--db-path", required=True, metavar="DIR", help="the data directory")
    parser.add_argument(
        "--force", action="store_true", help="replace the contents of a non-empty DIR"
    )
    args = parser.parse_args(argv)
    try:
        mark = restore(args.backup, args.db_path, force=args.force)
    except BackupError as exc:
        return _fail(prog, str(exc))
    except OSError as exc:
        return _fail(prog, f"{args.db_path}: {exc.strerror or exc}")
    print(f"restored {os.path.abspath(args.backup)} into {os.path.abspath(args.db_path)}")
    print(f"CAS uniques continue above {mark}")
    return 0
