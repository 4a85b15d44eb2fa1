"""Checkpoints: round trip, the sealed envelope, strict validation, never pickle."""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any
from unittest.mock import ANY

import pytest
from hypothesis import given
from hypothesis import strategies as st

from d360_async import CheckpointError
from d360_async._core._phase import Phase
from d360_async._watch import (
    CHECKPOINT_VERSION,
    CheckpointEntry,
    dump_checkpoint,
    load_checkpoint,
    open_checkpoint,
    seal_checkpoint,
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
    text = dump_checkpoint(ENTRIES[:1])
    header, _, body = text.partition("\n")
    assert header.startswith("d360-async checkpoint v2 length=")
    assert header == (
        f"d360-async checkpoint v2 length={len(body.encode())} "
        f"sha256={hashlib.sha256(body.encode()).hexdigest()}"
    )
    assert json.loads(body) == {
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
    assert CHECKPOINT_VERSION == 2


def test_extra_payload_fields_round_trip_and_are_ignored_by_the_entry_reader() -> None:
    text = dump_checkpoint(ENTRIES, extra={"priors": {"v3.export": [1.5, 2.0]}})
    assert open_checkpoint(text)["priors"] == {"v3.export": [1.5, 2.0]}
    assert load_checkpoint(text) == ENTRIES
    with pytest.raises(ValueError, match="targets"):
        dump_checkpoint(ENTRIES, extra={"targets": []})
    keyword = dump_checkpoint(ENTRIES, priors={"models": []}, absent=None)
    assert open_checkpoint(keyword) == {"priors": {"models": []}, "targets": ANY}
    with pytest.raises(ValueError, match="JSON-serialisable"):
        dump_checkpoint(ENTRIES, priors=object())


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
    return seal_checkpoint({"targets": [record]})


def _nested(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for _ in range(depth):
        spec = {"a": spec}
    return spec


def _sealed(text: str) -> str:
    """A raw payload text in a valid envelope (whatever the payload is)."""
    body = text.encode()
    digest = hashlib.sha256(body).hexdigest()
    return f"d360-async checkpoint v2 length={len(body)} sha256={digest}\n{text}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("not json", "not a d360-async checkpoint", id="not-a-checkpoint"),
        pytest.param('{"version": 1, "targets": []}', "version-1", id="unsealed-json"),
        pytest.param(_sealed("not json"), "JSON", id="not-json"),
        pytest.param(_sealed("[]"), "object", id="not-an-object"),
        pytest.param(
            _sealed("{}").replace("v2", "v3", 1), "version 3 is not supported", id="future-version"
        ),
        pytest.param(_sealed("{}").replace("length=2", "length=3"), "cut short", id="cut"),
        pytest.param(_sealed("{}") + " ", "holds 3", id="padded"),
        pytest.param(_sealed("{}").replace("sha256=4", "sha256=5"), "checksum", id="checksum"),
        pytest.param(_sealed("{}").replace(" length", "  length"), "header", id="header"),
        pytest.param(_sealed("[" * 100_000 + "]" * 100_000), "deeply", id="nesting"),
        pytest.param(_sealed('{"targets": [], "n": ' + "9" * 5000 + "}"), "JSON", id="huge-int"),
        pytest.param(_sealed('{"a": 1}'), "targets", id="no-targets"),
        pytest.param(_sealed('{"targets": [1]}'), r"targets\[0\]", id="target-not-object"),
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
        pytest.param(_doc(polls=2**64), "polls", id="huge-polls"),
        pytest.param(_doc(spec=_nested(40)), "nested", id="deep-spec"),
    ],
)
def test_rejects_malformed(text: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(text)


def test_rejects_duplicate_keys() -> None:
    record = {"key": "k", "spec": {}}
    text = seal_checkpoint({"targets": [record, record]})
    with pytest.raises(ValueError, match="twice"):
        load_checkpoint(text)


def test_missing_optional_fields_default() -> None:
    (entry,) = load_checkpoint(seal_checkpoint({"targets": [{"key": "k", "spec": {}}]}))
    assert entry == CheckpointEntry(key="k", spec={})


def test_a_pickle_is_just_invalid() -> None:
    import pickle

    with pytest.raises(CheckpointError, match="not a d360-async checkpoint"):
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
    with contextlib.suppress(CheckpointError):
        load_checkpoint(text)
