"""The reported version (``rules.versions``): memcached's release first, for version gates."""

from __future__ import annotations

from petracache import __version__
from petracache.rules.versions import MEMCACHED_VERSION, SERVER_VERSION


def test_server_version_starts_with_the_memcached_release() -> None:
    assert f"{MEMCACHED_VERSION}-petracache-{__version__}" == SERVER_VERSION
    major, minor, _patch = (int(part) for part in MEMCACHED_VERSION.split("."))
    assert (major, minor) >= (1, 6)  # memccapable expects >= 1.6
