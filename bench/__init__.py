"""Benchmarks: petracache side by side with memcached on the same machine (``python -m bench``)."""
