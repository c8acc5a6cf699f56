"""Real binary-protocol clients end to end: pylibmc, SASL, mixed protocols (memccapable's
binary mode is in ``test_memccapable``).

* pylibmc with ``binary=True`` (libmemcached's binary protocol) for every operation it
  has, and with SASL (``username``/``password``) against the server's auth file.
* SASL replies compared with memcached 1.6.18 run with ``-S`` over a Cyrus sasldb holding
  the same user (skipped when ``saslpasswd2``, from sasl2-bin, is missing).
* One item written over binary reads back identically over text (``gets``) and meta (``mg``),
  CAS unique included, and the other way round.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator

import pytest

from tests.binframes import (
    GET,
    GETK,
    NOOP,
    SASL_AUTH,
    SASL_LIST,
    SASL_STEP,
    SET,
    VERSION,
    BinClient,
    Frame,
    req,
    store,
)
from tests.e2e.sasl import sasl_conf
from tests.harness import MemcachedProcess, PetracacheProcess, RawClient

pytestmark = pytest.mark.integration

USER, PASSWORD = "alice", "s3cret"


def test_pylibmc_binary(shared_server: PetracacheProcess) -> None:
    pylibmc = pytest.importorskip("pylibmc")
    mc = pylibmc.Client([f"127.0.0.1:{shared_server.port}"], binary=True, behaviors={"cas": True})
    assert mc.set("pl:a", "hello")
    assert mc.get("pl:a") == "hello"
    assert mc.set("pl:n", 5)
    assert mc.incr("pl:n", 3) == 8
    assert mc.decr("pl:n", 10) == 0
    assert mc.get_multi(["pl:a", "pl:n", "pl:none"]) == {"pl:a": "hello", "pl:n": 0}
    assert not mc.add("pl:a", "x")
    assert mc.replace("pl:a", "y")
    assert mc.append("pl:a", "Z")
    assert mc.prepend("pl:a", "A")
    value, cas = mc.gets("pl:a")
    assert value == "AyZ"
    assert mc.cas("pl:a", "new", cas)
    assert not mc.cas("pl:a", "newer", cas)
    assert mc.get("pl:a") == "new"
    assert mc.set("pl:bytes", b"\x00\xff" * 1000)
    assert mc.get("pl:bytes") == b"\x00\xff" * 1000
    assert mc.set_multi({"pl:m1": 1, "pl:m2": [1, 2]}) == []
    assert mc.get_multi(["pl:m1", "pl:m2"]) == {"pl:m1": 1, "pl:m2": [1, 2]}
    assert mc.touch("pl:m1", 100)
    assert mc.delete("pl:a")
    assert mc.get("pl:a") is None
    assert not mc.delete("pl:a")
    stats = {_text(k): _text(v) for k, v in mc.get_stats()[0][1].items()}
    assert stats["version"].startswith("1.6.18")
    assert int(stats["cmd_get"]) > 0


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PetracacheProcess]:
    root = tmp_path_factory.mktemp("pc-sasl")
    authfile = root / "users"
    authfile.write_text(f"{USER}:{PASSWORD}\n")
    config = f'[server]\nauth_file = "{authfile}"\n'
    with PetracacheProcess(root, config=config) as server:
        yield server


SASL_CLIENT = """
import json, sys, pylibmc
port, user, password = sys.argv[1:]
address = ["127.0.0.1:" + port]
out = {}
mc = pylibmc.Client(address, binary=True, username=user, password=password)
out["set"] = mc.set("sasl:a", "secret value")
out["get"] = mc.get("sasl:a")
for name, kw in (("wrong", {"username": user, "password": "nope"}), ("anonymous", {})):
    try:
        got = pylibmc.Client(address, binary=True, **kw).get("sasl:a")
    except pylibmc.Error:
        got = None
    out[name] = "served" if got == "secret value" else "refused"
print(json.dumps(out))
"""


def _sasl_python() -> str:
    """A Python whose pylibmc speaks SASL: Debian's python3-pylibmc. (A pip-built pylibmc
    against Debian's libmemcached 1.1.4 fails every SASL start client-side with "FAILED TO
    SEND AUTHENTICATION TO SERVER", against memcached -S too.)"""
    python = "/usr/bin/python3"
    probe = subprocess.run(
        [python, "-c", "import pylibmc; assert pylibmc.support_sasl"], capture_output=True
    )
    if probe.returncode:
        pytest.skip("Debian's python3-pylibmc is missing (apt-get install python3-pylibmc)")
    return python


def test_pylibmc_sasl(auth_server: PetracacheProcess) -> None:
    proc = subprocess.run(
        [_sasl_python(), "-c", SASL_CLIENT, str(auth_server.port), USER, PASSWORD],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "set": True,
        "get": "secret value",
        "wrong": "refused",
        "anonymous": "refused",
    }
    # The text protocol still authenticates with memcached's -Y token, on the same users.
    text = auth_server.client()
    token = f"{USER} {PASSWORD}".encode()
    assert text.call(b"set x 0 0 %d\r\n%s\r\n" % (len(token), token)) == b"STORED\r\n"
    assert re.fullmatch(
        rb"VALUE sasl:a \d+ 12\r\nsecret value\r\nEND\r\n", text.call(b"get sasl:a\r\n")
    )
    stats = text.call(b"stats\r\n")
    assert int(re.search(rb"STAT auth_cmds (\d+)", stats)[1]) >= 3  # type: ignore[index]
    assert int(re.search(rb"STAT auth_errors (\d+)", stats)[1]) >= 1  # type: ignore[index]
    text.close()


