"""Storage layer: RocksDB through rocksdict. Knows nothing of the wire protocol."""
