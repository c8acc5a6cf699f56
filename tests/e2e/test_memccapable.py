"""libmemcached's ``memccapable`` conformance suite, ASCII and binary modes, against petracache.

``memccapable -a -h HOST -p PORT`` (ASCII) or without ``-a`` (binary, then ASCII again)
prints one ``<test name> [pass|FAIL|skip]`` line per test and a summary (``All tests
passed`` or ``N of M tests failed``). Every test it runs must pass and none may be skipped.
It flushes the server, so it gets a fresh one.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.harness import PetracacheProcess

pytestmark = pytest.mark.integration

RESULT = re.compile(r"^((?:ascii|binary) \w[\w ]*?)\s*\[(pass|FAIL|skip)\]", re.M)


@pytest.mark.skipif(shutil.which("memccapable") is None, reason="libmemcached-tools missing")
@pytest.mark.parametrize(("mode", "flags"), [("ascii", ["-a"]), ("binary", [])])
def test_memccapable(server: PetracacheProcess, mode: str, flags: list[str]) -> None:
    proc = subprocess.run(
        ["memccapable", *flags, "-h", "127.0.0.1", "-p", str(server.port), "-t", "10"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    results = {name: result for name, result in RESULT.findall(output) if name.startswith(mode)}
    print(output)
    assert len(results) == 27, output  # every test of this mode memccapable has
    assert set(results.values()) == {"pass"}, output
    assert "All tests passed" in output
    assert proc.returncode == 0
