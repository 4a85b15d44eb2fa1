"""The vendor's example bodies structure into the models; tolerance and strictness rules."""

from __future__ import annotations

import json
import traceback
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import cattrs
import pytest

from d360_async._core._errors import MalformedResponse
from d360_async._core._models import (
    ApiReferenceLog,
    ApiReferenceLogDetail,
    DriveTask,
    Export,
    Import,
    SmartDocumentorPage,
    SmartDocumentorTask,
    V2DeleteFileStatus,
    V2Export,
    V2Import,
    converter,
    parse_timestamp,
    structure,
)
from d360_async._core._response import Response

# Verbatim ``data`` members of the example bodies in the vendor's API reference.
DRIVE_TASK_COMPLETED = json.loads(
    '{"task_id": "a3b4c5d6-1234-5678-9abc-def012345678", "status": "Completed"}'
)
DRIVE_TASK_PROCESSING = json.loads(
    '{"task_id": "a3b4c5d6-1234-5678-9abc-def012345678", "status": "Processing"}'
)
EXPORT_COMPLETED = json.loads(
    """{
    "id": "f1a2b3c4-d5e6-7f89-0a1b-2c3d4e5f6a7b",
    "status": "Completed",
    "download_url": "https://storage.document360.io/exports/f1a2b3c4-d5e6-7f89-0a1b-2c3d4e5f6a7b/export-2025-06-15.zip",
    "completed_at": "2025-06-15T12:00:00Z"
  }"""
)
API_REFERENCE_LOGS = json.loads(
    """[
    {"id": "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d", "status": "Success",
     "created_at": "2025-09-25T14:30:00Z", "error_count": 0, "warning_count": 2},
    {"id": "2b3c4d5e-6f7a-8b9c-0d1e-2f3a4b5c6d7e", "status": "Failed",
     "created_at": "2025-09-20T11:15:00Z", "error_count": 3, "warning_count": 0}
  ]"""
)
V2_DELETE_STATUS = json.loads(
    """{
    "task_status": {"task_id": "65868a00c536f34594713fec", "is_complete": true, "status": 2},
    "extension_data": null, "success": true, "errors": [], "warnings": [], "information": []
  }"""
)
SD_TASK = json.loads(
    """{
    "taskId": 44, "workspaceId": 1, "batchId": 1, "taskNumber": 1, "externalId": null,
    "displayName": "Task display name", "description": "Task description",
    "createdOn": "2022-03-16T16:59:55Z", "taskStatus": 4, "integrationStatus": 4,
    "taskStatusText": "InReview", "integrationStatusText": "Failed", "totalPages": 10,
    "restartCount": 2, "preProcessingStartedOn": "2022-03-16T16:59:55Z"
  }"""
)
NOON = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)


# --- the vendor's examples ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status"),
    [(DRIVE_TASK_COMPLETED, "Completed"), (DRIVE_TASK_PROCESSING, "Processing")],
    ids=["completed", "processing"],
)
def test_drive_task_vendor_examples(body: dict[str, Any], status: str) -> None:
    task = structure(body, DriveTask)
    assert task == DriveTask(
        task_id=uuid.UUID("a3b4c5d6-1234-5678-9abc-def012345678"), status=status
    )


def test_export_vendor_example() -> None:
    export = structure(EXPORT_COMPLETED, Export)
    assert export.id == uuid.UUID("f1a2b3c4-d5e6-7f89-0a1b-2c3d4e5f6a7b")
    assert export.status == "Completed"
    assert export.download_url is not None
    assert export.download_url.endswith("export-2025-06-15.zip")
    assert export.completed_at == NOON
    assert export.completed_at.tzinfo is not None


def test_api_reference_logs_vendor_example() -> None:
    logs = structure(API_REFERENCE_LOGS, tuple[ApiReferenceLog, ...])
    assert [(log.status, log.error_count, log.warning_count) for log in logs] == [
        ("Success", 0, 2),
        ("Failed", 3, 0),
    ]
    assert logs[0].created_at == datetime(2025, 9, 25, 14, 30, tzinfo=UTC)


def test_v2_delete_status_vendor_example() -> None:
    status = structure(V2_DELETE_STATUS["task_status"], V2DeleteFileStatus)
    assert status == V2DeleteFileStatus(
        task_id="65868a00c536f34594713fec", is_complete=True, status=2
    )


