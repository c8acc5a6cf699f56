"""Storage layer: RocksDB through rocksdict. Knows nothing of the wire protocol.

``items`` (pure item transitions shared by every protocol), ``codec`` (the value format),
``engine`` (applies transitions on RocksDB), ``index`` (expiry and age indexes), ``state``
(CAS and flush_all state), ``rocks`` (the only ``rocksdict`` importer), ``reclaim``
(background reaping and eviction), ``commit`` (group-commit bookkeeping), ``recovery``.
"""
