"""Request -> response for classic, meta and mcrouter commands and stats; counters move here.

Every module exposes ``(ctx, request) -> Response`` handlers in a ``HANDLERS`` table
(``context.Context`` carries the engine, counters, server info, leases and prefix stats);
``executor`` dispatches on the request's type.
"""
