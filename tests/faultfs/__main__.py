"""Run the fault-injecting file system: ``python -m tests.faultfs BACKING MOUNTPOINT SOCKET``.

``BACKING/live`` is the tree it shows, ``BACKING/store`` the durable contents of its files;
``SOCKET`` is a Unix socket taking the control commands (``tests.faultfs.control``). It
serves in the foreground until unmounted (``fusermount3 -u MOUNTPOINT``).
"""

from __future__ import annotations

import logging
import os
import sys

from tests.faultfs.control import serve_commands
from tests.faultfs.ops import FaultFUSE, FaultOps


def main(argv: list[str]) -> None:
    backing, mountpoint, socket_path = argv
    live, store = os.path.join(backing, "live"), os.path.join(backing, "store")
    os.makedirs(live, exist_ok=True)
    os.makedirs(store, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="faultfs: %(message)s")
    ops = FaultOps(live, store)
    serve_commands(socket_path, ops.command)
    # One thread serves every request (nothreads): the lock makes it safe either way, and
    # one thread keeps the order of operations exactly the order the kernel sent them.
    FaultFUSE(ops, mountpoint, foreground=True, nothreads=True, fsname="faultfs")


if __name__ == "__main__":
    main(sys.argv[1:])
