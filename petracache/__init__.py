"""petracache: a persistent, memcached-compatible cache server on RocksDB."""

from petracache import build as _build

__version__ = "0.1.0"

# Before any other submodule loads: the compiled modules, or all of them from source.
_build.select()