def test_smartdocumentor_vendor_example_has_every_field() -> None:
    task = structure(SD_TASK, SmartDocumentorTask)
    stamp = datetime(2022, 3, 16, 16, 59, 55, tzinfo=UTC)
    assert task == SmartDocumentorTask(
        task_id=44,
        workspace_id=1,
        batch_id=1,
        task_number=1,
        external_id=None,
        display_name="Task display name",
        description="Task description",
        created_on=stamp,
        task_status=4,
        integration_status=4,
        task_status_text="InReview",
        integration_status_text="Failed",
        total_pages=10,
        restart_count=2,
        pre_processing_started_on=stamp,
    )
    # Every key of the vendor's example maps to a field.
    assert set(converter.unstructure(task)) == set(SD_TASK)


def test_smartdocumentor_round_trip() -> None:
    task = structure(SD_TASK, SmartDocumentorTask)
    assert structure(converter.unstructure(task), SmartDocumentorTask) == task


# --- tolerance ----------------------------------------------------------------------------------


def test_extra_fields_are_ignored() -> None:
    body = {**EXPORT_COMPLETED, "new_field": {"nested": [1, 2]}, "format": "pdf"}
    assert structure(body, Export) == structure(EXPORT_COMPLETED, Export)


@pytest.mark.parametrize(
    ("cls", "body"),
    [
        (Export, {"id": "f1a2b3c4-d5e6-7f89-0a1b-2c3d4e5f6a7b", "status": "InProgress"}),
        (Import, {"id": "x1", "status": "Pending"}),
        (ApiReferenceLog, {"id": "l1", "status": "Pending"}),
        (ApiReferenceLogDetail, {"id": "l1"}),
        (V2Export, {"status": "Initiated"}),
        (V2Import, {"status": "Queued"}),
        (
            SmartDocumentorTask,
            {"taskId": 1, "workspaceId": 1, "displayName": "d", "totalPages": 0},
        ),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_missing_optional_fields_are_tolerated(cls: type[Any], body: dict[str, Any]) -> None:
    model = structure(body, cls)
    assert type(model) is cls
    wire = converter.unstructure(model)
    # What was sent is kept; every field that was not sent holds its declared default.
    assert {name: wire[name] for name in body} == body
    missing = [f for f, name in zip(attrs.fields(cls), wire, strict=True) if name not in body]
    assert missing, "the case must leave an optional field out"
    for field in missing:
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        assert getattr(model, field.name) == default, field.name


def test_nullable_fields_accept_null() -> None:
    export = structure(
        {"id": None, "status": None, "download_url": None, "completed_at": None}, Export
    )
    assert export == Export(id=None, status=None)


def test_null_lists_become_empty_tuples() -> None:
    detail = structure({"id": "l1", "errors": None, "warnings": None}, ApiReferenceLogDetail)
    assert detail.errors == ()
    assert detail.warnings == ()


def test_log_detail_messages() -> None:
    detail = structure(
        {
            "id": "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d",
            "errors": [{"message": "Missing type", "path": "$.paths./pets.get"}],
            "warnings": [{"message": "Deprecated", "path": None, "severity": "low"}],
        },
        ApiReferenceLogDetail,
    )
    assert detail.errors[0].message == "Missing type"
    assert detail.errors[0].path == "$.paths./pets.get"
    assert detail.warnings[0].path is None


def test_ids_are_parsed_leniently() -> None:
    assert structure({"task_id": "not-a-uuid", "status": "Pending"}, DriveTask).task_id == (
        "not-a-uuid"
    )
    assert structure({"task_id": 12, "status": "Pending"}, DriveTask).task_id == "12"


def test_models_are_frozen_and_slotted() -> None:
    export = structure(EXPORT_COMPLETED, Export)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        export.status = "Failed"  # type: ignore[misc]
    assert not hasattr(export, "__dict__")


def test_signed_link_is_redacted_in_repr() -> None:
    export = structure(
        {**EXPORT_COMPLETED, "download_url": "https://s.example/x.zip?sv=2024&sig=SECRETSIG"},
        Export,
    )
    assert "SECRETSIG" not in repr(export)
    assert "x.zip" in repr(export)
    v2 = structure({"status": "Completed", "download_url": "https://s/x?sig=SECRETSIG"}, V2Export)
    assert "SECRETSIG" not in repr(v2)


# --- timestamps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-15T12:00:00Z", NOON),
        ("2025-06-15T12:00:00", NOON),
        ("2025-06-15T12:00:00+00:00", NOON),
        ("2025-06-15T14:00:00+02:00", NOON),
        ("2025-06-15T12:00:00.1234567Z", NOON + timedelta(microseconds=123456)),
        ("2025-06-15T12:00:00.5Z", NOON + timedelta(microseconds=500000)),
    ],
    ids=["zulu", "naive-is-utc", "offset-zero", "offset-two", "dotnet-7-digits", "short-fraction"],
)
def test_timestamps_are_aware(text: str, expected: datetime) -> None:
    moment = parse_timestamp(text)
    assert moment == expected
    assert moment.tzinfo is not None


