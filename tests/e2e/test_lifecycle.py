"""metadump, migrate, backup and restore against real petracache and memcached processes.

memcached 1.6.18 is the reference for metadump (same items on both, lines compared field by
field with times and CAS normalised) and the migration source; petracache is the target,
and also the source when resharding. Backups are taken under a write load, restored
offline into a new directory, and served by a new process.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from petracache.tools import migrate as migrate_mod
from tests.harness import (
    MemcachedProcess,
    PetracacheProcess,
    RawClient,
    free_port,
    unread_bytes,
    wait_until,
)

pytestmark = pytest.mark.integration

ITEM_MAX = 1024 * 1024
DAY = 86400


def _tool(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "petracache", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _largest_value(key: bytes, flags: int) -> int:
    return ITEM_MAX - 48 - len(key) - 1 - (4 if flags else 0) - 2 - 8


def _dump(client: RawClient, command: bytes = b"lru_crawler metadump all") -> list[bytes]:
    client.send(command + b"\r\n")
    body = client.read_until(b"END\r\n")
    return body[: -len(b"END\r\n")].splitlines()


def _set_all(client: RawClient, items: dict[bytes, tuple[int, int, bytes]]) -> None:
    for key, (flags, exptime, data) in items.items():
        client.send(b"set %b %d %d %d\r\n%b\r\n" % (key, flags, exptime, len(data), data))
        assert client.read_line() == b"STORED\r\n", key


def _mg(client: RawClient, key: bytes) -> tuple[int, int, bytes] | None:
    """(flags, remaining ttl, value) or None."""
    client.send(b"mg %b f t v b\r\n" % base64.b64encode(key))
    header = client.read_line().split()
    if header[0] == b"EN":
        return None
    size = int(header[1])
    fields = {t[:1]: int(t[1:]) for t in header[2:]}
    data = client.read_exact(size + 2)[:-2]
    return fields[b"f"], fields[b"t"], data


def _sample(prefix: bytes) -> dict[bytes, tuple[int, int, bytes]]:
    now = int(time.time())
    return {
        prefix + b"plain": (0, 0, b"value"),
        prefix + b"flags": (4294967295, 0, b"f"),
        prefix + b"empty": (7, 0, b""),
        prefix + b"relative": (1, 1000, b"r" * 100),
        prefix + b"absolute": (2, now + 40 * DAY, b"a" * 1000),
        prefix + b"pct%41~.-_": (3, 0, b"needs url encoding"),
        prefix + "ключ".encode(): (0, 0, b"utf-8 key"),
        prefix + b"big": (9, 0, b"x" * _largest_value(prefix + b"big", 9)),
        prefix + b"mid": (0, 0, b"m" * 5000),
    }


@pytest.fixture
def memcached_fresh() -> Iterator[MemcachedProcess]:
    proc = MemcachedProcess()
    yield proc
    proc.stop()


# -- metadump ------------------------------------------------------------------------------


def _normalise(lines: list[bytes], prefix: bytes) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """key -> [(field, value)] in line order; times banded, CAS by order of appearance."""
    now = time.time()
    out: dict[bytes, list[tuple[bytes, bytes]]] = {}
    for line in lines:
        fields = [(part.partition(b"=")[0], part.partition(b"=")[2]) for part in line.split(b" ")]
        values = dict(fields)
        if not urllib.parse.unquote_to_bytes(values[b"key"]).startswith(prefix):
            continue
        norm: list[tuple[bytes, bytes]] = []
        for name, value in fields:
            if name == b"exp" and value != b"-1":
                value = b"in %dd" % round((int(value) - now) / DAY)
            elif name == b"la":
                assert abs(int(value) - now) < 120, line
                value = b"recent"
            elif name == b"cas":
                value = b"n"
            norm.append((name, value))
        out[values[b"key"]] = norm
    return out


def test_metadump_matches_memcached(
    memcached_fresh: MemcachedProcess, shared_server: PetracacheProcess
) -> None:
    prefix = b"md:"
    items = _sample(prefix)
    items[prefix + b"gone"] = (0, -1, b"expired at once: never listed")
    for proc in (memcached_fresh, shared_server):
        client = proc.client()
        _set_all(client, items)
        client.send(b"get %b\r\n" % (prefix + b"plain"))  # fetch=yes
        client.read_until(b"END\r\n")
    reference = _normalise(_dump(memcached_fresh.client()), prefix)
    ours = _normalise(_dump(shared_server.client()), prefix)
    assert len(reference) == len(items) - 1
    assert ours == reference
    for command in (b"lru_crawler metadump hash", b"lru_crawler metadump 1,39"):
        assert _normalise(_dump(shared_server.client(), command), prefix) == _normalise(
            _dump(memcached_fresh.client(), command), prefix
        )


PIPELINED_DUMPS = [
    b"mg md:pipe v\r\nlru_crawler metadump all\r\n",  # the case
    b"version\r\nlru_crawler metadump all\r\n",
    b"set md:pipe2 0 0 1 noreply\r\n1\r\nlru_crawler metadump all\r\n",
    b"version\r\nlru_crawler metadump bogus\r\n",  # refused before the class list is read
    b"version\r\nlru_crawler metadump 1,2\r\nversion\r\n",  # later requests are answered
    b"get md:pipe\r\nmn\r\nbogus\r\nlru_crawler metadump 99\r\n",
]


@pytest.mark.parametrize("data", PIPELINED_DUMPS, ids=range(len(PIPELINED_DUMPS)))
def test_metadump_behind_other_commands_is_refused_as_memcached_does(
    memcached: MemcachedProcess, shared_server: PetracacheProcess, data: bytes
) -> None:
    """memcached answers ``ERROR cannot pipeline other commands before metadump`` when
    the dump comes in one read behind requests whose replies are still held; the same
    bytes in one write get the same bytes back from both servers."""
    replies = []
    for proc in (memcached, shared_server):
        client = proc.client()
        client.send(data)
        client.send(b"version\r\n")  # a fence: every reply to ``data`` comes before it
        out = b""
        while out.count(b"VERSION ") <= data.count(b"version\r\n"):
            out += client.read_line()
        replies.append(re.sub(rb"VERSION [^\r]*", b"VERSION X", out))
        client.close()
    assert b"ERROR cannot pipeline other commands before metadump\r\n" in replies[0]
    assert replies[1] == replies[0]


def test_metadump_streams_while_other_clients_are_served(server: PetracacheProcess) -> None:
    writer = server.client()
    count = 30_000
    for start in range(0, count, 1000):
        writer.send(
            b"".join(
                b"set s:%06d 0 0 64 noreply\r\n%b\r\n" % (i, b"v" * 64)
                for i in range(start, start + 1000)
            )
        )
    assert writer.call(b"") == b""
    dumper = server.client(timeout=30)
    dumper.send(b"lru_crawler metadump all\r\n")  # not read yet: the server must wait on us
    wait_until(lambda: unread_bytes(dumper.sock), what="the dump streaming")
    other = server.client()
    started = time.perf_counter()
    assert other.call(b"get s:000001\r\n").startswith(b"VALUE s:000001 0 64\r\n")
    assert time.perf_counter() - started < 1.0
    lines = dumper.read_until(b"END\r\n").count(b"\n")
    assert lines == count + 1


# -- migrate -------------------------------------------------------------------------------


def _assert_copied(target: RawClient, items: dict[bytes, tuple[int, int, bytes]]) -> None:
    now = time.time()
    for key, (flags, exptime, data) in items.items():
        got = _mg(target, key)
        assert got is not None, key
        assert (got[0], got[2]) == (flags, data), key
        expected = -1 if exptime == 0 else exptime - now if exptime > 30 * DAY else exptime
        assert abs(got[1] - expected) <= 3, (key, got[1], expected)


def test_migrate_from_memcached(
    memcached_fresh: MemcachedProcess, server: PetracacheProcess
) -> None:
    items = _sample(b"mig:")
    items.update({b"mig:n%04d" % i: (i, 0, b"%d" % i) for i in range(500)})
    _set_all(memcached_fresh.client(), items)
    done = _tool(
        "migrate", "--from", f"127.0.0.1:{memcached_fresh.port}", "--to", f"127.0.0.1:{server.port}"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == (
        f"copied {len(items)}, skipped 0 (expired 0, vanished 0, present 0), failed 0"
    )
    _assert_copied(server.client(), items)
    again = _tool(
        "migrate", "--from", f"127.0.0.1:{memcached_fresh.port}", "--to", f"127.0.0.1:{server.port}"
    )
    assert again.returncode == 0
    assert f"present {len(items)}), failed 0" in again.stdout


def test_migrate_skips_expired_and_vanished_and_never_overwrites_a_racing_writer(
    memcached_fresh: MemcachedProcess, server: PetracacheProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = memcached_fresh.client()
    items = {b"keep:%03d" % i: (0, 0, b"old") for i in range(200)}
    items.update({b"short:%03d" % i: (0, 2, b"dies") for i in range(50)})
    items.update({b"del:%03d" % i: (0, 0, b"deleted") for i in range(30)})
    _set_all(source, items)
    short = b"get %b\r\n" % b" ".join(key for key in items if key.startswith(b"short:"))
    real_dump = migrate_mod.spool_dump
    stop = threading.Event()

    def race() -> None:  # clients already writing to the target during the copy
        client = server.client()
        i = 0
        while not stop.is_set():
            client.send(b"set keep:%03d 0 0 3\r\nnew\r\n" % (i % 100))
            client.read_line()
            i += 1

    async def slow_dump(src: object, prefix: bytes, spool: object) -> int:
        count = await real_dump(src, prefix, spool)  # type: ignore[arg-type]
        for key in items:
            if key.startswith(b"del:"):
                source.send(b"delete %b\r\n" % key)
                source.read_line()
        # The short-lived items expire between the dump and the copy.
        await trio.to_thread.run_sync(
            lambda: wait_until(lambda: source.call(short) == b"END\r\n", what="short: expired")
        )
        return count

    monkeypatch.setattr(migrate_mod, "spool_dump", slow_dump)
    racer = threading.Thread(target=race)
    racer.start()
    try:
        opts = migrate_mod.Options(
            f"127.0.0.1:{memcached_fresh.port}", f"127.0.0.1:{server.port}", batch=7
        )
        counts = trio.run(migrate_mod.migrate, opts, False)
    finally:
        stop.set()
        racer.join()
    assert (counts.expired, counts.vanished, counts.failed) == (50, 30, 0)
    assert counts.copied + counts.present == 200
    target = server.client()
    for i in range(100):  # the writer's value always survives
        assert _mg(target, b"keep:%03d" % i) == (0, -1, b"new")
    for i in range(100, 200):
        assert _mg(target, b"keep:%03d" % i) == (0, -1, b"old")
    assert _mg(target, b"short:000") is None
    assert _mg(target, b"del:000") is None


def test_migrate_petracache_to_petracache_by_prefix(tmp_path: Path) -> None:
    with (
        PetracacheProcess(tmp_path / "a") as source,
        PetracacheProcess(tmp_path / "b") as target,
    ):
        items = _sample(b"shard1:")
        others = {b"shard2:%d" % i: (0, 0, b"x") for i in range(10)}
        _set_all(source.client(), items | others)
        _set_all(target.client(), {b"shard1:plain": (0, 0, b"target's own")})
        done = _tool(
            "migrate", "--from", f"127.0.0.1:{source.port}", "--to", f"127.0.0.1:{target.port}",
            "--prefix", "shard1:", "--overwrite", "--concurrency", "3",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"copied {len(items)}, skipped 0" in done.stdout
        _assert_copied(target.client(), items)
        assert _mg(target.client(), b"shard2:1") is None


def test_migrate_bad_input_is_one_line_and_nonzero(server: PetracacheProcess) -> None:
    dead = f"127.0.0.1:{free_port()}"
    live = f"127.0.0.1:{server.port}"
    admin = server.admin_url().removeprefix("http://")
    cases = [
        (["--from", dead, "--to", live], "cannot connect"),
        (["--from", live, "--to", dead], "cannot connect"),
        (["--from", admin, "--to", live, "--timeout", "1"], "is it a memcached server"),
        (["--from", "nonsense", "--to", live], "not HOST:PORT"),
    ]
    for args, message in cases:
        done = _tool("migrate", *args)
        assert done.returncode == 1, (args, done)
        assert done.stdout == ""
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert message in done.stderr
    assert _tool("migrate", "--from", live).returncode == 2


# -- backup and restore --------------------------------------------------------------------


def _writer(port: int, acked: dict[bytes, bytes], stop: threading.Event) -> None:
    client = RawClient(port)
    i = 0
    while not stop.is_set():
        key, value = b"load:%06d" % i, b"%d" % (i * 7)
        client.send(b"set %b 0 0 %d\r\n%b\r\n" % (key, len(value), value))
        assert client.read_line() == b"STORED\r\n"
        acked[key] = value
        i += 1


def _token(tmp_path: Path) -> tuple[dict[str, str], str]:
    """An admin token file: the server's environment naming it, and its path."""
    path = tmp_path / "admin.token"
    path.write_text("b4ckup-t0ken\n")
    return {"PETRACACHE_METRICS__TOKEN_FILE": str(path)}, str(path)


