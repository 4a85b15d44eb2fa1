"""``SmartDocumentorClient`` against the fake server: token caching, status, list, targets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from d360_async._core._errors import NotFound, ValidationError
from d360_async._core._models import SmartDocumentorPage, SmartDocumentorTask
from d360_async._core._phase import Phase
from d360_async._core._ratelimit._protocol import Priority
from d360_async._resources._resource_target import target_from_spec
from d360_async.smartdocumentor import SmartDocumentorClient
from d360_async.testing import FakeDocument360, ManualClock

from .conftest import FAST_RETRY, RecordingLimiter


@pytest.fixture
async def sd(
    fake: FakeDocument360, clock: ManualClock, limiter: RecordingLimiter
) -> AsyncIterator[SmartDocumentorClient]:
    async with SmartDocumentorClient(
        client_id=fake.sd_client_id,
        client_secret=fake.sd_client_secret,
        base_url=fake.url,
        rate_limiter=limiter,
        retry=FAST_RETRY,
        clock=clock,
    ) as client:
        yield client


async def test_status_by_task_id_and_external_id(
    sd: SmartDocumentorClient, fake: FakeDocument360
) -> None:
    [task_id] = fake.seed("smartdocumentor.task", 1)
    task = await sd.tasks.status(task_id=int(task_id))
    assert isinstance(task, SmartDocumentorTask)
    assert task.task_id == int(task_id)
    assert task.task_status_text == "QueuedForPreProcessing"
    assert task.created_on is not None
    assert task.created_on.tzinfo is not None
    assert task.external_id is not None
    by_external = await sd.tasks.status(external_id=task.external_id)
    assert by_external.task_id == task.task_id


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"task_id": 1, "external_id": "x"}, {"task_id": 0}, {"task_id": "1"}, {"external_id": ""}],
    ids=["neither", "both", "zero", "text-id", "empty-external"],
)
async def test_selector_is_checked_locally(
    sd: SmartDocumentorClient, fake: FakeDocument360, kwargs: dict[str, object]
) -> None:
    with pytest.raises(ValueError, match=r"task_id|external_id"):
        await sd.tasks.status(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"task_id|external_id"):
        sd.tasks.target(**kwargs)  # type: ignore[arg-type]
    assert fake.stats.requests == 0


async def test_unknown_task_is_not_found(sd: SmartDocumentorClient) -> None:
    with pytest.raises(NotFound) as caught:
        await sd.tasks.status(task_id=999)
    assert caught.value.status == 404
    with pytest.raises(NotFound):
        await sd.tasks.status(external_id="no such / external?id")


async def test_fifty_concurrent_calls_fetch_one_token(
    sd: SmartDocumentorClient, fake: FakeDocument360
) -> None:
    [task_id] = fake.seed("smartdocumentor.task", 1)
    tasks = await asyncio.gather(*(sd.tasks.status(task_id=int(task_id)) for _ in range(50)))
    assert len(tasks) == 50
    assert fake.stats.token_requests == 1
    assert fake.stats.by_route["sd.status"] == 50
    assert fake.stats.auth_failures == 0
    assert sd.auth.token_requests == 1


async def test_token_is_refreshed_after_expiry(
    sd: SmartDocumentorClient, fake: FakeDocument360, clock: ManualClock
) -> None:
    [task_id] = fake.seed("smartdocumentor.task", 1)
    await sd.tasks.status(task_id=int(task_id))
    clock.advance(3000.0)  # still well within the token's 3600 s
    await sd.tasks.status(task_id=int(task_id))
    assert fake.stats.token_requests == 1
    clock.advance(560.0)  # 3560 s: inside the 60 s safety margin, so replaced early
    await asyncio.gather(*(sd.tasks.status(task_id=int(task_id)) for _ in range(10)))
    assert fake.stats.token_requests == 2
    assert fake.stats.auth_failures == 0


async def test_revoked_token_is_refreshed_once_on_401(
    sd: SmartDocumentorClient, fake: FakeDocument360
) -> None:
    [task_id] = fake.seed("smartdocumentor.task", 1)
    await sd.tasks.status(task_id=int(task_id))
    fake.revoke_token(await sd.auth.token())
    results = await asyncio.gather(*(sd.tasks.status(task_id=int(task_id)) for _ in range(10)))
    assert len(results) == 10
    assert fake.stats.token_requests == 2  # one refresh for the whole burst of 401s
    assert fake.stats.auth_failures == 10


async def test_wrong_secret_never_shows_the_secret(
    fake: FakeDocument360,
    clock: ManualClock,
    limiter: RecordingLimiter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "wrong-but-very-secret-value"
    caplog.set_level(logging.DEBUG)
    async with SmartDocumentorClient(
        client_id=fake.sd_client_id,
        client_secret=secret,
        base_url=fake.url,
        rate_limiter=limiter,
        retry=FAST_RETRY,
        clock=clock,
    ) as client:
        with pytest.raises(ValidationError) as caught:
            await client.tasks.status(task_id=1)
        shown = [repr(client), repr(client.auth), repr(client.tasks), str(caught.value)]
        shown.append(repr(caught.value))
    assert caught.value.errors[0].code == "invalid_client"
    for text in [*shown, caplog.text]:
        assert secret not in text


async def test_access_token_never_shown(
    sd: SmartDocumentorClient, fake: FakeDocument360, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    [task_id] = fake.seed("smartdocumentor.task", 1)
    task = await sd.tasks.status(task_id=int(task_id))
    token = await sd.auth.token()
    assert token in sd.auth.secrets()
    assert fake.sd_client_secret in sd.auth.secrets()
    for text in (repr(sd), repr(sd.auth), repr(task), caplog.text):
        assert token not in text
        assert fake.sd_client_secret not in text


async def test_list_paginated(sd: SmartDocumentorClient, fake: FakeDocument360) -> None:
    fake.seed("smartdocumentor.task", 7)
    page = await sd.tasks.list_paginated(page_number=2, page_size=3)
    assert isinstance(page, SmartDocumentorPage)
    assert (page.page_number, page.page_size, page.total_count, page.total_pages) == (2, 3, 7, 3)
    assert [task.task_id for task in page.items] == [4, 5, 6]
    last = await sd.tasks.list_paginated(page_number=3, page_size=3)
    assert len(last.items) == 1
    with pytest.raises(ValueError, match="page_size"):
        await sd.tasks.list_paginated(page_size=0)


async def test_list_paginated_filters(sd: SmartDocumentorClient, fake: FakeDocument360) -> None:
    fake.seed("smartdocumentor.task", 3)
    page = await sd.tasks.list_paginated(filters={"taskStatus": 30})
    assert len(page.items) == 3
    assert (await sd.tasks.list_paginated(filters={"taskStatus": 4})).items == ()


async def test_target_through_review_to_success(
    sd: SmartDocumentorClient, fake: FakeDocument360, clock: ManualClock, limiter: RecordingLimiter
) -> None:
    [task_id] = fake.seed("smartdocumentor.task", 1, pending=1.0, running=2.0, review=3.0)
    target = sd.tasks.target(task_id=int(task_id))
    assert target.kind == "smartdocumentor.task"
    assert target.key == f"smartdocumentor.task/{task_id}"
    seen = []
    for step in (0.0, 1.5, 2.0, 5.0):
        clock.advance(step)
        observed = await target.poll()
        seen.append((observed.phase, observed.raw_status))
    assert seen == [
        (Phase.PENDING, "QueuedForPreProcessing"),
        (Phase.RUNNING, "PreProcessingInProgress"),
        (Phase.RUNNING, "InReview"),  # waiting in review is not the end
        (Phase.SUCCEEDED, "ExportCompleted"),
    ]
    polls = [priority for key, priority in limiter.acquired if key == target.rate_key]
    assert polls == [Priority.POLL] * 4


async def test_target_failure(
    sd: SmartDocumentorClient, fake: FakeDocument360, clock: ManualClock
) -> None:
    [task_id] = fake.seed("smartdocumentor.task", 1, pending=0.0, running=1.0, failure_ratio=1.0)
    clock.advance(5.0)
    observed = await sd.tasks.target(task_id=int(task_id)).poll()
    assert observed.phase is Phase.FAILED
    assert observed.raw_status == "PreProcessingFailed"


async def test_target_by_external_id_round_trip(
    sd: SmartDocumentorClient, fake: FakeDocument360
) -> None:
    [task_id] = fake.seed("smartdocumentor.task", 1)
    task = await sd.tasks.status(task_id=int(task_id))
    assert task.external_id is not None
    target = sd.tasks.target(external_id=task.external_id)
    spec = target.to_spec()
    assert spec == {"kind": "smartdocumentor.task", "id": task.external_id, "id_type": "external"}
    rebuilt = sd.target_from_spec(spec)
    assert rebuilt == target
    assert (await rebuilt.poll()).snapshot.task_id == task.task_id
    by_id = target_from_spec([object(), sd], sd.tasks.target(task_id=task.task_id).to_spec())
    assert (await by_id.poll()).snapshot.task_id == task.task_id


async def test_restart_processing(
    sd: SmartDocumentorClient, fake: FakeDocument360, clock: ManualClock
) -> None:
    [task_id] = fake.seed("smartdocumentor.task", 1, stuck_ratio=1.0)
    await sd.tasks.restart_processing(int(task_id))
    task = await sd.tasks.status(task_id=int(task_id))
    assert task.restart_count == 1


async def test_closed_client_cannot_be_reused(fake: FakeDocument360) -> None:
    client = SmartDocumentorClient(client_id="a", client_secret="b", base_url=fake.url)
    await client.aclose()
    await client.aclose()  # idempotent
    assert client.closed
    with pytest.raises(RuntimeError, match="closed"):
        async with client:
            pass


async def test_defaults_and_repr() -> None:
    secret = "do-not-show-this-secret"
    async with SmartDocumentorClient(client_id="my-client", client_secret=secret) as client:
        assert "cloud.smartdocumentor.net" in repr(client)
        assert "my-client" in repr(client.auth)
        assert secret not in repr(client.auth)
        assert secret not in repr(client)
