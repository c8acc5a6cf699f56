"""The storage verbs (``rules.verbs``): one enum, named as the classic commands are."""

from __future__ import annotations

from petracache.rules.verbs import StoreMode


def test_every_classic_storage_command_is_a_verb() -> None:
    assert [mode.value for mode in StoreMode] == [
        "set",
        "add",
        "replace",
        "append",
        "prepend",
        "cas",
    ]


def test_a_verb_is_found_by_its_command_name() -> None:
    assert StoreMode("cas") is StoreMode.CAS
