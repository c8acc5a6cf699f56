"""The trio data plane: accept loop and per-connection handlers. Thin glue, no semantics."""
