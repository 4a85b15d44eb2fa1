"""Every row of every status table, written out from the vendor's docs (not read back from the
tables), plus the rules that are not rows: loose matching, unknowns, ``is_complete``, and the
SmartDocumentor precedence."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from d360_async._core._phase import Phase
from d360_async._core._status import (
    SD_INTEGRATION_CODES,
    SD_INTEGRATION_TEXTS,
    SD_TASK_CODES,
    SD_TASK_TEXTS,
    V2_CODES,
    V2_TEXTS,
    V3_TEXTS,
    _unknown,
    normalise_smartdocumentor,
    normalise_v2,
    normalise_v2_task,
    normalise_v3,
    status_key,
)

P = Phase


@pytest.fixture(autouse=True)
def _fresh_unknown_log() -> Iterator[None]:
    _unknown.clear()
    yield
    _unknown.clear()


# --- V3 -----------------------------------------------------------------------------------------

V3_ROWS = [
    ("Pending", P.PENDING),
    ("InProgress", P.RUNNING),
    ("Processing", P.RUNNING),
    ("Completed", P.SUCCEEDED),
    ("Success", P.SUCCEEDED),
    ("Failed", P.FAILED),
]


@pytest.mark.parametrize(("raw", "phase"), V3_ROWS, ids=[r for r, _ in V3_ROWS])
def test_v3_row(raw: str, phase: Phase) -> None:
    reading = normalise_v3(raw)
    assert reading.phase is phase
    assert reading.raw_status == raw
    assert reading.warnings == ()


@pytest.mark.parametrize(
    ("raw", "phase"),
    [
        ("completed", P.SUCCEEDED),
        ("  COMPLETED\n", P.SUCCEEDED),
        ("In Progress", P.RUNNING),
        ("in_progress", P.RUNNING),
        ("in-progress", P.RUNNING),
        ("FAILED", P.FAILED),
    ],
    ids=["lower", "upper-padded", "spaced", "snake", "kebab", "shouting"],
)
def test_v3_is_case_and_whitespace_tolerant(raw: str, phase: Phase) -> None:
    reading = normalise_v3(raw)
    assert reading.phase is phase
    assert reading.raw_status == raw  # the raw value is kept as received


def test_v3_table_has_exactly_the_tested_rows() -> None:
    assert set(V3_TEXTS) == {status_key(raw) for raw, _ in V3_ROWS}


# --- V2 codes -----------------------------------------------------------------------------------

V2_CODE_ROWS = [
    (0, "Queued", P.PENDING),
    (1, "Initiated", P.PENDING),
    (2, "InProgress", P.RUNNING),
    (3, "Completed", P.SUCCEEDED),
    (4, "Error", P.FAILED),
    (5, "Cancelled", P.CANCELLED),
]


@pytest.mark.parametrize(
    ("code", "phase"),
    [(c, p) for c, _, p in V2_CODE_ROWS],
    ids=[f"{c}-{n}" for c, n, _ in V2_CODE_ROWS],
)
def test_v2_code_row(code: int, phase: Phase) -> None:
    reading = normalise_v2(code)
    assert (reading.phase, reading.raw_status, reading.warnings) == (phase, code, ())


def test_v2_code_table_has_exactly_the_tested_rows() -> None:
    assert set(V2_CODES) == {c for c, _, _ in V2_CODE_ROWS}


# --- V2 strings ---------------------------------------------------------------------------------

V2_TEXT_ROWS = [
    ("Queued", P.PENDING),
    ("Initiated", P.PENDING),
    ("InProgress", P.RUNNING),
    ("Completed", P.SUCCEEDED),
    ("Error", P.FAILED),
    ("Cancelled", P.CANCELLED),
    ("Canceled", P.CANCELLED),
]


@pytest.mark.parametrize(("raw", "phase"), V2_TEXT_ROWS, ids=[r for r, _ in V2_TEXT_ROWS])
def test_v2_text_row(raw: str, phase: Phase) -> None:
    assert normalise_v2(raw).phase is phase
    assert normalise_v2(raw.upper()).phase is phase


def test_v2_text_table_has_exactly_the_tested_rows() -> None:
    assert set(V2_TEXTS) == {status_key(raw) for raw, _ in V2_TEXT_ROWS}


# --- V2 delete-file: code x is_complete ---------------------------------------------------------

# (code, is_complete, phase, warns): is_complete decides whether it ended, the code how.
V2_TASK_ROWS = [
    *[(code, False, phase, False) for code, _, phase in V2_CODE_ROWS[:3]],
    (3, False, P.RUNNING, True),
    (4, False, P.RUNNING, True),
    (5, False, P.RUNNING, True),
    (0, True, P.SUCCEEDED, True),
    (1, True, P.SUCCEEDED, True),
    (2, True, P.SUCCEEDED, True),  # the vendor's own example
    (3, True, P.SUCCEEDED, False),
    (4, True, P.FAILED, False),
    (5, True, P.CANCELLED, False),
    *[(code, None, phase, False) for code, _, phase in V2_CODE_ROWS],
]


@pytest.mark.parametrize(
    ("code", "is_complete", "phase", "warns"),
    V2_TASK_ROWS,
    ids=[f"status={c}-is_complete={i}" for c, i, _, _ in V2_TASK_ROWS],
)
def test_v2_task_row(code: int, is_complete: bool | None, phase: Phase, warns: bool) -> None:
    reading = normalise_v2_task(code, is_complete)
    assert reading.phase is phase
    assert reading.raw_status == code
    assert bool(reading.warnings) is warns


def test_v2_task_vendor_example_reports_the_disagreement() -> None:
    reading = normalise_v2_task(2, True)
    assert reading.phase is P.SUCCEEDED
    assert reading.phase.is_terminal
    (warning,) = reading.warnings
    assert "is_complete" in warning
    assert "2" in warning


def test_v2_task_unknown_code_complete_is_unknown(caplog: pytest.LogCaptureFixture) -> None:
    # An unknown code cannot say how the task ended: guessing SUCCEEDED would report a failed
    # deletion as done (tests/reliability found it), so the watch keeps polling instead.
    with caplog.at_level(logging.WARNING, logger="d360_async.status"):
        reading = normalise_v2_task(9, True)
    assert reading.phase is P.UNKNOWN
    assert not reading.phase.is_terminal
    assert reading.raw_status == 9
    assert len(reading.warnings) == 1
    assert len(caplog.records) == 1


def test_v2_task_unknown_code_not_complete_is_unknown() -> None:
    reading = normalise_v2_task(9, False)
    assert reading.phase is P.UNKNOWN
    assert reading.raw_status == 9


# --- SmartDocumentor ----------------------------------------------------------------------------

SD_TASK_TEXT_ROWS = [
    ("QueuedForPreProcessing", P.PENDING),
    ("PreProcessingInProgress", P.RUNNING),
    ("PreProcessingSuccessful", P.RUNNING),
    ("Processed", P.RUNNING),
    ("To Review", P.RUNNING),
    ("InReview", P.RUNNING),
    ("ExportCompleted", P.RUNNING),
    ("Deleting", P.RUNNING),
    ("Deleted", P.CANCELLED),
    ("PreProcessingFailed", P.FAILED),
    ("PreProcessingDownloadFailed", P.FAILED),
    ("PreProcessingGetPagesFailed", P.FAILED),
]


@pytest.mark.parametrize(
    ("text", "phase"), SD_TASK_TEXT_ROWS, ids=[t for t, _ in SD_TASK_TEXT_ROWS]
)
def test_sd_task_text_row(text: str, phase: Phase) -> None:
    reading = normalise_smartdocumentor(task_status=None, task_status_text=text)
    assert reading.phase is phase
    assert reading.raw_status == text
    assert reading.warnings == ()


def test_sd_task_text_table_has_exactly_the_tested_rows() -> None:
    assert set(SD_TASK_TEXTS) == {status_key(t) for t, _ in SD_TASK_TEXT_ROWS}


SD_TASK_CODE_ROWS = [
    (4, "InReview", P.RUNNING),
    (19, "Deleting", P.RUNNING),
    (20, "Deleted", P.CANCELLED),
    (30, "QueuedForPreProcessing", P.PENDING),
    (31, "PreProcessingInProgress", P.RUNNING),
    (32, "PreProcessingFailed", P.FAILED),
    (33, "PreProcessingDownloadFailed", P.FAILED),
    (34, "PreProcessingSuccessful", P.RUNNING),
    (35, "PreProcessingGetPagesFailed", P.FAILED),
]


@pytest.mark.parametrize(
    ("code", "phase"),
    [(c, p) for c, _, p in SD_TASK_CODE_ROWS],
    ids=[f"{c}-{n}" for c, n, _ in SD_TASK_CODE_ROWS],
)
def test_sd_task_code_row_when_text_is_missing(code: int, phase: Phase) -> None:
    reading = normalise_smartdocumentor(task_status=code, task_status_text=None)
    assert reading.phase is phase
    assert reading.raw_status == code


@pytest.mark.parametrize(
    ("code", "text"),
    [(c, n) for c, n, _ in SD_TASK_CODE_ROWS],
    ids=[f"{c}-{n}" for c, n, _ in SD_TASK_CODE_ROWS],
)
def test_sd_task_code_and_text_agree(code: int, text: str) -> None:
    by_code = normalise_smartdocumentor(task_status=code, task_status_text=None).phase
    by_text = normalise_smartdocumentor(task_status=None, task_status_text=text).phase
    assert by_code is by_text


def test_sd_task_code_table_has_exactly_the_tested_rows() -> None:
    assert set(SD_TASK_CODES) == {c for c, _, _ in SD_TASK_CODE_ROWS}


SD_INTEGRATION_ROWS = [
    ("Failed", 4, P.FAILED),
    ("Completed", None, P.SUCCEEDED),
]


@pytest.mark.parametrize(
    ("text", "code", "phase"), SD_INTEGRATION_ROWS, ids=[t for t, _, _ in SD_INTEGRATION_ROWS]
)
def test_sd_integration_row_ends_a_live_task(text: str, code: int | None, phase: Phase) -> None:
    by_text = normalise_smartdocumentor(
        task_status=31,
        task_status_text="PreProcessingInProgress",
        integration_status=None,
        integration_status_text=text,
    )
    assert by_text.phase is phase
    assert by_text.warnings  # the live task status and the ending integration disagree
    if code is not None:
        by_code = normalise_smartdocumentor(
            task_status=31, task_status_text=None, integration_status=code
        )
        assert by_code.phase is phase


def test_sd_integration_tables_have_exactly_the_tested_rows() -> None:
    assert set(SD_INTEGRATION_TEXTS) == {status_key(t) for t, _, _ in SD_INTEGRATION_ROWS}
    assert set(SD_INTEGRATION_CODES) == {c for _, c, _ in SD_INTEGRATION_ROWS if c is not None}


def test_sd_vendor_example_in_review_with_failed_integration() -> None:
    reading = normalise_smartdocumentor(
        task_status=4,
        task_status_text="InReview",
        integration_status=4,
        integration_status_text="Failed",
    )
    assert reading.phase is P.FAILED
    assert reading.raw_status == "InReview"
    assert any("InReview" in w and "Failed" in w for w in reading.warnings)


@pytest.mark.parametrize(
    ("task", "task_text", "integration", "integration_text", "phase"),
    [
        (4, "InReview", 1, "Pending", P.RUNNING),
        (9, "ExportCompleted", 2, "InProgress", P.RUNNING),
        (9, "ExportCompleted", 3, "Completed", P.SUCCEEDED),
        (20, "Deleted", 3, "Completed", P.CANCELLED),
        (32, "PreProcessingFailed", 3, "Completed", P.FAILED),
        (99, "PreProcessingOcrFailed", None, None, P.FAILED),
        (31, "SomethingNew", None, None, P.RUNNING),
        (None, "InReview", 7, None, P.RUNNING),
    ],
    ids=[
        "review-waits",
        "exported-integration-running",
        "integration-completed",
        "deleted-wins",
        "task-failure-wins",
        "any-failed-suffix",
        "unknown-text-known-number",
        "unknown-integration-number",
    ],
)
def test_sd_precedence(
    task: int | None,
    task_text: str | None,
    integration: int | None,
    integration_text: str | None,
    phase: Phase,
) -> None:
    reading = normalise_smartdocumentor(
        task_status=task,
        task_status_text=task_text,
        integration_status=integration,
        integration_status_text=integration_text,
    )
    assert reading.phase is phase


def test_sd_text_is_read_before_the_number() -> None:
    # The number says InReview (running); the text says Deleted: the text wins.
    reading = normalise_smartdocumentor(task_status=4, task_status_text="deleted")
    assert reading.phase is P.CANCELLED


def test_sd_unknown_task_status_is_unknown(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="d360_async.status"):
        reading = normalise_smartdocumentor(task_status=77, task_status_text="Mystery")
    assert reading.phase is P.UNKNOWN
    assert reading.raw_status == "Mystery"
    assert len(caplog.records) == 1


def test_sd_unknown_task_with_ending_integration() -> None:
    reading = normalise_smartdocumentor(
        task_status=None, task_status_text="Mystery", integration_status_text="Completed"
    )
    assert reading.phase is P.SUCCEEDED
    assert reading.warnings


# --- unknown values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["Paused", "", "   ", None, 7, 3.5, True, ["Completed"], {"status": "Completed"}],
    ids=["new-word", "empty", "blank", "null", "int", "float", "bool", "list", "object"],
)
def test_v3_unknown_never_raises(raw: object) -> None:
    reading = normalise_v3(raw)
    assert reading.phase is P.UNKNOWN
    assert not reading.phase.is_terminal
    assert reading.raw_status is None or isinstance(reading.raw_status, str | int)
    assert reading.warnings


@pytest.mark.parametrize(
    "raw", [-1, 6, "Paused", None, True, 2.0], ids=["neg", "six", "word", "null", "bool", "float"]
)
def test_v2_unknown_never_raises(raw: object) -> None:
    assert normalise_v2(raw).phase is P.UNKNOWN


def test_unknown_keeps_the_raw_value() -> None:
    assert normalise_v3("Paused").raw_status == "Paused"
    assert normalise_v2(6).raw_status == 6


def test_one_warning_per_distinct_value(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="d360_async.status"):
        for _ in range(5):
            normalise_v3("Paused")
            normalise_v3("Archived")
            normalise_v2("Paused")  # same value, other API: its own warning
    messages = sorted(record.getMessage() for record in caplog.records)
    assert len(messages) == 3
    assert any("v3" in m and "Paused" in m for m in messages)
    assert any("v3" in m and "Archived" in m for m in messages)
    assert any("v2" in m and "Paused" in m for m in messages)


def test_unknown_log_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="d360_async.status"):
        for index in range(_unknown.MAX + 50):
            normalise_v3(f"new-{index}")
    assert len(caplog.records) == _unknown.MAX


def test_known_values_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="d360_async.status"):
        for raw, _ in V3_ROWS:
            normalise_v3(raw)
        normalise_v2_task(3, True)
    assert caplog.records == []


def test_status_key() -> None:
    assert status_key(" In Progress ") == status_key("IN_PROGRESS") == "inprogress"
