"""Storage failures. Misses and failed conditions are results, never exceptions."""

from __future__ import annotations


class StorageError(Exception):
    """RocksDB failed (I/O error, disk full, database closed); the server answers SERVER_ERROR."""


class DatabaseLocked(StorageError):
    """Another process holds the RocksDB lock on the data directory."""


class CorruptValue(StorageError):
    """A stored value cannot be decoded (truncated, unknown format version)."""


class OutOfMemory(StorageError):
    """A store refused: the disk bound is reached and eviction is off (memcached -M)."""

    def __init__(self) -> None:
        super().__init__("out of memory storing object")
