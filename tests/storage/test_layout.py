"""What a disk bound sizes by itself (``storage.layout``), and what it leaves alone."""

from __future__ import annotations

from petracache.config import StorageSettings
from petracache.storage.layout import MAX_BUFFER, MIB, MIN_BUFFER, layout


def test_without_a_bound_nothing_is_derived() -> None:
    sizes = layout(StorageSettings())
    assert (sizes.write_buffer_size, sizes.max_write_buffer_number) == (64 * MIB, 3)
    assert (sizes.derived, sizes.warnings) == ((), ())


def test_a_bound_sizes_the_memtables_and_files() -> None:
    sizes = layout(StorageSettings(max_disk_bytes=24 * MIB))
    assert sizes.write_buffer_size == sizes.target_file_size_base == 2 * MIB
    assert sizes.max_write_buffer_number == 2
    assert len(sizes.derived) == 3
    assert sizes.warnings == ()
    # clamped both ways
    assert layout(StorageSettings(max_disk_bytes=4 * MIB)).write_buffer_size == MIN_BUFFER
    assert layout(StorageSettings(max_disk_bytes=1 << 40)).write_buffer_size == MAX_BUFFER


def test_an_explicit_choice_is_kept_and_warned_about_when_it_fights_the_bound() -> None:
    chosen = StorageSettings(max_disk_bytes=24 * MIB, write_buffer_size=8 * MIB)
    sizes = layout(chosen)
    assert sizes.write_buffer_size == 8 * MIB  # kept
    assert sizes.target_file_size_base == 2 * MIB  # still derived
    assert "storage.write_buffer_size = " not in " ".join(sizes.derived)
    assert len(sizes.warnings) == 1
    assert "storage.write_buffer_size" in sizes.warnings[0]
    modest = layout(StorageSettings(max_disk_bytes=256 * MIB, write_buffer_size=8 * MIB))
    assert modest.warnings == ()


def test_the_default_value_written_out_counts_as_left_at_its_default() -> None:
    """A copy of config.toml.example writes every default out: the bound still decides."""
    copied = StorageSettings(max_disk_bytes=24 * MIB, write_buffer_size=64 * MIB)
    assert layout(copied).write_buffer_size == 2 * MIB
