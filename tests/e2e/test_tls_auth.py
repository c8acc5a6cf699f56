"""TLS on the data port and memcached-style authentication, with real clients.

Certificates are generated here (``cryptography``): a CA, a server certificate for
127.0.0.1 and a client certificate, both signed by the CA. Authentication replies are
compared byte for byte with Debian's memcached 1.6 started with ``-Y authfile``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pymemcache.client.base import Client

from tests.harness import MemcachedProcess, PetracacheProcess, RawClient

USERS = "alice:s3cret\nbob:hunter2\n"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _issue(
    subject: str,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey | None,
    *,
    ca: bool = False,
    ip: str | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return cert, key


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Path:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = _issue("petracache test CA", None, None, ca=True)
    server_cert, server_key = _issue("127.0.0.1", ca_cert.subject, ca_key, ip="127.0.0.1")
    client_cert, client_key = _issue("client", ca_cert.subject, ca_key)
    _write(d / "ca.pem", ca_cert, ca_key)
    _write(d / "server.pem", server_cert, server_key)
    _write(d / "client.pem", client_cert, client_key)
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")


def tls_config(pki: Pki, *, require_client_cert: bool = False) -> str:
    lines = [
        "[server]",
        f'tls_cert_file = "{pki.server_cert}"',
        f'tls_key_file = "{pki.server_key}"',
    ]
    if require_client_cert:
        lines.append(f'tls_ca_file = "{pki.ca}"')
    return "\n".join(lines) + "\n"


def client_context(pki: Pki, *, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if with_cert:
        context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return context


# -- TLS --------------------------------------------------------------------------------------


def test_tls_with_pymemcache(tmp_path: Path, pki: Pki) -> None:
    with PetracacheProcess(tmp_path / "pc", config=tls_config(pki)) as server:
        client = Client(("127.0.0.1", server.port), tls_context=client_context(pki), timeout=10)
        assert client.set("greeting", b"hello over tls", expire=0)
        assert client.get("greeting") == b"hello over tls"
        _value, cas = client.gets("greeting")
        assert client.cas("greeting", b"swapped", cas)
        assert client.get("greeting") == b"swapped"
        client.set("n", b"41")
        assert client.incr("n", 1) == 42
        big = os.urandom(900_000)
        client.set_many({f"big:{i}": big for i in range(5)})
        assert client.get_many([f"big:{i}" for i in range(5)]) == {
            f"big:{i}": big for i in range(5)
        }
        client.close()


def test_tls_port_refuses_plaintext_and_survives_it(tmp_path: Path, pki: Pki) -> None:
    with PetracacheProcess(tmp_path / "pc", config=tls_config(pki)) as server:
        plain = RawClient(server.port, timeout=5)
        plain.send(b"set k 0 0 1\r\nx\r\nget k\r\n")
        assert plain.is_closed(wait=5)
        assert b"STORED" not in plain.buf
        # A TLS client that gives up mid-handshake, then a good one.
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"\x16\x03\x01\x00\xff\x01")
        sock.close()
        with (
            socket.create_connection(("127.0.0.1", server.port)) as raw,
            client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"set k 0 0 1\r\nx\r\nget k\r\n")
            got = b""
            while not got.endswith(b"END\r\n"):
                got += tls.recv(4096)
            assert got == b"STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n"
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_tls_client_certificate_required(tmp_path: Path, pki: Pki) -> None:
    config = tls_config(pki, require_client_cert=True)
    with PetracacheProcess(tmp_path / "pc", config=config) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        with pytest.raises((ssl.SSLError, ConnectionError)):  # noqa: PT012
            tls = client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1")
            tls.sendall(b"version\r\n")  # TLS 1.3 reports the refusal on first use
            if not tls.recv(100):
                raise ConnectionError("closed")
        raw.close()
        good = Client(
            ("127.0.0.1", server.port),
            tls_context=client_context(pki, with_cert=True),
            timeout=10,
        )
        assert good.set("k", b"v")
        assert good.get("k") == b"v"
        good.close()


def test_bad_tls_configuration_stops_start_up(tmp_path: Path, pki: Pki) -> None:
    config = f'[server]\ntls_cert_file = "{pki.server_cert}"\n'
    server = PetracacheProcess(tmp_path / "pc", config=config)
    with pytest.raises(RuntimeError, match="tls_key_file"):
        server.start()
    assert server.proc is not None
    assert server.proc.wait(10) != 0


# -- authentication ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authfile() -> Iterator[Path]:
    # memcached drops privileges to nobody: the file must be world-readable.
    d = Path(tempfile.mkdtemp(prefix="petracache-auth-"))
    d.chmod(0o755)
    path = d / "authfile"
    path.write_text(USERS)
    path.chmod(0o644)
    yield path
    path.unlink()
    d.rmdir()


@pytest.fixture(scope="module")
def auth_pair(
    tmp_path_factory: pytest.TempPathFactory, authfile: Path
) -> Iterator[tuple[PetracacheProcess, MemcachedProcess]]:
    config = f'[server]\nauth_file = "{authfile}"\n'
    with PetracacheProcess(tmp_path_factory.mktemp("pc-auth"), config=config) as server:
        reference = MemcachedProcess(["-Y", str(authfile)])
        try:
            yield server, reference
        finally:
            reference.stop()


def converse(port: int, data: bytes) -> tuple[bytes, bool]:
    """Send ``data`` on a new connection; return everything received and whether it closed.

    memcached answers the unauthenticated commands of one read with the last reply only
    (``server.auth``); one ``send`` of a short transcript arrives as one read on loopback.
    """
    client = RawClient(port, timeout=5)
    client.send(data)
    closed = client.is_closed(wait=0.3)
    client.close()
    return client.buf, closed


AUTH_TRANSCRIPTS = [
    b"get foo\r\n",
    b"version\r\n",
    b"set foo 0 0\r\n",
    b"set foo 0 0 x\r\n",
    b"add foo 0 0 12\r\nalice s3cret\r\n",
    b"set foo 0 0 5\r\nalice\r\n",
    b"set foo 0 0 12\r\nalice wrong!\r\n",
    b"set foo 0 0 12\r\nmallory evil\r\n",
    b"set foo 0 0 12\r\nalice s3cretXX",
    b"set foo 0 0 12\r\nalice s3cret\r\nset a 0 0 1\r\nx\r\nget a\r\n",
    b"set foo 1 2 13\r\nalice  s3cret\r\nget nothing\r\n",
    b"set  x  0  0  12 \r\nbob hunter2 \r\nversionx\r\n",
    b"get a\r\nset foo 0 0 11\r\nbob hunter2\r\nget a\r\n",
    b"set foo 0 0 12\r\nalice wrong!\r\nset foo 0 0 12\r\nalice s3cret\r\ndelete nope\r\n",
    b"x" * 1500,
    b"x" * 2048,
    b"x" * 2049,
    b"set foo 0 0 12\r\n" + b"y" * 3000,
    b"get " + b"k" * 3000,
    b"\r\n",
    b"set foo 0 0 4294967296\r\nalice s3cret\r\n",
]


@pytest.mark.parametrize("transcript", AUTH_TRANSCRIPTS)
def test_auth_replies_match_memcached(
    auth_pair: tuple[PetracacheProcess, MemcachedProcess], transcript: bytes
) -> None:
    server, reference = auth_pair
    with ThreadPoolExecutor(2) as pool:
        ours, theirs = pool.map(converse, [server.port, reference.port], [transcript] * 2)
    assert ours == theirs


def test_auth_with_pymemcache(auth_pair: tuple[PetracacheProcess, MemcachedProcess]) -> None:
    server, _ = auth_pair
    client = Client(("127.0.0.1", server.port), timeout=5)
    assert client.set("auth", b"bob hunter2", noreply=False)  # the credentials set
    assert client.set("real", b"data")
    assert client.get("real") == b"data"
    client.close()
    stranger = Client(("127.0.0.1", server.port), timeout=5)
    with pytest.raises(Exception, match="unauthenticated"):
        stranger.get("real")
    stranger.close()


def test_auth_and_tls_together(tmp_path: Path, pki: Pki, authfile: Path) -> None:
    config = tls_config(pki) + f'auth_file = "{authfile}"\n'
    with PetracacheProcess(tmp_path / "pc", config=config) as server:
        client = Client(("127.0.0.1", server.port), tls_context=client_context(pki), timeout=10)
        assert client.set("auth", b"alice s3cret", noreply=False)
        assert client.set("k", b"v")
        assert client.get("k") == b"v"
        client.close()


def test_auth_file_flag_like_memcached(tmp_path: Path, authfile: Path) -> None:
    with PetracacheProcess(tmp_path / "pc", args=["-Y", str(authfile)]) as server:
        reply = converse(server.port, b"get k\r\n")
        assert reply == (b"CLIENT_ERROR unauthenticated\r\n", False)
        reply = converse(server.port, b"set a 0 0 11\r\nbob hunter2\r\nget k\r\n")
        assert reply == (b"STORED\r\nEND\r\n", False)


def test_unreadable_auth_file_stops_start_up(tmp_path: Path) -> None:
    server = PetracacheProcess(tmp_path / "pc", args=["-Y", str(tmp_path / "missing")])
    with pytest.raises(RuntimeError, match=r"server\.auth_file"):
        server.start()


def test_auth_stats_like_memcached(tmp_path: Path, authfile: Path) -> None:
    def auth_stats(port: int) -> list[bytes]:
        converse(port, b"set a 0 0 11\r\nbob wrong!!\r\n")
        converse(port, b"set a 0 0 5\r\nalone\r\n")  # bad format: not an auth command
        client = RawClient(port)
        client.send(b"set a 0 0 11\r\nbob hunter2\r\n")
        assert client.read_line() == b"STORED\r\n"
        stats = client.call(b"stats\r\n").split(b"\r\n")
        client.close()
        return [line for line in stats if line.startswith(b"STAT auth_")]

    reference = MemcachedProcess(["-Y", str(authfile)])
    try:
        expected = auth_stats(reference.port)
    finally:
        reference.stop()
    with PetracacheProcess(tmp_path / "pc", args=["-Y", str(authfile)]) as server:
        assert auth_stats(server.port) == expected == [b"STAT auth_cmds 2", b"STAT auth_errors 1"]
    with PetracacheProcess(tmp_path / "plain") as server:
        assert b"auth_cmds" not in server.client().call(b"stats\r\n")