def test_offsets_are_kept() -> None:
    assert parse_timestamp("2025-06-15T14:00:00+02:00").utcoffset() == timedelta(hours=2)
    assert parse_timestamp("2025-06-15T12:00:00Z").utcoffset() == timedelta(0)


# --- strictness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "body", "where"),
    [
        (Export, {"status": "Completed"}, "$.id"),
        (Export, {"id": "x", "status": 3}, "$.status"),
        (Export, {"id": "x", "status": "Completed", "completed_at": "yesterday"}, "completed_at"),
        (Export, {"id": "x", "status": "Completed", "completed_at": 1718452800}, "completed_at"),
        (Export, {"id": 1.5, "status": "Completed"}, "$.id"),
        (Export, {"id": ["x"], "status": "Completed"}, "$.id"),
        (Export, ["not", "an", "object"], "$"),
        (Export, None, "$"),
        (DriveTask, {"status": "Completed"}, "task_id"),
        (ApiReferenceLog, {"id": "x", "status": "Success", "error_count": "3"}, "error_count"),
        (ApiReferenceLog, {"id": "x", "status": "Success", "error_count": True}, "error_count"),
        (ApiReferenceLogDetail, {"id": "x", "errors": "boom"}, "errors"),
        (ApiReferenceLogDetail, {"id": "x", "errors": [{"message": 1}]}, "errors[0]"),
        (V2DeleteFileStatus, {"task_id": "t", "is_complete": "yes", "status": 2}, "is_complete"),
        (V2DeleteFileStatus, {"task_id": "t", "is_complete": True, "status": "2"}, "status"),
        (V2DeleteFileStatus, {"task_id": "t", "status": 2}, "is_complete"),
        (V2Export, {"status": 2.5}, "status"),
        (SmartDocumentorTask, {**SD_TASK, "taskId": "44"}, "task_id"),
        (SmartDocumentorTask, {k: v for k, v in SD_TASK.items() if k != "totalPages"}, "total"),
        (SmartDocumentorPage, {"items": [SD_TASK, {}], "pageNumber": 1, "pageSize": 2}, "items"),
    ],
    ids=[
        "missing-id",
        "status-number",
        "bad-timestamp",
        "numeric-timestamp",
        "float-id",
        "list-id",
        "array-body",
        "null-body",
        "missing-task-id",
        "count-as-text",
        "count-as-bool",
        "errors-as-text",
        "bad-nested-message",
        "flag-as-text",
        "code-as-text",
        "missing-flag",
        "float-status",
        "sd-id-as-text",
        "sd-missing-required",
        "sd-bad-item",
    ],
)
def test_bad_bodies_raise_malformed_response(cls: type[Any], body: Any, where: str) -> None:
    with pytest.raises(MalformedResponse) as caught:
        structure(body, cls)
    assert where in str(caught.value)
    assert cls.__name__ in str(caught.value)


def test_malformed_response_carries_the_exchange() -> None:
    response = Response(
        method="GET",
        url="https://api.example/v3/projects/p/exports/e?sig=SECRETSIG",
        status=200,
        headers={"X-Request-Id": "req-1"},
        body=b"{}",
    )
    with pytest.raises(MalformedResponse) as caught:
        structure({"status": 3}, Export, response=response)
    error = caught.value
    assert error.status == 200
    assert error.method == "GET"
    assert error.request_id == "req-1"
    assert "SECRETSIG" not in str(error)
    assert "SECRETSIG" not in repr(error)


def test_bad_values_are_not_quoted() -> None:
    with pytest.raises(MalformedResponse) as caught:
        structure({"id": "x", "status": {"secret": "s3cr3t-value"}}, Export)
    assert "s3cr3t-value" not in str(caught.value)
    # Nor in a logged traceback: the validation errors (which may quote values) are not chained.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert caught.value.cause_type == "ClassValidationError"
    with pytest.raises(MalformedResponse) as again:
        structure({"id": "x", "status": {"secret": "-".join(["s3cr3t", "value"])}}, Export)
    # (the joined value is not in this file's source, which a traceback quotes)
    assert "s3cr3t-value" not in "".join(traceback.format_exception(again.value))


@pytest.mark.parametrize(
    "body",
    [{"id": {}, "status": []}, {"errors": [1, 2, 3]}, 42, "text"],
    ids=["wrong-types", "bad-items", "number", "text"],
)
def test_no_cattrs_exception_escapes(body: Any) -> None:
    with pytest.raises(MalformedResponse) as caught:
        structure(body, ApiReferenceLogDetail)
    assert not isinstance(caught.value, cattrs.BaseValidationError)
