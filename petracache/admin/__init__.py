"""The admin sidecar: /health, /ready and /metrics over HTTP, on its own thread."""
