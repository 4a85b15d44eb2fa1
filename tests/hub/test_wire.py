"""The stream entry format of the observation hub: round trips, and hostile entries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from d360_async import ApiReferenceLogDetail, Export, LogMessage
from d360_async._core._errors import NotFound, RateLimited, ServerError, WatchError
from d360_async._core._phase import Phase
from d360_async._core._target_protocol import Observation
from d360_async._core._watch._wire import (
    WIRE_VERSION,
    decode_entry,
    decode_snapshot,
    encode_entry,
    encode_snapshot,
)

TOPIC = ("v3.export", "v3.export/p/e")


def test_an_export_observation_round_trips() -> None:
    export = Export(
        id=uuid.UUID(int=7),
        status="Completed",
        download_url="https://files.example/x.zip?sig=SECRET",
        completed_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    obs = Observation(Phase.SUCCEEDED, "Completed", export, ("odd",))
    fields = encode_entry(TOPIC, "me", obs, None)
    assert all(isinstance(v, str) for v in fields.values())
    wire = decode_entry({k.encode(): v.encode() for k, v in fields.items()})  # as redis-py gives
    assert wire is not None
    assert wire.topic == TOPIC
    assert wire.origin == "me"
    assert wire.failure is None
    assert wire.observation == obs


def test_nested_models_and_tuples_round_trip() -> None:
    detail = ApiReferenceLogDetail(
        id="l1",
        status="Failed",
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
        errors=(LogMessage(message="bad", path="$.paths"),),
    )
    assert decode_snapshot(encode_snapshot(detail)) == detail


def test_snapshots_that_are_not_library_models_are_dropped_not_the_observation() -> None:
    class Mine:
        pass

    for snapshot in (Mine(), {1: "x"}, float("nan"), object()):
        assert encode_snapshot(snapshot) == ""
    fields = encode_entry(TOPIC, "me", Observation(Phase.RUNNING, 3, Mine()), None)
    wire = decode_entry(fields)
    assert wire is not None
    assert wire.observation is not None
    assert wire.observation.snapshot is None
    assert wire.observation.raw_status == 3


@pytest.mark.parametrize(
    "text",
    [
        '{"$m": "Popen", "f": {}}',  # only the library's models are ever built
        '{"$m": "Export", "f": {"nope": 1}}',
        '{"$m": "Export", "f": {"id": {"$u": "not-a-uuid"}, "status": null}}',
        '{"$dt": 5}',
        '{"$x": 1}',
        "[" * 50 + "]" * 50,
        "not json",
    ],
)
def test_hostile_snapshots_decode_to_none(text: str) -> None:
    assert decode_snapshot(text) is None


def test_failures_round_trip_as_the_same_error_class() -> None:
    for exc in (
        NotFound("gone", status=404),
        ServerError("boom", status=503),
        RateLimited("slow down", status=429, retry_at=123.5),
    ):
        wire = decode_entry(encode_entry(TOPIC, "me", None, exc))
        assert wire is not None
        assert type(wire.failure) is type(exc)
        assert wire.failure is not None
        assert wire.failure.status == exc.status
        assert wire.failure.message == exc.message
    rl = decode_entry(encode_entry(TOPIC, "me", None, RateLimited("x", retry_at=9.0)))
    assert rl is not None
    assert isinstance(rl.failure, RateLimited)
    assert rl.failure.retry_at == 9.0
    bug = decode_entry(encode_entry(TOPIC, "me", None, KeyError("secret detail")))
    assert bug is not None
    assert isinstance(bug.failure, WatchError)
    assert "secret detail" not in str(bug.failure)
    unknown = dict(encode_entry(TOPIC, "me", None, NotFound("x")), x="SystemExit")
    got = decode_entry(unknown)
    assert got is not None
    assert type(got.failure) is WatchError


def test_an_entry_needs_an_observation_or_a_failure() -> None:
    with pytest.raises(ValueError, match="observation or a failure"):
        encode_entry(TOPIC, "me", None, None)


_TEXT = st.one_of(st.text(max_size=8), st.binary(max_size=8))


@given(st.dictionaries(st.sampled_from(list("vokt prwsxmca".replace(" ", ""))), _TEXT))
def test_arbitrary_entries_never_raise(fields: dict[str, Any]) -> None:
    wire = decode_entry({"v": WIRE_VERSION, **fields})
    if wire is not None:
        assert (wire.observation is None) != (wire.failure is None)
