"""Every endpoint of FakeDocument360 against the shapes of the vendor's example bodies."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import pytest

from d360_async import TargetKind
from d360_async.testing import DEFAULT_PROJECT_ID, FakeDocument360, FakeLifecycle, ManualClock

# Key sets of the examples in the vendor's API reference.
V3_ENVELOPE = ["data", "success", "request_id", "errors", "warnings"]
PROBLEM = ["type", "title", "status", "detail", "instance", "trace_id", "errors", "warnings"]
PROBLEM_ERROR = ["code", "message", "field", "details"]
V2_ENVELOPE = ["extension_data", "success", "errors", "warnings", "information"]
SD_TASK = [
    "taskId",
    "workspaceId",
    "batchId",
    "taskNumber",
    "externalId",
    "displayName",
    "description",
    "createdOn",
    "taskStatus",
    "integrationStatus",
    "taskStatusText",
    "integrationStatusText",
    "totalPages",
    "restartCount",
    "preProcessingStartedOn",
]


def v3(fake: FakeDocument360) -> dict[str, str]:
    return {"Authorization": f"Bearer {fake.api_token}"}


def v2(fake: FakeDocument360) -> dict[str, str]:
    return {"api_token": fake.v2_api_token}


def project_url(fake: FakeDocument360, path: str, project: str = DEFAULT_PROJECT_ID) -> str:
    return f"{fake.url}/v3/projects/{project}{path}"


async def get_json(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], **params: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with session.get(url, headers=headers, params=params or None) as response:
        body = await response.json(content_type=None) if await response.read() else None
        return response.status, body, response


def assert_problem(body: Any, status: int, code: str) -> None:
    assert list(body) == PROBLEM
    assert body["status"] == status
    assert body["trace_id"].startswith("req_")
    assert body["instance"] is None
    assert list(body["errors"][0]) == PROBLEM_ERROR
    assert body["errors"][0]["code"] == code


# ---------------------------------------------------------------------------- V3


@pytest.mark.parametrize(
    ("offset", "status"),
    [(0.0, "Pending"), (1.5, "Processing"), (6.5, "Completed")],
    ids=["pending", "running", "completed"],
)
async def test_drive_task_status_follows_the_clock(
    fake: FakeDocument360,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    offset: float,
    status: str,
) -> None:
    [task_id] = fake.seed("v3.drive_task", pending=1.0, running=5.0)
    clock.advance(offset)
    code, body, _ = await get_json(session, project_url(fake, f"/drive/tasks/{task_id}"), v3(fake))
    assert code == 200
    assert list(body) == V3_ENVELOPE
    assert body["data"] == {"task_id": task_id, "status": status}
    assert body["success"] is True
    assert body["errors"] is None
    assert body["warnings"] is None


async def test_drive_task_failure(
    fake: FakeDocument360, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    [task_id] = fake.seed("v3.drive_task", pending=1.0, running=1.0, failure_ratio=1.0)
    clock.advance(3)
    _, body, _ = await get_json(session, project_url(fake, f"/drive/tasks/{task_id}"), v3(fake))
    assert body["data"]["status"] == "Failed"
    assert fake.operation(task_id).outcome == "failed"


async def test_export_status_shape_through_its_lifecycle(
    fake: FakeDocument360, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    [export_id] = fake.seed("v3.export", pending=2.0, running=10.0)
    url = project_url(fake, f"/exports/{export_id}")
    seen = []
    for _ in range(3):
        code, body, _ = await get_json(session, url, v3(fake))
        assert code == 200
        assert list(body) == V3_ENVELOPE
        assert list(body["data"]) == ["id", "status", "download_url", "completed_at"]
        assert body["errors"] == []
        assert body["warnings"] == []
        seen.append(body["data"])
        clock.advance(6)
    assert [data["status"] for data in seen] == ["Pending", "InProgress", "Completed"]
    assert seen[0]["download_url"] is None
    assert seen[0]["completed_at"] is None
    assert seen[2]["download_url"].startswith(f"{fake.url}/downloads/{export_id}.zip?")
    assert seen[2]["completed_at"].endswith("Z")


async def test_failed_export_has_completion_time_but_no_link(
    fake: FakeDocument360, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    [export_id] = fake.seed("v3.export", pending=0.0, running=1.0, failure_ratio=1.0)
    clock.advance(2)
    _, body, _ = await get_json(session, project_url(fake, f"/exports/{export_id}"), v3(fake))
    assert body["data"]["status"] == "Failed"
    assert body["data"]["download_url"] is None
    assert body["data"]["completed_at"] is not None


async def test_create_export_answers_202_with_operation_location(
    fake: FakeDocument360, session: aiohttp.ClientSession
) -> None:
    payload = {"workspace_id": "ws-1", "format": "pdf", "lang_code": "en"}
    async with session.post(project_url(fake, "/exports"), json=payload, headers=v3(fake)) as r:
        assert r.status == 202
        body = await r.json()
        location = r.headers["Operation-Location"]
    assert list(body) == V3_ENVELOPE
    assert list(body["data"]) == ["id", "status"]
    assert body["data"]["status"] == "Pending"
    export_id = body["data"]["id"]
    assert location == project_url(fake, f"/exports/{export_id}")
    code, status, _ = await get_json(session, location, v3(fake))
    assert code == 200
    assert status["data"]["id"] == export_id
    assert fake.operation(export_id).kind is TargetKind.V3_EXPORT


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"format": "pdf"}, "workspace_id"),
        ({"workspace_id": "ws"}, "format"),
        ({"workspace_id": "ws", "format": "pdf", "lang_code": 7}, "lang_code"),
    ],
    ids=["no-workspace", "no-format", "bad-lang"],
)
async def test_create_export_validation_problem(
    fake: FakeDocument360, session: aiohttp.ClientSession, payload: dict[str, Any], field: str
) -> None:
    async with session.post(project_url(fake, "/exports"), json=payload, headers=v3(fake)) as r:
        assert r.status == 400
        assert r.content_type == "application/problem+json"
        body = await r.json(content_type=None)
    assert_problem(body, 400, "VALIDATION_ERROR")
    assert body["errors"][0]["field"] == field


async def test_create_export_rejects_broken_json(
    fake: FakeDocument360, session: aiohttp.ClientSession
) -> None:
    async with session.post(
        project_url(fake, "/exports"), data=b"{nope", headers=v3(fake)
    ) as response:
        assert response.status == 400
        assert_problem(await response.json(content_type=None), 400, "VALIDATION_ERROR")


async def test_create_and_follow_an_import(
    clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    lifecycle = FakeLifecycle(pending=1.0, running=2.0)
    async with FakeDocument360(clock=clock, rate_limit=None, lifecycle=lifecycle) as fake:
        async with session.post(
            project_url(fake, "/imports"), json={"workspace_id": "ws"}, headers=v3(fake)
        ) as response:
            assert response.status == 202
            location = response.headers["Operation-Location"]
            import_id = (await response.json())["data"]["id"]
        statuses = []
        for _ in range(3):
            _, body, _ = await get_json(session, location, v3(fake))
            assert list(body["data"]) == ["id", "status", "completed_at"]
            statuses.append(body["data"]["status"])
            clock.advance(1.5)
        assert statuses == ["Pending", "InProgress", "Completed"]
        assert location.endswith(f"/imports/{import_id}")


async def test_unknown_wrong_project_and_deleted_ids_answer_404(
    fake: FakeDocument360, session: aiohttp.ClientSession
) -> None:
    [export_id] = fake.seed("v3.export")
    urls = [
        project_url(fake, "/exports/00000000-0000-4000-8000-000000000000"),
        project_url(fake, f"/exports/{export_id}", project="another-project"),
        project_url(fake, f"/imports/{export_id}"),  # an export is not an import
    ]
    for url in urls:
        code, body, _ = await get_json(session, url, v3(fake))
        assert code == 404
        assert_problem(body, 404, "RESOURCE_NOT_FOUND")
    fake.delete(export_id)
    code, _, _ = await get_json(session, project_url(fake, f"/exports/{export_id}"), v3(fake))
    assert code == 404
    assert fake.operation(export_id).deleted


async def test_set_status_forces_any_raw_value_until_cleared(
    fake: FakeDocument360, session: aiohttp.ClientSession
) -> None:
    [export_id] = fake.seed("v3.export", pending=100.0)
    url = project_url(fake, f"/exports/{export_id}")
    fake.set_status(export_id, "Quarantined")
    assert (await get_json(session, url, v3(fake)))[1]["data"]["status"] == "Quarantined"
    assert not fake.operation(export_id).terminal
    fake.set_status(export_id, "Failed")
    assert fake.operation(export_id).terminal
    fake.clear_status(export_id)
    assert (await get_json(session, url, v3(fake)))[1]["data"]["status"] == "Pending"
    fake.finish(export_id)
    assert (await get_json(session, url, v3(fake)))[1]["data"]["status"] == "Completed"


# ---------------------------------------------------------------------------- API references


async def test_api_reference_create_and_log_pages(
    fake: FakeDocument360, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    payload = {"url": "https://example.test/openapi.json", "workspace_id": "ws"}
    async with session.post(
        project_url(fake, "/api-references"), json=payload, headers=v3(fake)
    ) as response:
        assert response.status == 202
        body = await response.json()
    assert list(body["data"]) == ["id", "status"]
    ref_id = body["data"]["id"]
    code, logs, _ = await get_json(
        session, project_url(fake, f"/api-references/{ref_id}/logs"), v3(fake)
    )
    assert code == 200
    assert list(logs) == V3_ENVELOPE
    [entry] = logs["data"]
    assert list(entry) == ["id", "status", "created_at", "error_count", "warning_count"]
    assert entry["status"] == "Pending"


async def test_api_reference_create_needs_url_or_content(
    fake: FakeDocument360, session: aiohttp.ClientSession
) -> None:
    async with session.post(
        project_url(fake, "/api-references"), json={"workspace_id": "ws"}, headers=v3(fake)
    ) as response:
        assert response.status == 400
        assert (await response.json(content_type=None))["errors"][0]["field"] == "url"


async def test_log_pagination_newest_first_with_short_and_empty_pages(
    fake: FakeDocument360, session: aiohttp.ClientSession
) -> None:
    [ref_id] = fake.seed("v3.api_reference", log_history=24)  # 25 logs in all
    url = project_url(fake, f"/api-references/{ref_id}/logs")
    pages = []
    for page in range(1, 5):
        code, body, _ = await get_json(session, url, v3(fake), page=page, page_size=10)
        assert code == 200
        pages.append(body["data"])
    assert [len(page) for page in pages] == [10, 10, 5, 0]
    created = [entry["created_at"] for page in pages for entry in page]
    assert created == sorted(created, reverse=True)
    assert len({entry["id"] for page in pages for entry in page}) == 25
    _, default_page, _ = await get_json(session, url, v3(fake))
    assert len(default_page["data"]) == 25  # page_size defaults to 25


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": 101}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"page": 0}, "page"),
        ({"page": "x"}, "page"),
    ],
    ids=["size-101", "size-0", "page-0", "page-nan"],
)
async def test_log_pagination_validation(
    fake: FakeDocument360, session: aiohttp.ClientSession, params: dict[str, Any], field: str
) -> None:
    [ref_id] = fake.seed("v3.api_reference")
    url = project_url(fake, f"/api-references/{ref_id}/logs")
    code, body, _ = await get_json(session, url, v3(fake), **params)
    assert code == 400
    assert_problem(body, 400, "VALIDATION_ERROR")
    assert body["errors"][0]["field"] == field


async def test_log_detail_for_current_and_older_logs(
    fake: FakeDocument360, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    [ref_id] = fake.seed(
        "v3.api_reference", pending=0.0, running=1.0, failure_ratio=1.0, log_history=3
    )
    logs_url = project_url(fake, f"/api-references/{ref_id}/logs")
    clock.advance(2)
    _, body, _ = await get_json(session, logs_url, v3(fake))
    newest = body["data"][0]
    assert newest["status"] == "Failed"
    assert newest["error_count"] >= 1
    _, detail, _ = await get_json(session, f"{logs_url}/{newest['id']}", v3(fake))
    assert list(detail["data"]) == ["id", "errors", "warnings"]
    assert len(detail["data"]["errors"]) == newest["error_count"]
    assert all(list(error) == ["message", "path"] for error in detail["data"]["errors"])
    older = body["data"][1]
    _, old_detail, _ = await get_json(session, f"{logs_url}/{older['id']}", v3(fake))
    assert len(old_detail["data"]["errors"]) == older["error_count"]
    code, missing, _ = await get_json(session, f"{logs_url}/nope", v3(fake))
    assert code == 404
    assert_problem(missing, 404, "RESOURCE_NOT_FOUND")


async def test_api_reference_log_status_sequence(
    fake: FakeDocument360, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    [ref_id] = fake.seed("v3.api_reference", pending=1.0, running=1.0)
    url = project_url(fake, f"/api-references/{ref_id}/logs")
    statuses = []
    for _ in range(3):
        statuses.append((await get_json(session, url, v3(fake)))[1]["data"][0]["status"])
        clock.advance(1.5)
    assert statuses == ["Pending", "InProgress", "Success"]
    assert fake.operation(ref_id).first_terminal_served_at == clock.now - 1.5


# ---------------------------------------------------------------------------- V2


async def test_v2_delete_status_sequence_and_shape(
    fake: FakeDocument360, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    [ok, failed] = [
        fake.seed("v2.delete_file", pending=1.0, running=1.0, failure_ratio=ratio)[0]
        for ratio in (0.0, 1.0)
    ]
    url = f"{fake.url}/v2/Drive/Folders/DeleteFile/Status/{ok}"
    seen = []
    for _ in range(3):
        code, body, _ = await get_json(session, url, v2(fake))
        assert code == 200
        assert list(body) == ["task_status", *V2_ENVELOPE]
        assert list(body["task_status"]) == ["task_id", "is_complete", "status"]
        seen.append((body["task_status"]["status"], body["task_status"]["is_complete"]))
        clock.advance(1)
    assert seen == [(0, False), (2, False), (3, True)]
    _, body, _ = await get_json(
        session, f"{fake.url}/v2/Drive/Folders/DeleteFile/Status/{failed}", v2(fake)
    )
    assert body["task_status"] == {"task_id": failed, "is_complete": True, "status": 4}
    assert len(ok) == 24
    assert int(ok, 16) >= 0


async def test_v2_delete_vendor_quirk(clock: ManualClock, session: aiohttp.ClientSession) -> None:
    async with FakeDocument360(clock=clock, rate_limit=None, v2_complete_quirk=True) as fake:
        [task_id] = fake.seed("v2.delete_file", pending=0.0, running=1.0)
        clock.advance(2)
        url = f"{fake.url}/v2/Drive/Folders/DeleteFile/Status/{task_id}"
        _, body, _ = await get_json(session, url, v2(fake))
        assert body["task_status"] == {"task_id": task_id, "is_complete": True, "status": 2}
        assert fake.operation(task_id).first_terminal_served_at == clock.now


async def test_v2_delete_forced_status_and_is_complete(
    fake: FakeDocument360, session: aiohttp.ClientSession
) -> None:
    [task_id] = fake.seed("v2.delete_file", pending=50.0)
    fake.set_status(task_id, 1, is_complete=True)
    url = f"{fake.url}/v2/Drive/Folders/DeleteFile/Status/{task_id}"
    _, body, _ = await get_json(session, url, v2(fake))
    assert body["task_status"]["status"] == 1
    assert body["task_status"]["is_complete"] is True
    fake.set_status(task_id, 5)
    _, body, _ = await get_json(session, url, v2(fake))
    assert body["task_status"]["status"] == 5
    assert body["task_status"]["is_complete"] is True


async def test_v2_delete_unknown_id_is_the_vendor_400(
    fake: FakeDocument360, session: aiohttp.ClientSession
) -> None:
    code, body, _ = await get_json(
        session, f"{fake.url}/v2/Drive/Folders/DeleteFile/Status/nope", v2(fake)
    )
    assert code == 400
    assert body == {
        "extension_data": None,
        "success": False,
        "errors": [],
        "warnings": [],
        "information": [],
    }


@pytest.mark.parametrize(
    ("kind", "path", "sequence", "failure"),
    [
        ("v2.export", "Export", ["Initiated", "InProgress", "Completed"], "Error"),
        ("v2.import", "Import", ["Queued", "InProgress", "Completed"], "Error"),
    ],
    ids=["export", "import"],
)
async def test_v2_export_and_import(
    fake: FakeDocument360,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    kind: Any,
    path: str,
    sequence: list[str],
    failure: str,
) -> None:
    [op_id] = fake.seed(kind, pending=1.0, running=1.0)
    [bad_id] = fake.seed(kind, pending=1.0, running=1.0, failure_ratio=1.0)
    url = f"{fake.url}/v2/Project/{path}/{op_id}"
    seen = []
    for _ in range(3):
        code, body, _ = await get_json(session, url, v2(fake))
        assert code == 200
        assert body["success"] is True
        assert set(V2_ENVELOPE) <= set(body)
        seen.append(body["status"])
        if kind == "v2_export":
            assert (body["download_url"] is not None) == (body["status"] == "Completed")
        clock.advance(1)
    assert seen == sequence
    _, body, _ = await get_json(session, f"{fake.url}/v2/Project/{path}/{bad_id}", v2(fake))
    assert body["status"] == failure
    code, body, _ = await get_json(session, f"{fake.url}/v2/Project/{path}/nope", v2(fake))
    assert code == 400
    assert body["success"] is False
    assert body["errors"][0]["description"]


# ---------------------------------------------------------------------------- SmartDocumentor


async def sd_token(fake: FakeDocument360, session: aiohttp.ClientSession) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": fake.sd_client_id,
        "client_secret": fake.sd_client_secret,
        "scope": "WebAPI",
    }
    async with session.post(f"{fake.url}/connect/token", data=form) as response:
        assert response.status == 200
        body = await response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "WebAPI"
    token: str = body["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


SD = "/api/v1.0/external/sdtask"


async def test_sd_token_endpoint_counts_and_rejects(
    fake: FakeDocument360, session: aiohttp.ClientSession
) -> None:
    await sd_token(fake, session)
    good = {
        "grant_type": "client_credentials",
        "client_id": fake.sd_client_id,
        "client_secret": fake.sd_client_secret,
    }
    cases = [
        ({**good, "client_secret": "wrong"}, "invalid_client"),
        ({**good, "grant_type": "password"}, "unsupported_grant_type"),
        ({**good, "scope": "Admin"}, "invalid_scope"),
        ({"client_id": fake.sd_client_id}, "invalid_request"),
    ]
    for form, error in cases:
        async with session.post(f"{fake.url}/connect/token", data=form) as response:
            assert response.status == 400
            assert (await response.json())["error"] == error
    credentials = f"{fake.sd_client_id}:{fake.sd_client_secret}".encode()
    basic = {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
    async with session.post(
        f"{fake.url}/connect/token", data={"grant_type": "client_credentials"}, headers=basic
    ) as response:
        assert response.status == 200
    assert fake.stats.token_requests == 6
    assert fake.stats.tokens_issued == 2


async def test_sd_status_shape_and_lifecycle(
    fake: FakeDocument360, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    token = await sd_token(fake, session)
    [task_id] = fake.seed("smartdocumentor.task", pending=1.0, running=1.0, review=1.0)
    seen = []
    for _ in range(4):
        code, body, _ = await get_json(
            session, f"{fake.url}{SD}/status", bearer(token), taskId=task_id
        )
        assert code == 200
        assert list(body) == SD_TASK
        seen.append((body["taskStatus"], body["taskStatusText"], body["integrationStatusText"]))
        clock.advance(1)
    assert seen == [
        (30, "QueuedForPreProcessing", "Pending"),
        (31, "PreProcessingInProgress", "Pending"),
        (4, "InReview", "Pending"),
        (9, "ExportCompleted", "Completed"),
    ]
    op = fake.operation(task_id)
    assert op.review_at == op.running_at + 1.0
    assert op.first_terminal_served_at == op.finished_at


async def test_sd_status_by_external_id_and_failure(
    fake: FakeDocument360, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    token = await sd_token(fake, session)
    [task_id] = fake.seed("smartdocumentor.task", pending=0.0, running=1.0, failure_ratio=1.0)
    clock.advance(2)
    _, body, _ = await get_json(
        session, f"{fake.url}{SD}/status", bearer(token), externalId=f"ext-{task_id}"
    )
    assert body["taskId"] == int(task_id)
    assert (body["taskStatus"], body["taskStatusText"]) == (32, "PreProcessingFailed")
    assert fake.operation(task_id).terminal


@pytest.mark.parametrize(
    ("params", "status"),
    [({}, 400), ({"taskId": "abc"}, 400), ({"taskId": "999"}, 404), ({"externalId": "x"}, 404)],
    ids=["neither", "not-a-number", "unknown-task", "unknown-external"],
)
async def test_sd_status_errors_have_empty_bodies(
    fake: FakeDocument360, session: aiohttp.ClientSession, params: dict[str, str], status: int
) -> None:
    token = await sd_token(fake, session)
    async with session.get(
        f"{fake.url}{SD}/status", headers=bearer(token), params=params
    ) as response:
        assert response.status == status
        assert await response.read() == b""


async def test_sd_token_expires_on_the_server_clock(
    clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    async with FakeDocument360(clock=clock, rate_limit=None, sd_token_ttl=60) as fake:
        form = {
            "grant_type": "client_credentials",
            "client_id": fake.sd_client_id,
            "client_secret": fake.sd_client_secret,
        }
        async with session.post(f"{fake.url}/connect/token", data=form) as response:
            body = await response.json()
        assert body["expires_in"] == 60
        [task_id] = fake.seed("smartdocumentor.task")
        url = f"{fake.url}{SD}/status"
        headers = bearer(body["access_token"])
        assert (await get_json(session, url, headers, taskId=task_id))[0] == 200
        clock.advance(61)
        async with session.get(url, headers=headers, params={"taskId": task_id}) as response:
            assert response.status == 401
            assert await response.read() == b""
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_sd_list_paginated(fake: FakeDocument360, session: aiohttp.ClientSession) -> None:
    token = await sd_token(fake, session)
    ids = fake.seed("smartdocumentor.task", 5)
    url = f"{fake.url}{SD}/statuslistpaginated"
    _, page, _ = await get_json(session, url, bearer(token), pageNumber=2, pageSize=2)
    assert list(page) == ["pageNumber", "pageSize", "totalCount", "totalPages", "items"]
    assert (page["pageNumber"], page["totalCount"], page["totalPages"]) == (2, 5, 3)
    assert [item["taskId"] for item in page["items"]] == [int(ids[2]), int(ids[3])]
    assert all(list(item) == SD_TASK for item in page["items"])
    _, filtered, _ = await get_json(session, url, bearer(token), taskStatus=30)
    assert filtered["totalCount"] == 5
    code, _, _ = await get_json(session, url, bearer(token), pageSize=101)
    assert code == 400


async def test_sd_process_and_restart(
    fake: FakeDocument360, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    token = await sd_token(fake, session)
    payload = {"displayName": "Invoice", "workspaceId": 7, "externalId": "inv-1"}
    async with session.post(
        f"{fake.url}{SD}/process", json=payload, headers=bearer(token)
    ) as response:
        assert response.status == 200
        created = await response.json()
    assert list(created) == SD_TASK
    assert (created["workspaceId"], created["externalId"]) == (7, "inv-1")
    assert created["restartCount"] == 0
    assert created["preProcessingStartedOn"] is None
    async with session.post(
        f"{fake.url}{SD}/process", json=payload, headers=bearer(token)
    ) as response:
        assert response.status == 400  # duplicate external id
    async with session.post(f"{fake.url}{SD}/process", json={}, headers=bearer(token)) as response:
        assert response.status == 400

    task_id = created["taskId"]
    fake.set_status(task_id, 31)  # stuck in pre-processing
    clock.advance(30)
    async with session.patch(
        f"{fake.url}{SD}/restartprocessing", params={"taskId": task_id}, headers=bearer(token)
    ) as response:
        assert response.status == 200
        restarted = await response.json()
    assert restarted["restartCount"] == 1
    assert restarted["taskStatus"] == 30  # queued again, the forced status is gone
    assert fake.operation(task_id).restarts == 1
    assert fake.operation(task_id).started_at == clock.now
    async with session.patch(
        f"{fake.url}{SD}/restartprocessing", params={"taskId": 999}, headers=bearer(token)
    ) as response:
        assert response.status == 404


async def test_sd_forced_statuses(fake: FakeDocument360, session: aiohttp.ClientSession) -> None:
    token = await sd_token(fake, session)
    [task_id] = fake.seed("smartdocumentor.task", pending=100.0)
    url = f"{fake.url}{SD}/status"
    fake.set_status(task_id, 4, integration=4)  # the vendor's example: InReview, Failed
    _, body, _ = await get_json(session, url, bearer(token), taskId=task_id)
    assert (body["taskStatusText"], body["integrationStatusText"]) == ("InReview", "Failed")
    assert fake.operation(task_id).terminal
    fake.set_status(task_id, "Deleted")
    _, body, _ = await get_json(session, url, bearer(token), taskId=task_id)
    assert (body["taskStatus"], body["taskStatusText"]) == (20, "Deleted")
    assert fake.operation(task_id).terminal


# ---------------------------------------------------------------------------- auth


async def test_v3_401_problem_with_challenge(
    fake: FakeDocument360, session: aiohttp.ClientSession
) -> None:
    [task_id] = fake.seed("v3.drive_task")
    url = project_url(fake, f"/drive/tasks/{task_id}")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        code, body, response = await get_json(session, url, headers)
        assert code == 401
        assert response.content_type == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert_problem(body, 401, "UNAUTHORIZED")
    assert fake.stats.auth_failures == 3
    assert fake.operation(task_id).polls == 0


async def test_gateway_style_empty_401(clock: ManualClock, session: aiohttp.ClientSession) -> None:
    async with FakeDocument360(clock=clock, rate_limit=None, empty_401=True) as fake:
        [task_id] = fake.seed("v3.drive_task")
        async with session.get(project_url(fake, f"/drive/tasks/{task_id}")) as response:
            assert response.status == 401
            assert await response.read() == b""
            assert "WWW-Authenticate" in response.headers


async def test_v2_auth_uses_the_api_token_header(
    fake: FakeDocument360, session: aiohttp.ClientSession
) -> None:
    [task_id] = fake.seed("v2.delete_file")
    url = f"{fake.url}/v2/Drive/Folders/DeleteFile/Status/{task_id}"
    for headers in ({}, v3(fake), {"api_token": "wrong"}):
        code, body, _ = await get_json(session, url, headers)
        assert code == 401
        assert body["success"] is False
    assert (await get_json(session, url, v2(fake)))[0] == 200


async def test_accept_and_revoke_tokens(
    fake: FakeDocument360, session: aiohttp.ClientSession
) -> None:
    [task_id] = fake.seed("v3.drive_task")
    url = project_url(fake, f"/drive/tasks/{task_id}")
    other = {"Authorization": "Bearer second-token"}
    assert (await get_json(session, url, other))[0] == 401
    fake.accept_token("second-token")
    assert (await get_json(session, url, other))[0] == 200
    fake.revoke_token(fake.api_token)
    assert (await get_json(session, url, v3(fake)))[0] == 401
    fake.accept_token("v2-second", api="v2")
    v2_url = f"{fake.url}/v2/Project/Export/{fake.seed('v2.export')[0]}"
    assert (await get_json(session, v2_url, {"api_token": "v2-second"}))[0] == 200
