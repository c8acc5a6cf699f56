"""Request -> response for classic, meta and mcrouter commands and stats; counters move here."""
