"""Background reclaim: what gives disk space back.

``reclaimer`` (``Reclaimer``: reaps expired and flushed items, evicts to the disk bound,
compacts; one bounded step at a time on the trio thread) and ``eviction_control``
(``EvictionControl``: from measured disk usage alone, when an eviction round starts and how
much it evicts). ``server.tasks`` schedules the steps.
"""
