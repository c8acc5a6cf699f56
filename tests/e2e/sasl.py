"""memcached's SASL set-up for the tests that start a real memcached with ``-S``."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def sasl_conf(user: str, password: str) -> Iterator[Path]:
    """A Cyrus SASL directory (sasldb with ``user``, PLAIN only) that a memcached started
    inside the block reads through ``SASL_CONF_PATH`` (restored on leaving); yields the
    directory, which the caller removes once its memcached has stopped.

    memcached runs as nobody under root, so the directory lives in /tmp, readable by all.
    Skips the test when ``saslpasswd2`` (sasl2-bin) is missing.
    """
    saslpasswd2 = shutil.which("saslpasswd2") or "/usr/sbin/saslpasswd2"
    if not Path(saslpasswd2).exists():
        pytest.skip("saslpasswd2 missing (apt-get install sasl2-bin)")
    root = Path(tempfile.mkdtemp(prefix="petracache-sasl-"))
    db = root / "sasldb2"
    (root / "memcached.conf").write_text(f"mech_list: plain\nsasldb_path: {db}\n")
    subprocess.run(
        [saslpasswd2, "-p", "-a", "memcached", "-c", "-f", str(db), user],
        input=password.encode(),
        check=True,
    )
    db.chmod(0o644)
    root.chmod(0o755)
    previous = os.environ.get("SASL_CONF_PATH")
    os.environ["SASL_CONF_PATH"] = str(root)
    try:
        yield root
    finally:
        if previous is None:
            del os.environ["SASL_CONF_PATH"]
        else:
            os.environ["SASL_CONF_PATH"] = previous
