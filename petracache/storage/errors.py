"""Storage failures. Misses and failed conditions are results, never exceptions."""

from __future__ import annotations


class StorageError(Exception):
    """RocksDB failed (I/O error, disk full, database closed); the server answers SERVER_ERROR."""


class DatabaseLocked(StorageError):
    """Another process holds the RocksDB lock on the data directory."""


class CorruptValue(StorageError):
    """A stored value cannot be decoded (truncated, unknown format version)."""
