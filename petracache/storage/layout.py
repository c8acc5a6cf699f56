"""The RocksDB sizes a disk bound decides, unless the user chose them.

With ``storage.max_disk_bytes`` set, what RocksDB holds outside the bound's control counts
against it all the same: memtables (``write_buffer_size`` x ``max_write_buffer_number``)
and the WAL behind them are usage that no eviction frees until a flush, and large SST files
make each compaction's transient large. With the defaults made for an unbounded cache
(three 64 MiB memtables), a bound that is small against them evicts too early and loses
hit ratio (docs/benchmarks.md, "Eviction policies and hit ratio"). So, with a bound and for
each option left at its default (not set in any source, or set to the default value, as a
copy of config.toml.example does):

* ``write_buffer_size`` = a twelfth of the bound, between 1 MiB and 64 MiB;
* ``max_write_buffer_number`` = 2 (one memtable filling while the other flushes);
* ``target_file_size_base`` = the same as the write buffer.

An explicit choice is kept; when its memtables could hold more than a quarter of the bound
a warning names the option. Without a bound nothing is derived. ``server`` logs the result
at start (``derived``, ``warnings``).
"""

from __future__ import annotations

from typing import Final, NamedTuple

from petracache.config import StorageSettings

MIB: Final = 1024 * 1024
BOUND_SHARE: Final = 12  # the write buffer is this fraction of the bound ...
MIN_BUFFER: Final = 1 * MIB  # ... but at least this (smaller memtables flush too often)
MAX_BUFFER: Final = 64 * MIB  # ... and at most RocksDB's default
BOUNDED_BUFFERS: Final = 2
MEMTABLE_SHARE: Final = 4  # explicit memtables above bound / this get a warning


class Layout(NamedTuple):
    """The sizes RocksDB is opened with, and what was derived or looks wrong."""

    write_buffer_size: int
    max_write_buffer_number: int
    target_file_size_base: int
    derived: tuple[str, ...] = ()  # "option = value" for each value derived from the bound
    warnings: tuple[str, ...] = ()


def layout(settings: StorageSettings) -> Layout:
    """The sizes for ``settings`` (see the module docstring)."""
    buffer = settings.write_buffer_size
    buffers = settings.max_write_buffer_number
    target = settings.target_file_size_base
    bound = settings.max_disk_bytes
    if not bound:
        return Layout(buffer, buffers, target)
    defaults = StorageSettings.model_fields
    chosen = {
        name
        for name in ("write_buffer_size", "max_write_buffer_number", "target_file_size_base")
        if getattr(settings, name) != defaults[name].default
    }
    derived: list[str] = []
    share = min(max(bound // BOUND_SHARE, MIN_BUFFER), MAX_BUFFER)
    if "write_buffer_size" not in chosen:
        buffer = share
        derived.append(f"storage.write_buffer_size = {buffer}")
    if "max_write_buffer_number" not in chosen:
        buffers = BOUNDED_BUFFERS
        derived.append(f"storage.max_write_buffer_number = {buffers}")
    if "target_file_size_base" not in chosen:
        target = share
        derived.append(f"storage.target_file_size_base = {target}")
    warnings: list[str] = []
    if buffer * buffers * MEMTABLE_SHARE > bound and (
        {"write_buffer_size", "max_write_buffer_number"} & chosen
    ):
        warnings.append(
            f"storage.write_buffer_size x storage.max_write_buffer_number = {buffer * buffers}"
            f" bytes of memtables is more than a quarter of storage.max_disk_bytes ({bound}):"
            " the bound evicts sooner than it needs to; unset them to size them from the bound"
        )
    return Layout(buffer, buffers, target, tuple(derived), tuple(warnings))
