"""The version petracache reports: which memcached release it reproduces, and its own."""

from __future__ import annotations

from typing import Final

from petracache import __version__

# The memcached release whose protocols petracache reproduces. ``version`` answers
# ``VERSION 1.6.18-petracache-<ours>``: clients that gate features on the version (libmemcached's
# memccapable checks for >= 1.6 before expecting "version foo" to work) read 1.6.18 from it.
MEMCACHED_VERSION: Final = "1.6.18"
SERVER_VERSION: Final = f"{MEMCACHED_VERSION}-petracache-{__version__}"
