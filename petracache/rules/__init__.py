"""memcached 1.6's pure rules: sizes, numbers, TTL, store verbs, versions; used by every layer."""
