"""Every status model says its phase, read from the same tables the watch uses."""

from __future__ import annotations

from typing import Any

import pytest

from d360_async import (
    ApiReferenceLog,
    ApiReferenceLogDetail,
    Client,
    DriveTask,
    Export,
    Import,
    Phase,
    PollPolicy,
    SmartDocumentorTask,
    TransitionKind,
    V2DeleteFileStatus,
    V2Export,
    V2Import,
)
from d360_async._core._status import (
    V2_CODES,
    V2_TEXTS,
    V3_TEXTS,
    normalise_smartdocumentor,
    normalise_v2_task,
)
from d360_async.testing import FakeDocument360, FakeLifecycle

V3_STATUSES = ["Pending", "InProgress", "Processing", "Completed", "Failed", "Success", "Odd"]


def _v3_expected(status: str) -> Phase:
    from d360_async._core._status import status_key

    return V3_TEXTS.get(status_key(status), Phase.UNKNOWN)


@pytest.mark.parametrize("status", V3_STATUSES)
@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda s: DriveTask(task_id="t", status=s), id="DriveTask"),
        pytest.param(lambda s: Export(id="e", status=s), id="Export"),
        pytest.param(lambda s: Import(id="i", status=s), id="Import"),
        pytest.param(lambda s: ApiReferenceLog(id="l", status=s), id="ApiReferenceLog"),
        pytest.param(lambda s: ApiReferenceLogDetail(id="l", status=s), id="ApiReferenceLogDetail"),
    ],
)
def test_v3_models_say_their_phase(build: Any, status: str) -> None:
    model = build(status)
    expected = _v3_expected(status)
    assert model.phase is expected
    assert model.is_terminal is expected.is_terminal
    assert bool(model.status_warnings) is (expected is Phase.UNKNOWN)


@pytest.mark.parametrize("status", [*V2_CODES, *V2_TEXTS, "Nonsense", 99])
@pytest.mark.parametrize("cls", [V2Export, V2Import])
def test_v2_export_and_import_say_their_phase(cls: type[Any], status: str | int) -> None:
    model = cls(status=status)
    expected = V2_CODES.get(status) if isinstance(status, int) else V2_TEXTS.get(str(status))
    assert model.phase is (expected or Phase.UNKNOWN)
    assert model.is_terminal is model.phase.is_terminal


@pytest.mark.parametrize("code", [*V2_CODES, 42])
@pytest.mark.parametrize("complete", [True, False])
def test_v2_delete_status_follows_is_complete_and_warns(code: int, complete: bool) -> None:
    model = V2DeleteFileStatus(task_id="65868a00c536f34594713f", is_complete=complete, status=code)
    reading = normalise_v2_task(code, complete)
    assert model.phase is reading.phase
    assert model.status_warnings == reading.warnings


def test_v2_vendor_example_disagreement_is_reachable_from_the_model() -> None:
    # The vendor's own example: is_complete true with code 2 (InProgress).
    model = V2DeleteFileStatus(task_id="65868a00c536f34594713fec", is_complete=True, status=2)
    assert model.phase is Phase.SUCCEEDED
    assert model.is_terminal
    assert len(model.status_warnings) == 1
    assert "is_complete" in model.status_warnings[0]


@pytest.mark.parametrize(
    ("fields", "phase"),
    [
        ({"task_status": 30, "task_status_text": "QueuedForPreProcessing"}, Phase.PENDING),
        ({"task_status": 4, "task_status_text": "InReview"}, Phase.RUNNING),
        ({"task_status": 32, "task_status_text": "PreProcessingFailed"}, Phase.FAILED),
        ({"task_status": 20, "task_status_text": "Deleted"}, Phase.CANCELLED),
        (
            {
                "task_status": 4,
                "task_status_text": "InReview",
                "integration_status": 4,
                "integration_status_text": "Failed",
            },
            Phase.FAILED,
        ),
        (
            {"task_status_text": "ExportCompleted", "integration_status_text": "Completed"},
            Phase.SUCCEEDED,
        ),
    ],
)
def test_smartdocumentor_task_says_its_phase(fields: dict[str, Any], phase: Phase) -> None:
    model = SmartDocumentorTask(
        task_id=1, workspace_id=2, display_name="scan.pdf", total_pages=3, **fields
    )
    reading = normalise_smartdocumentor(
        task_status=model.task_status,
        task_status_text=model.task_status_text,
        integration_status=model.integration_status,
        integration_status_text=model.integration_status_text,
    )
    assert model.phase is phase is reading.phase
    assert model.status_warnings == reading.warnings


async def test_a_fetched_model_and_the_watch_agree() -> None:
    """`client.exports.get` gives the phase the watch reports for the same answer."""
    async with (
        FakeDocument360(
            rate_limit=None, lifecycle=FakeLifecycle(pending=0.05, running=0.1)
        ) as fake,
        Client(api_token=fake.api_token, base_url=fake.url, rate_limit=1000) as client,
    ):
        started = await client.exports.create(fake.project_id, workspace_id="w", format="pdf")
        first = await client.exports.get(fake.project_id, started.id)
        assert first.phase in (Phase.PENDING, Phase.RUNNING)
        assert not first.is_terminal
        target = client.exports.target(fake.project_id, started.id)
        async with client.watch([target], policy=PollPolicy(interval=0.05)) as w:
            seen = [t async for t in w if t.kind is TransitionKind.CHANGED]
        assert seen
        for transition in seen:
            assert transition.snapshot.phase is transition.phase
        last = await client.exports.get(fake.project_id, started.id)
        assert last.phase is Phase.SUCCEEDED is seen[-1].phase
        assert last.is_terminal
