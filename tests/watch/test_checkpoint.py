"""Checkpoint JSON: round trip, strict validation, never pickle."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from d360_async._phase import Phase
from d360_async._watch import (
    CHECKPOINT_VERSION,
    CheckpointEntry,
    dump_checkpoint,
    load_checkpoint,
)

ENTRIES = [
    CheckpointEntry(
        key="v3.export/p/e1",
        spec={"kind": "v3.export", "project_id": "p", "id": "e1"},
        last_raw="InProgress",
        last_phase=Phase.RUNNING,
        polls=4,
    ),
    CheckpointEntry(
        key="v2.delete_file/t9",
        spec={"kind": "v2.delete_file", "id": "t9"},
        last_raw=3,
        last_phase=Phase.SUCCEEDED,
        polls=2,
        done=True,
    ),
    CheckpointEntry(key="sd/7", spec={"kind": "smartdocumentor.task", "task_id": 7}),
]


def test_round_trip() -> None:
    assert load_checkpoint(dump_checkpoint(ENTRIES)) == ENTRIES


def test_format_is_the_documented_one() -> None:
    document = json.loads(dump_checkpoint(ENTRIES[:1]))
    assert document == {
        "version": 1,
        "targets": [
            {
                "key": "v3.export/p/e1",
                "spec": {"kind": "v3.export", "project_id": "p", "id": "e1"},
                "last_raw": "InProgress",
                "last_phase": "running",
                "polls": 4,
                "done": False,
            }
        ],
    }
    assert CHECKPOINT_VERSION == 1


def test_loads_bytes() -> None:
    assert load_checkpoint(dump_checkpoint(ENTRIES).encode()) == ENTRIES


def test_empty_watch() -> None:
    assert load_checkpoint(dump_checkpoint([])) == []


def test_unserialisable_spec_names_the_target() -> None:
    bad = CheckpointEntry(key="k1", spec={"when": object()})
    with pytest.raises(ValueError, match="k1"):
        dump_checkpoint([bad])


def test_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="k2"):
        dump_checkpoint([CheckpointEntry(key="k2", spec={"x": float("nan")})])


def _doc(**target: Any) -> str:
    record: dict[str, Any] = {"key": "k", "spec": {}, "last_raw": None, "last_phase": None}
    record.update(target)
    return json.dumps({"version": 1, "targets": [record]})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("not json", "JSON", id="not-json"),
        pytest.param("[]", "object", id="not-an-object"),
        pytest.param('{"targets": []}', "version", id="no-version"),
        pytest.param('{"version": "1", "targets": []}', "version", id="string-version"),
        pytest.param('{"version": 2, "targets": []}', "not supported", id="future-version"),
        pytest.param('{"version": 1}', "targets", id="no-targets"),
        pytest.param('{"version": 1, "targets": [1]}', r"targets\[0\]", id="target-not-object"),
        pytest.param(_doc(key=""), "key", id="empty-key"),
        pytest.param(_doc(key=3), "key", id="int-key"),
        pytest.param(_doc(spec=[]), "spec", id="spec-list"),
        pytest.param(_doc(last_raw=True), "last_raw", id="bool-raw"),
        pytest.param(_doc(last_raw=1.5), "last_raw", id="float-raw"),
        pytest.param(_doc(last_raw={"a": 1}), "last_raw", id="object-raw"),
        pytest.param(_doc(last_phase="finished"), "phase", id="unknown-phase"),
        pytest.param(_doc(polls=-1), "polls", id="negative-polls"),
        pytest.param(_doc(polls=True), "polls", id="bool-polls"),
        pytest.param(_doc(done="yes"), "done", id="string-done"),
    ],
)
def test_rejects_malformed(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_checkpoint(text)


def test_rejects_duplicate_keys() -> None:
    record = {"key": "k", "spec": {}}
    text = json.dumps({"version": 1, "targets": [record, record]})
    with pytest.raises(ValueError, match="twice"):
        load_checkpoint(text)


def test_missing_optional_fields_default() -> None:
    (entry,) = load_checkpoint(json.dumps({"version": 1, "targets": [{"key": "k", "spec": {}}]}))
    assert entry == CheckpointEntry(key="k", spec={})


def test_a_pickle_is_just_invalid() -> None:
    import pickle

    with pytest.raises(ValueError, match="JSON"):
        load_checkpoint(pickle.dumps(ENTRIES[0].spec))


_json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
_specs = st.dictionaries(st.text(max_size=8), _json_scalars, max_size=4)
_entries = st.builds(
    CheckpointEntry,
    key=st.text(min_size=1, max_size=20),
    spec=_specs,
    last_raw=st.none() | st.integers() | st.text(max_size=12),
    last_phase=st.none() | st.sampled_from(Phase),
    polls=st.integers(0, 10**6),
    done=st.booleans(),
)


@given(st.lists(_entries, max_size=6, unique_by=lambda entry: entry.key))
def test_round_trip_property(entries: list[CheckpointEntry]) -> None:
    assert load_checkpoint(dump_checkpoint(entries)) == entries


@given(st.binary(max_size=64) | st.text(max_size=64))
def test_garbage_only_raises_value_error(text: str | bytes) -> None:
    with contextlib.suppress(ValueError):
        load_checkpoint(text)
