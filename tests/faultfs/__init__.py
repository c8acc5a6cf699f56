"""A fault-injecting FUSE file system for the tests: power cuts, failing writes and fsyncs.

A passthrough over a real directory (``model``: what a power cut keeps; ``ops``: the FUSE
operations, on mfusepy and Debian's libfuse3) run in its own process (``__main__``) and
commanded over a Unix socket (``control``). Tests use ``mount.FaultFS``. docs/testing.md
("Fault-injecting file system") describes it.
"""
