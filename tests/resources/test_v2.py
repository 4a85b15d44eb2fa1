"""``client.v2`` against the fake server: the ``api_token`` header, envelopes, quirks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

from d360_async import MissingCredential
from d360_async._core._errors import AuthenticationError, ValidationError
from d360_async._core._models import V2DeleteFileStatus, V2Export, V2Import
from d360_async._core._phase import Phase
from d360_async._resources import V2Resource
from d360_async._resources._resource_target import target_from_spec
from d360_async._transport._auth import ApiTokenAuth
from d360_async._transport._transport import Transport
from d360_async.testing import FakeDocument360, ManualClock

from .conftest import FAST_RETRY, RecordingLimiter


@pytest.fixture
async def quirky(clock: ManualClock) -> AsyncIterator[FakeDocument360]:
    async with FakeDocument360(clock=clock, rate_limit=None, v2_complete_quirk=True) as server:
        yield server


async def test_delete_file_status_lifecycle(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock
) -> None:
    [task_id] = fake.seed("v2.delete_file", 1, pending=1.0, running=2.0)
    status = await api.v2.delete_file_status(task_id)
    assert status == V2DeleteFileStatus(task_id=task_id, is_complete=False, status=0)
    clock.advance(10.0)
    status = await api.v2.delete_file_status(task_id)
    assert (status.is_complete, status.status) == (True, 3)


async def test_delete_file_target_phases(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock
) -> None:
    [task_id] = fake.seed("v2.delete_file", 1, pending=1.0, running=2.0)
    target = api.v2.delete_file_target(task_id)
    assert target.kind == "v2.delete_file"
    assert target.key == f"v2.delete_file/{task_id}"
    assert target.rate_key.project_id is None
    phases = []
    for step in (0.0, 1.5, 5.0):
        clock.advance(step)
        observed = await target.poll()
        phases.append(observed.phase)
        assert observed.warnings == ()
    assert phases == [Phase.PENDING, Phase.RUNNING, Phase.SUCCEEDED]


async def test_vendor_quirk_is_terminal_with_a_warning(
    quirky: FakeDocument360, clock: ManualClock, limiter: RecordingLimiter
) -> None:
    [task_id] = quirky.seed("v2.delete_file", 1, pending=0.0, running=1.0)
    clock.advance(5.0)
    transport = Transport(base_url=quirky.url, limiter=limiter, retry=FAST_RETRY)
    try:
        v2 = V2Resource(transport, ApiTokenAuth(quirky.v2_api_token))
        observed = await v2.target(task_id).poll()
    finally:
        await transport.aclose()
    assert observed.snapshot.is_complete is True
    assert observed.snapshot.status == 2  # what the vendor's own example shows
    assert observed.phase is Phase.SUCCEEDED
    assert observed.raw_status == 2
    assert len(observed.warnings) == 1


@pytest.mark.parametrize(
    ("raw", "is_complete", "phase"),
    [(4, True, Phase.FAILED), (5, True, Phase.CANCELLED), (3, False, Phase.RUNNING)],
    ids=["error", "cancelled", "complete-code-not-flagged"],
)
async def test_forced_v2_states(
    api: SimpleNamespace, fake: FakeDocument360, raw: int, is_complete: bool, phase: Phase
) -> None:
    [task_id] = fake.seed("v2.delete_file", 1)
    fake.set_status(task_id, raw, is_complete=is_complete)
    observed = await api.v2.delete_file_target(task_id).poll()
    assert observed.phase is phase


async def test_unknown_task_is_a_v2_validation_error(api: SimpleNamespace) -> None:
    with pytest.raises(ValidationError) as caught:
        await api.v2.delete_file_status("65868a00c536f34594713fec")
    assert caught.value.status == 400


async def test_v2_export_and_import(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock
) -> None:
    [export_id] = fake.seed("v2.export", 1, pending=1.0, running=2.0)
    [import_id] = fake.seed("v2.import", 1, pending=1.0, running=2.0)
    assert await api.v2.exports.get(export_id) == V2Export(status="Initiated")
    assert await api.v2.imports.get(import_id) == V2Import(status="Queued")
    export_target = api.v2.exports.target(export_id)
    import_target = api.v2.imports.target(import_id)
    assert (await export_target.poll()).phase is Phase.PENDING
    clock.advance(1.5)
    assert (await import_target.poll()).phase is Phase.RUNNING
    clock.advance(5.0)
    done = await export_target.poll()
    assert done.phase is Phase.SUCCEEDED
    assert done.snapshot.download_url is not None
    signature = parse_qs(urlsplit(done.snapshot.download_url).query)["sig"][0]
    assert signature not in repr(done.snapshot)
    assert (await import_target.poll()).phase is Phase.SUCCEEDED
    for target in (export_target, import_target):
        assert target_from_spec(api, target.to_spec()) == target


async def test_v2_export_unknown(api: SimpleNamespace) -> None:
    with pytest.raises(ValidationError, match="Export not found"):
        await api.v2.exports.get("0123456789abcdef01234567")


async def test_v2_wrong_token(transport: Transport, fake: FakeDocument360) -> None:
    v2 = V2Resource(transport, ApiTokenAuth("not-the-token"))
    [task_id] = fake.seed("v2.delete_file", 1)
    with pytest.raises(AuthenticationError) as caught:
        await v2.delete_file_status(task_id)
    assert "not-the-token" not in str(caught.value)


async def test_v2_without_token(transport: Transport, fake: FakeDocument360) -> None:
    v2 = V2Resource(transport, None)
    with pytest.raises(MissingCredential, match="v2_api_token"):
        await v2.exports.get("abc")
    with pytest.raises(MissingCredential):
        v2.delete_file_target("abc")
    assert fake.stats.requests == 0


@pytest.mark.parametrize("ident", ["../Project", "a.b", "a%2F", "a/b", ""])
async def test_v2_ids_are_checked(api: SimpleNamespace, fake: FakeDocument360, ident: str) -> None:
    with pytest.raises(ValueError, match="task_id"):
        await api.v2.delete_file_status(ident)
    with pytest.raises(ValueError, match="import_id"):
        await api.v2.imports.get(ident)
    assert fake.stats.requests == 0
