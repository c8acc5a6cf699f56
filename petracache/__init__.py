"""petracache: a persistent, memcached-compatible cache server on RocksDB."""

__version__ = "0.1.0"
