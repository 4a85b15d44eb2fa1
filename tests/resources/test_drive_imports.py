"""``client.drive`` and ``client.imports`` against the fake server."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from d360_async import MissingCredential
from d360_async._core._errors import MalformedResponse, NotFound
from d360_async._core._models import DriveTask, Import, ImportStarted
from d360_async._core._phase import Phase
from d360_async._resources import DriveResource
from d360_async._resources._resource_target import target_from_spec
from d360_async._transport._transport import Transport
from d360_async.testing import FakeDocument360, ManualClock

WORKSPACE = "5c6d7e8f-9a0b-1c2d-3e4f-5a6b7c8d9e0f"


# --- drive --------------------------------------------------------------------------------------


async def test_get_task_vendor_shape(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock
) -> None:
    [task_id] = fake.seed("v3.drive_task", 1, pending=1.0, running=2.0)
    task = await api.drive.get_task(fake.project_id, task_id)
    assert task == DriveTask(task_id=uuid.UUID(task_id), status="Pending")
    clock.advance(1.5)
    assert (await api.drive.get_task(fake.project_id, task_id)).status == "Processing"
    clock.advance(5.0)
    assert (await api.drive.get_task(fake.project_id, task_id)).status == "Completed"


async def test_drive_target_phases(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock
) -> None:
    [task_id] = fake.seed("v3.drive_task", 1, pending=1.0, running=2.0, failure_ratio=1.0)
    target = api.drive.target(fake.project_id, task_id)
    assert target.kind == "v3.drive_task"
    assert target.key == f"v3.drive_task/{fake.project_id}/{task_id}"
    phases = []
    for step in (0.0, 1.5, 5.0):
        clock.advance(step)
        phases.append((await target.poll()).phase)
    assert phases == [Phase.PENDING, Phase.RUNNING, Phase.FAILED]
    rebuilt = target_from_spec(api, target.to_spec())
    assert rebuilt == target


async def test_drive_unknown_status_is_unknown_not_an_error(
    api: SimpleNamespace, fake: FakeDocument360
) -> None:
    [task_id] = fake.seed("v3.drive_task", 1)
    fake.set_status(task_id, "Archived")
    observed = await api.drive.target(fake.project_id, task_id).poll()
    assert observed.phase is Phase.UNKNOWN
    assert observed.raw_status == "Archived"


async def test_drive_task_not_found(api: SimpleNamespace, fake: FakeDocument360) -> None:
    with pytest.raises(NotFound):
        await api.drive.get_task(fake.project_id, "no-such-task")


async def test_drive_malformed_body_after_retries(
    api: SimpleNamespace, fake: FakeDocument360
) -> None:
    [task_id] = fake.seed("v3.drive_task", 1)
    fake.faults.set("malformed_json", 1.0, routes="v3.drive_task")
    with pytest.raises(MalformedResponse):
        await api.drive.get_task(fake.project_id, task_id)


async def test_drive_extra_fields_tolerated(api: SimpleNamespace, fake: FakeDocument360) -> None:
    [task_id] = fake.seed("v3.drive_task", 1)
    fake.faults.next("extra_fields", count=1, route="v3.drive_task")
    assert (await api.drive.get_task(fake.project_id, task_id)).status == "Pending"


@pytest.mark.parametrize("task_id", ["../x", "a/b", "a b", "%2e%2e", "x#y"])
async def test_drive_malformed_ids_send_nothing(
    api: SimpleNamespace, fake: FakeDocument360, task_id: str
) -> None:
    with pytest.raises(ValueError, match="task_id"):
        await api.drive.get_task(fake.project_id, task_id)
    assert fake.stats.requests == 0


async def test_missing_credential_is_reported_locally(
    transport: Transport, fake: FakeDocument360
) -> None:
    drive = DriveResource(transport, None)
    with pytest.raises(MissingCredential, match="api_token"):
        await drive.get_task(fake.project_id, "t1")
    assert fake.stats.requests == 0


# --- imports ------------------------------------------------------------------------------------


async def test_import_create_and_get(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock
) -> None:
    started = await api.imports.create(
        fake.project_id,
        workspace_id=WORKSPACE,
        source_url="https://files.example/kb.zip",
        options={"overwrite": True},
    )
    assert isinstance(started, ImportStarted)
    assert started.operation_location is not None
    assert started.operation_location.endswith(f"/imports/{started.id}")
    imported = await api.imports.get(fake.project_id, started.id)
    assert isinstance(imported, Import)
    assert imported.id == started.id


async def test_import_target_phases(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock
) -> None:
    [import_id] = fake.seed("v3.import", 1, pending=1.0, running=2.0)
    target = api.imports.target(fake.project_id, import_id)
    phases = []
    for step in (0.0, 1.5, 5.0):
        clock.advance(step)
        observed = await target.poll()
        phases.append(observed.phase)
    assert phases == [Phase.PENDING, Phase.RUNNING, Phase.SUCCEEDED]
    assert observed.snapshot.completed_at is not None
    assert target_from_spec(api, target.to_spec()).key == f"v3.import/{fake.project_id}/{import_id}"


async def test_import_create_validates_locally(api: SimpleNamespace, fake: FakeDocument360) -> None:
    with pytest.raises(ValueError, match="source_url"):
        await api.imports.create(fake.project_id, workspace_id=WORKSPACE, source_url="file:///x")
    assert fake.stats.requests == 0
