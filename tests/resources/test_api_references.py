"""``client.api_references`` against the fake server: create, pagination, detail, target."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from d360_async import TargetKind
from d360_async._core._models import ApiReferenceImport, ApiReferenceLog, ApiReferenceLogDetail
from d360_async._core._phase import Phase
from d360_async._resources._resource_target import target_from_spec
from d360_async.testing import FakeDocument360, ManualClock

WORKSPACE = "5c6d7e8f-9a0b-1c2d-3e4f-5a6b7c8d9e0f"


def _log_requests(fake: FakeDocument360) -> int:
    return fake.stats.by_route["v3.api_references.logs"]


async def test_create_from_url(api: SimpleNamespace, fake: FakeDocument360) -> None:
    started = await api.api_references.create(
        fake.project_id,
        workspace_id=WORKSPACE,
        url="https://specs.example/openapi.json",
        publish_articles=True,
    )
    assert isinstance(started, ApiReferenceImport)
    assert started.status == "Pending"
    assert fake.operation(str(started.id)).kind is TargetKind.V3_API_REFERENCE


async def test_create_from_content(api: SimpleNamespace, fake: FakeDocument360) -> None:
    started = await api.api_references.create(
        fake.project_id, workspace_id=WORKSPACE, content='{"openapi": "3.0.0"}'
    )
    logs = [log async for log in api.api_references.logs(fake.project_id, started.id)]
    assert len(logs) == 1


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"url": "https://x/s.json", "content": "{}"}, {"url": "ftp://x"}, {"content": " "}],
    ids=["neither", "both", "bad-url", "blank-content"],
)
async def test_create_checks_its_source_locally(
    api: SimpleNamespace, fake: FakeDocument360, kwargs: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match=r"url|content"):
        await api.api_references.create(fake.project_id, workspace_id=WORKSPACE, **kwargs)
    assert fake.stats.requests == 0


@pytest.mark.parametrize(
    ("history", "page_size", "pages"),
    [(11, 5, [5, 5, 2]), (9, 5, [5, 5]), (0, 25, [1]), (249, 100, [100, 100, 50])],
    ids=["short-last-page", "full-last-page", "single-log", "max-page-size"],
)
async def test_log_pages_walk_every_page(
    api: SimpleNamespace, fake: FakeDocument360, history: int, page_size: int, pages: list[int]
) -> None:
    [reference] = fake.seed("v3.api_reference", 1, log_history=history)
    sizes = [
        len(page)
        async for page in api.api_references.log_pages(
            fake.project_id, reference, page_size=page_size
        )
    ]
    assert sizes == pages
    # A full last page costs one more request, answered empty; a short one ends at once.
    full_last = sum(pages) % page_size == 0
    assert _log_requests(fake) == len(pages) + (1 if full_last else 0)


async def test_logs_yield_every_entry_newest_first(
    api: SimpleNamespace, fake: FakeDocument360
) -> None:
    [reference] = fake.seed("v3.api_reference", 1, log_history=7)
    logs = [log async for log in api.api_references.logs(fake.project_id, reference, page_size=3)]
    assert len(logs) == 8
    assert all(isinstance(log, ApiReferenceLog) for log in logs)
    assert len({log.id for log in logs}) == 8
    stamps = [log.created_at for log in logs]
    assert all(stamp is not None and stamp.tzinfo is not None for stamp in stamps)
    assert stamps == sorted(stamps, reverse=True)
    assert _log_requests(fake) == 3


@pytest.mark.parametrize("page_size", [101, 0, -1, True, 2.5], ids=repr)
async def test_bad_page_size_raises_before_any_request(
    api: SimpleNamespace, fake: FakeDocument360, page_size: object
) -> None:
    [reference] = fake.seed("v3.api_reference", 1)
    with pytest.raises(ValueError, match="page_size"):
        api.api_references.logs(fake.project_id, reference, page_size=page_size)
    with pytest.raises(ValueError, match="page_size"):
        api.api_references.log_pages(fake.project_id, reference, page_size=page_size)
    assert fake.stats.requests == 0


async def test_bad_ids_raise_before_any_request(
    api: SimpleNamespace, fake: FakeDocument360
) -> None:
    with pytest.raises(ValueError, match="api_reference_id"):
        api.api_references.logs(fake.project_id, "../../exports")
    with pytest.raises(ValueError, match="log_id"):
        await api.api_references.log(fake.project_id, "ref", "a/b")
    assert fake.stats.requests == 0


async def test_log_detail(api: SimpleNamespace, fake: FakeDocument360) -> None:
    [reference] = fake.seed("v3.api_reference", 1, log_history=30)
    logs = [log async for log in api.api_references.logs(fake.project_id, reference)]
    with_messages = next(log for log in logs if log.error_count or log.warning_count)
    detail = await api.api_references.log(fake.project_id, reference, with_messages.id)
    assert isinstance(detail, ApiReferenceLogDetail)
    assert detail.id == with_messages.id
    assert len(detail.errors) == with_messages.error_count
    assert len(detail.warnings) == with_messages.warning_count
    assert all(message.message for message in detail.errors + detail.warnings)


async def test_target_follows_the_newest_log(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock
) -> None:
    [reference] = fake.seed("v3.api_reference", 1, pending=1.0, running=2.0, log_history=3)
    target = api.api_references.target(fake.project_id, reference)
    assert target.kind == "v3.api_reference"
    phases = []
    for step in (0.0, 1.5, 5.0):
        clock.advance(step)
        observed = await target.poll()
        phases.append(observed.phase)
    assert phases == [Phase.PENDING, Phase.RUNNING, Phase.SUCCEEDED]
    assert observed.raw_status == "Success"
    assert fake.stats.by_route["v3.api_references.logs"] == 3  # one small page per poll


async def test_target_since_ignores_older_attempts(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock
) -> None:
    [reference] = fake.seed("v3.api_reference", 1, pending=0.0, running=1.0)
    clock.advance(5.0)
    future = datetime.fromtimestamp(fake.epoch() + 3600, tz=UTC)
    target = api.api_references.target(fake.project_id, reference, since=future)
    observed = await target.poll()
    assert observed.phase is Phase.PENDING
    assert observed.snapshot is not None
    assert observed.snapshot.status == "Success"
    spec = target.to_spec()
    assert spec["since"] == future.isoformat()
    rebuilt = target_from_spec(api, spec)
    assert (await rebuilt.poll()).phase is Phase.PENDING


async def test_target_rejects_naive_since(api: SimpleNamespace, fake: FakeDocument360) -> None:
    with pytest.raises(ValueError, match="timezone"):
        api.api_references.target(fake.project_id, str(uuid.uuid4()), since=datetime(2025, 1, 1))
