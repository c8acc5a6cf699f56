"""libmemcached's ``memccapable`` conformance suite, ASCII mode, against petracache.

``memccapable -a -h HOST -p PORT`` prints one ``<test name> [pass|FAIL|skip]`` line per test
and a summary (``All tests passed`` or ``N of M tests failed``). Every test it runs must pass
and none may be skipped. It flushes the server, so it gets a fresh one.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.harness import PetracacheProcess

pytestmark = pytest.mark.integration

RESULT = re.compile(r"^(ascii \w[\w ]*?)\s*\[(pass|FAIL|skip)\]", re.M)


@pytest.mark.skipif(shutil.which("memccapable") is None, reason="libmemcached-tools missing")
def test_memccapable_ascii(server: PetracacheProcess) -> None:
    proc = subprocess.run(
        ["memccapable", "-a", "-h", "127.0.0.1", "-p", str(server.port), "-t", "10"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    results = dict(RESULT.findall(output))
    print(output)
    assert len(results) == 27, output  # every ASCII test memccapable has
    assert set(results.values()) == {"pass"}, output
    assert "All tests passed" in output
    assert proc.returncode == 0