def test_backup_under_load_then_restore_serves_the_backup(tmp_path: Path) -> None:
    env, token = _token(tmp_path)
    with PetracacheProcess(tmp_path / "live", env=env) as live:
        client = live.client()
        _set_all(client, {b"seed": (1, 0, b"s")})
        acked: dict[bytes, bytes] = {}
        stop = threading.Event()
        writer = threading.Thread(target=_writer, args=(live.port, acked, stop))
        writer.start()
        try:
            wait_until(lambda: len(acked) >= 1000, what="1,000 writes under way")
            before = dict(acked)  # every write acknowledged before the backup was asked for
            admin = live.admin_url().removeprefix("http://")
            done = _tool("backup", "--admin", admin, "--token-file", token)
            after = len(acked)
            wait_until(lambda: len(acked) >= after + 100, what="writes after the backup")
        finally:
            stop.set()
            writer.join()
        assert done.returncode == 0, done.stderr
        backup = Path(done.stdout.strip().splitlines()[-1])
        assert backup.is_absolute()
        assert backup.parent == Path(f"{live.db_path}.backups")
        client.send(b"gets seed\r\n")
        cas_live = int(client.read_line().split()[4])
        client.read_until(b"END\r\n")
        refused = _tool("restore", str(backup), "--db-path", str(live.db_path), "--force")
        assert refused.returncode == 1
        assert "in use by a running petracache" in refused.stderr
    assert len(before) > 100
    restored_dir = tmp_path / "restored" / "db"
    done = _tool("restore", str(backup), "--db-path", str(restored_dir))
    assert done.returncode == 0, done.stderr
    with PetracacheProcess(tmp_path / "restored") as restored:
        client = restored.client()
        for key, value in before.items():
            client.send(b"get %b\r\n" % key)
            assert client.read_until(b"END\r\n") == b"VALUE %b 0 %d\r\n%b\r\nEND\r\n" % (
                key, len(value), value,
            )  # fmt: skip
        lines = _dump(client)
        keys = {urllib.parse.unquote_to_bytes(line.split()[0][4:]) for line in lines}
        assert set(before) | {b"seed"} <= keys <= set(acked) | {b"seed"}
        client.send(b"set fresh 0 0 1\r\nx\r\ngets fresh\r\n")
        client.read_line()
        assert int(client.read_line().split()[4]) > cas_live  # no CAS is handed out twice