SASL_CASES: dict[str, bytes] = {
    "unauthenticated get closes": req(NOOP) + req(GET, b"k"),
    "version needs no auth": req(VERSION),
    "list mechanisms": req(SASL_LIST) + req(NOOP),
    "wrong password": req(SASL_AUTH, b"PLAIN", value=b"\0alice\0wrong") + req(NOOP),
    "good password": req(SASL_AUTH, b"PLAIN", value=b"\0alice\0s3cret")
    + req(NOOP)
    + req(GET, b"k"),
    "step without auth": req(SASL_STEP, b"PLAIN", value=b"\0alice\0s3cret") + req(NOOP),
    "step after auth drops it": req(SASL_AUTH, b"PLAIN", value=b"\0alice\0s3cret")
    + req(SASL_STEP, b"PLAIN", value=b"\0alice\0s3cret")
    + req(NOOP),
    "unknown mechanism": req(SASL_AUTH, b"CRAM-MD5") + req(NOOP),
    "mechanism too long": req(SASL_AUTH, b"X" * 40, value=b"abc") + req(NOOP),
    "authzid is the user": req(SASL_AUTH, b"PLAIN", value=b"alice\0alice\0s3cret") + req(NOOP),
    "authzid is another user": req(SASL_AUTH, b"PLAIN", value=b"bob\0alice\0s3cret") + req(NOOP),
    "no separators": req(SASL_AUTH, b"PLAIN", value=b"alices3cret") + req(NOOP),
    "empty start continues": req(SASL_AUTH, b"PLAIN") + req(NOOP),
    "unknown user": req(SASL_AUTH, b"PLAIN", value=b"\0mallory\0s3cret") + req(NOOP),
    "auth then set": req(SASL_AUTH, b"PLAIN", value=b"\0alice\0s3cret")
    + store(SET, b"k", b"v")
    + req(GETK, b"k"),
}


@pytest.fixture(scope="module")
def sasl_memcached() -> Iterator[MemcachedProcess]:
    with sasl_conf(USER, PASSWORD) as root:
        proc = MemcachedProcess(["-S"])
    yield proc
    proc.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("name", list(SASL_CASES))
def test_sasl_replies_match_memcached(
    sasl_memcached: MemcachedProcess, auth_server: PetracacheProcess, name: str
) -> None:
    replies: list[list[Frame]] = []
    for port in (sasl_memcached.port, auth_server.port):
        client = BinClient(port)
        frames = client.normalised(client.exchange(SASL_CASES[name]))
        replies.append(
            frames + ([Frame(-1, -1, b"", b"", b"<closed>", 0, 0)] if client.closed else [])
        )
        client.close()
    mc, pc = replies
    assert pc == mc


def test_mixed_protocols(shared_server: PetracacheProcess) -> None:
    """Binary set, text gets and meta mg read the same item; text set reads over binary."""
    binary = BinClient(shared_server.port)
    [stored] = binary.exchange(store(SET, b"mix:a", b"value", 123))
    assert stored.status == 0
    assert stored.cas
    text = RawClient(shared_server.port)
    assert text.call(b"gets mix:a\r\n") == (
        b"VALUE mix:a 123 5 %d\r\nvalue\r\nEND\r\n" % stored.cas
    )
    assert text.call(b"mg mix:a v f c s\r\n") == b"VA 5 f123 c%d s5\r\nvalue\r\n" % stored.cas
    assert text.call(b"set mix:b 7 0 3\r\nabc\r\n") == b"STORED\r\n"
    cas = int(text.call(b"gets mix:b\r\n").split(b"\r\n")[0].split()[-1])
    [hit] = binary.exchange(req(GETK, b"mix:b"))
    assert hit == Frame(GETK, 0, struct.pack(">I", 7), b"mix:b", b"abc", 0, cas)
    assert text.call(b"incr mix:n 1\r\n") == b"NOT_FOUND\r\n"
    binary.close()
    text.close()


def test_pylibmc_binary_stat_groups(server: PetracacheProcess, memcached: MemcachedProcess) -> None:
    """pylibmc's ``get_stats("items")``/``("slabs")``/``("sizes")`` in binary mode (dalli's
    admin test asks the same). libmemcached keeps only the general statistics' names in its
    reply struct, so what it shows is the same for both servers; what this checks is that
    it reads the packets to their terminator and the connection stays in step (the names
    and figures themselves: ``test_binary_differential``)."""
    pylibmc = pytest.importorskip("pylibmc")
    seen = []
    for port, key in ((memcached.port, "plstat:mc"), (server.port, "plstat:pc")):
        mc = pylibmc.Client([f"127.0.0.1:{port}"], binary=True)
        assert mc.set(key, "v")
        groups = {group: mc.get_stats(group)[0][1] for group in ("items", "slabs", "sizes")}
        assert mc.get(key) == "v"  # the connection is still in step
        seen.append({group: sorted(stats) for group, stats in groups.items()})
        mc.disconnect_all()
    assert seen[1] == seen[0]
