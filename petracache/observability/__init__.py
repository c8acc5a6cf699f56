"""Counters the data plane moves and the Prometheus collector that reads them at scrape time."""
