"""memcached 1.6's pure rules: sizes, numbers, TTL, store verbs, versions; and which build
runs (``build``). Used by every layer; imports nothing of petracache but its version."""
