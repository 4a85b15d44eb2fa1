"""Fault injection: each kind, one-shot scripts, seeded rates, and what faults never do."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from d360_async.testing import DEFAULT_PROJECT_ID, FakeDocument360, FaultKind, ManualClock


def export_url(fake: FakeDocument360, export_id: str) -> str:
    return f"{fake.url}/v3/projects/{DEFAULT_PROJECT_ID}/exports/{export_id}"


def auth(fake: FakeDocument360) -> dict[str, str]:
    return {"Authorization": f"Bearer {fake.api_token}"}


@pytest.fixture
def finished_export(fake: FakeDocument360, clock: ManualClock) -> str:
    [export_id] = fake.seed("v3.export", pending=0.0, running=1.0)
    clock.advance(2)
    return export_id


async def fetch(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    async with session.get(url, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


@pytest.mark.parametrize(
    ("kind", "status", "content_type", "check"),
    [
        ("http_500", 500, "application/problem+json", b'"INTERNAL_SERVER_ERROR"'),
        ("http_503", 503, "application/problem+json", b'"SERVICE_UNAVAILABLE"'),
        ("html_502", 502, "text/html", b"<html>"),
        ("malformed_json", 200, "application/json", b"tru"),
    ],
    ids=["500", "503", "html-502", "malformed-json"],
)
async def test_error_faults(
    fake: FakeDocument360,
    session: aiohttp.ClientSession,
    finished_export: str,
    kind: FaultKind,
    status: int,
    content_type: str,
    check: bytes,
) -> None:
    fake.faults.next(kind, retry_after=3)
    code, headers, body = await fetch(session, export_url(fake, finished_export), auth(fake))
    assert code == status
    assert headers["Content-Type"].startswith(content_type)
    assert check in body
    if kind == "http_503":
        assert headers["Retry-After"] == "3"
    if kind == "malformed_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(body)
    # A faulted answer is no poll and does not count as the terminal status served.
    op = fake.operation(finished_export)
    assert (op.polls, op.first_terminal_served_at) == (0, None)
    assert fake.stats.faults[kind] == 1
    assert fake.faults.scheduled == 0
    code, _, _ = await fetch(session, export_url(fake, finished_export), auth(fake))
    assert code == 200
    assert fake.operation(finished_export).first_terminal_served_at is not None


async def test_abort_drops_the_connection(
    fake: FakeDocument360, session: aiohttp.ClientSession, finished_export: str
) -> None:
    # aiohttp itself resends an idempotent request once when the connection drops...
    fake.faults.next("abort")
    assert (await fetch(session, export_url(fake, finished_export), auth(fake)))[0] == 200
    assert fake.stats.by_status[0] == 1
    assert fake.stats.requests == 2
    # ... so two aborts in a row reach the caller.
    fake.faults.next("abort", count=2)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await fetch(session, export_url(fake, finished_export), auth(fake))
    assert fake.stats.by_status[0] == 3
    assert fake.operation(finished_export).polls == 1  # only the retried request


async def test_truncated_body(
    fake: FakeDocument360, session: aiohttp.ClientSession, finished_export: str
) -> None:
    fake.faults.next("truncated")
    with pytest.raises(aiohttp.ClientPayloadError):
        await fetch(session, export_url(fake, finished_export), auth(fake))
    assert fake.operation(finished_export).first_terminal_served_at is None
    assert (await fetch(session, export_url(fake, finished_export), auth(fake)))[0] == 200


async def test_slow_response_times_out_then_is_not_counted(
    fake: FakeDocument360,
    session: aiohttp.ClientSession,
    finished_export: str,
    clock: ManualClock,
) -> None:
    fake.faults.next("slow", delay=0.06)  # on the fake's clock, which the test moves
    timeout = aiohttp.ClientTimeout(total=0.02)  # on the real one
    with pytest.raises(asyncio.TimeoutError):
        async with session.get(
            export_url(fake, finished_export), headers=auth(fake), timeout=timeout
        ) as response:
            await response.read()
    await clock.run_for(0.06)  # the server sees the client gone, then the delay ends
    for _ in range(400):  # until the slow handler wakes and finds its client gone
        if fake.stats.by_status[0]:
            break
        await asyncio.sleep(0.005)
    assert fake.stats.by_status[0] == 1  # dropped, not answered
    assert fake.operation(finished_export).first_terminal_served_at is None


async def test_slow_response_that_arrives_counts(
    fake: FakeDocument360,
    session: aiohttp.ClientSession,
    finished_export: str,
    clock: ManualClock,
) -> None:
    fake.faults.next("slow", delay=0.02)
    started = clock.now
    code, _, _ = await clock.run(fetch(session, export_url(fake, finished_export), auth(fake)))
    assert code == 200
    assert clock.now - started == pytest.approx(0.02)  # the delay, on the fake's clock
    assert fake.operation(finished_export).polls == 1


def data_of(body: bytes) -> Any:
    return json.loads(body)["data"]


async def test_unknown_status(
    fake: FakeDocument360, session: aiohttp.ClientSession, finished_export: str
) -> None:
    fake.faults.next("unknown_status")
    _, _, body = await fetch(session, export_url(fake, finished_export), auth(fake))
    assert data_of(body)["status"] == "Hibernating"
    assert fake.operation(finished_export).first_terminal_served_at is None


async def test_unknown_status_on_int_and_sd_bodies(
    fake: FakeDocument360, session: aiohttp.ClientSession
) -> None:
    [task_id] = fake.seed("v2.delete_file")
    fake.faults.next("unknown_status", route="v2.*")
    url = f"{fake.url}/v2/Drive/Folders/DeleteFile/Status/{task_id}"
    _, _, body = await fetch(session, url, {"api_token": fake.v2_api_token})
    assert json.loads(body)["task_status"]["status"] == 97
    fake.set_status(task_id, None)  # a null status is served as null
    _, _, body = await fetch(session, url, {"api_token": fake.v2_api_token})
    assert json.loads(body)["task_status"]["status"] is None


async def test_extra_and_missing_fields(
    fake: FakeDocument360, session: aiohttp.ClientSession, finished_export: str
) -> None:
    fake.faults.next("extra_fields")
    fake.faults.next("missing_fields")
    _, _, extra = await fetch(session, export_url(fake, finished_export), auth(fake))
    assert "x_unexpected" in json.loads(extra)
    assert "x_unexpected" in data_of(extra)
    assert data_of(extra)["status"] == "Completed"
    _, _, missing = await fetch(session, export_url(fake, finished_export), auth(fake))
    assert data_of(missing) == {"id": finished_export, "status": "Completed"}
    assert "request_id" not in json.loads(missing)
    assert fake.operation(finished_export).polls == 0


async def test_one_shots_target_routes_and_run_in_order(
    fake: FakeDocument360, session: aiohttp.ClientSession, finished_export: str
) -> None:
    [task_id] = fake.seed("v3.drive_task")
    drive = f"{fake.url}/v3/projects/{DEFAULT_PROJECT_ID}/drive/tasks/{task_id}"
    fake.faults.next("http_500", count=2, route="v3.drive_task")
    fake.faults.next("http_503", route="v3.exports.*")
    assert (await fetch(session, export_url(fake, finished_export), auth(fake)))[0] == 503
    assert (await fetch(session, drive, auth(fake)))[0] == 500
    assert (await fetch(session, export_url(fake, finished_export), auth(fake)))[0] == 200
    assert (await fetch(session, drive, auth(fake)))[0] == 500
    assert (await fetch(session, drive, auth(fake)))[0] == 200
    assert fake.faults.scheduled == 0


async def test_rates_are_seeded_and_reproducible(
    clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    async def run() -> list[int]:
        async with FakeDocument360(clock=clock, rate_limit=None, seed=42) as fake:
            url = export_url(fake, fake.seed("v3.export")[0])
            fake.faults.set("http_500", 0.1)
            fake.faults.set("http_503", 0.1)
            assert fake.faults.rates == {"http_500": 0.1, "http_503": 0.1}
            return [(await fetch(session, url, auth(fake)))[0] for _ in range(300)]

    first, second = await run(), await run()
    assert first == second
    faulted = sum(code != 200 for code in first)
    assert 30 <= faulted <= 90  # 20 % of 300, give or take
    assert {500, 503} <= set(first)


async def test_rate_zero_and_clear_turn_faults_off(
    fake: FakeDocument360, session: aiohttp.ClientSession, finished_export: str
) -> None:
    fake.faults.set("http_500", 1.0)
    assert (await fetch(session, export_url(fake, finished_export), auth(fake)))[0] == 500
    fake.faults.set("http_500", 0.0)
    assert fake.faults.rates == {}
    fake.faults.set("abort", 1.0, routes="v2.*")
    fake.faults.next("http_500", count=5)
    fake.faults.clear()
    assert (await fetch(session, export_url(fake, finished_export), auth(fake)))[0] == 200
    assert "FakeFaults" in repr(fake.faults)


def test_fault_configuration_is_validated(fake: FakeDocument360) -> None:
    with pytest.raises(ValueError, match="rate"):
        fake.faults.set("http_500", 1.5)
    with pytest.raises(ValueError, match="no route"):
        fake.faults.set("http_500", 0.1, routes="v4.*")
    with pytest.raises(ValueError, match="does not apply"):
        fake.faults.next("unknown_status", route="v3.exports.create")
    with pytest.raises(ValueError, match="does not apply"):
        fake.faults.next("expired_link", route="v3.*")
    with pytest.raises(ValueError, match="count"):
        fake.faults.next("abort", count=0)
    with pytest.raises(ValueError, match="unknown fault"):
        fake.faults.next("gremlins")  # type: ignore[arg-type]
    fake.faults.set("http_500", 0.7)
    with pytest.raises(ValueError, match="add up"):
        fake.faults.set("http_503", 0.5)
    assert fake.faults.rates == {"http_500": 0.7}  # a refused change leaves things as they were


async def test_faults_do_not_touch_downloads_or_token_by_default(
    fake: FakeDocument360, session: aiohttp.ClientSession, finished_export: str
) -> None:
    fake.faults.set("http_500", 1.0)
    link = fake.download_url(finished_export)
    assert (await fetch(session, link, {}))[0] == 200
    form = {
        "grant_type": "client_credentials",
        "client_id": fake.sd_client_id,
        "client_secret": fake.sd_client_secret,
    }
    async with session.post(f"{fake.url}/connect/token", data=form) as response:
        assert response.status == 200


async def test_faults_on_sd_and_download_routes(
    fake: FakeDocument360, session: aiohttp.ClientSession, finished_export: str
) -> None:
    fake.faults.next("http_500", route="download")
    code, headers, _body = await fetch(session, fake.download_url(finished_export), {})
    assert code == 500
    assert headers["Content-Type"].startswith("application/xml")
    fake.faults.next("http_503", route="sd.token")
    async with session.post(f"{fake.url}/connect/token", data={}) as response:
        assert response.status == 503
        assert await response.read() == b""