def test_backup_needs_the_admin_token(tmp_path: Path, server: PetracacheProcess) -> None:
    """POST /backup needs the token of metrics.token_file; without one configured it is off."""
    off = _tool("backup", "--admin", server.admin_url().removeprefix("http://"))
    assert off.returncode == 1
    assert "403 POST /backup is off: the server has no metrics.token_file" in off.stderr
    env, token = _token(tmp_path)
    with PetracacheProcess(tmp_path / "guarded", env=env) as guarded:
        admin = guarded.admin_url().removeprefix("http://")
        missing = _tool("backup", "--admin", admin)
        assert missing.returncode == 1
        assert ": 401 POST /backup needs an Authorization: Bearer <token> header" in missing.stderr
        wrong_path = tmp_path / "wrong.token"
        wrong_path.write_text("guess")
        wrong = _tool("backup", "--admin", admin, "--token-file", str(wrong_path))
        assert wrong.returncode == 1
        assert ": 403 POST /backup: wrong token" in wrong.stderr
        unreadable = _tool("backup", "--admin", admin, "--token-file", str(tmp_path / "nope"))
        assert unreadable.returncode == 1
        assert "--token-file" in unreadable.stderr
        assert not list(guarded.db_path.parent.glob("*.backups/*"))
        made = _tool("backup", "--admin", admin, "--token-file", token)
        assert made.returncode == 0, made.stderr
        assert Path(made.stdout.splitlines()[-1]).is_dir()
        # The read-only routes stay open.
        for route in ("/health", "/metrics"):
            with urllib.request.urlopen(guarded.admin_url() + route, timeout=10) as reply:
                assert reply.status == 200


