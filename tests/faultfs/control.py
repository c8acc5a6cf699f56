"""The control channel: one JSON object a line over a Unix socket, one JSON answer a line.

Commands (``op``): ``fail`` (``glob``, ``kind``, ``errno`` name, ``times``: add a
``ops.Rule``), ``clear`` (remove every rule), ``stats`` (operation counts, unsynced pages,
open files), ``crash`` (lose everything not durable; refused while files are open).
An answer is ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def _serve_one(conn: socket.socket, handler: Handler) -> None:
    with conn, conn.makefile("rwb") as stream:
        for line in stream:
            try:
                answer = {"ok": True, **handler(json.loads(line))}
            except Exception as exc:
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            stream.write(json.dumps(answer).encode() + b"\n")
            stream.flush()


def serve_commands(path: str, handler: Handler) -> None:
    """Answer commands on the Unix socket ``path`` from daemon threads."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()

    def accept() -> None:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=_serve_one, args=(conn, handler), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def call(path: str, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one command; returns the answer without ``ok``.

    Raises:
        RuntimeError: the file system refused the command.
    """
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    if not answer.pop("ok"):
        raise RuntimeError(f"faultfs {request.get('op')}: {answer['error']}")
    return answer
