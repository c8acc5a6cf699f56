"""Optional TLS on the data port: one ``ssl.SSLContext`` from configuration.

Strategy: when ``server.tls_cert_file`` and ``server.tls_key_file`` are set, every accepted
TCP stream is wrapped in ``trio.SSLStream(server_side=True)`` before the handler sees it;
the port then speaks TLS only (like memcached ``-Z``). The handshake happens on the first
read, inside the handler's idle scope, so a client that never completes it costs one idle
connection and nothing more. A failed handshake surfaces as ``trio.BrokenResourceError``,
which closes only that connection. With ``server.tls_ca_file`` set, clients must present a
certificate signed by that CA (memcached's ``ssl_verify_mode`` = require).

Invariants: TLS 1.2 is the floor; the context is built once at start-up and any problem
(missing file, key not matching the certificate) stops the start with a message naming the
option.
"""

from __future__ import annotations

import ssl

import trio


class TLSConfigError(Exception):
    """The TLS options are incomplete or their files unusable; the text names the option."""


def server_context(cert_file: str, key_file: str, ca_file: str = "") -> ssl.SSLContext | None:
    """The server-side context, or None when TLS is off (no certificate configured).

    Raises:
        TLSConfigError: only one of cert/key is set, or a file cannot be loaded.
    """
    if not cert_file and not key_file:
        if ca_file:
            raise TLSConfigError("server.tls_ca_file needs server.tls_cert_file and tls_key_file")
        return None
    if not cert_file or not key_file:
        raise TLSConfigError("server.tls_cert_file and server.tls_key_file must be set together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(
            f"server.tls_cert_file/tls_key_file: cannot load {cert_file}, {key_file}: {exc}"
        ) from None
    if ca_file:
        try:
            context.load_verify_locations(ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(f"server.tls_ca_file: cannot load {ca_file}: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def wrap(stream: trio.abc.Stream, context: ssl.SSLContext | None) -> trio.abc.Stream:
    """``stream`` itself when TLS is off, else a server-side ``trio.SSLStream`` around it."""
    if context is None:
        return stream
    return trio.SSLStream(stream, context, server_side=True)