def test_a_bad_token_file_stops_the_start(tmp_path: Path) -> None:
    env = {"PETRACACHE_METRICS__TOKEN_FILE": str(tmp_path / "missing")}
    with pytest.raises(RuntimeError, match=r"metrics\.token_file: .*missing: No such file"):
        PetracacheProcess(tmp_path / "pc", env=env).start()


def test_backup_and_restore_bad_input(tmp_path: Path) -> None:
    env, token = _token(tmp_path)
    server = PetracacheProcess(tmp_path / "pc", env=env).start()
    try:
        _backup_and_restore_bad_input(tmp_path, server, token)
    finally:
        server.stop()


def _backup_and_restore_bad_input(tmp_path: Path, server: PetracacheProcess, token: str) -> None:
    dead = _tool("backup", "--admin", f"127.0.0.1:{free_port()}")
    assert dead.returncode == 1
    assert "cannot reach the admin sidecar" in dead.stderr
    wrong = _tool("backup", "--admin", f"127.0.0.1:{server.port}")
    assert wrong.returncode == 1
    assert len(wrong.stderr.splitlines()) == 1
    not_backup = _tool("restore", str(tmp_path), "--db-path", str(tmp_path / "t"))
    assert not_backup.returncode == 1
    assert not_backup.stderr.splitlines() == [
        f"petracache restore: {tmp_path}: not a petracache backup (no PETRACACHE_BACKUP.json)"
    ]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    made = _tool(
        "backup", "--admin", server.admin_url().removeprefix("http://"), "--token-file", token
    )
    assert made.returncode == 0, made.stderr
    full = _tool("restore", made.stdout.splitlines()[-1], "--db-path", str(tmp_path / "full"))
    assert full.returncode == 1
    assert "not empty" in full.stderr
    assert (tmp_path / "full" / "x").read_text() == "x"
    assert _tool("restore", "--db-path", "x").returncode == 2
