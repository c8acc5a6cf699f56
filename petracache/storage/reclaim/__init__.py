"""Background reclaim: what gives disk space back.

``reclaimer`` (``Reclaimer``: reaps expired and flushed items, evicts to the disk bound,
compacts; one bounded step at a time on the trio thread) and ``eviction_control``
(``EvictionControl``: from measured disk usage alone, when an eviction round starts and how
much it evicts); ``queues`` (S3-FIFO's rules for the small and main queues, pure) and
``ghost`` (``GhostKeys``: the keys S3-FIFO evicted recently, in memory) serve the default
eviction policy. ``server.tasks`` schedules the steps.
"""
