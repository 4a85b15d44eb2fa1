"""Seeding, operation records, counters, latency, scale, secrets, and clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import math
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from d360_async import TargetKind
from d360_async.testing import (
    DEFAULT_PROJECT_ID,
    FakeDocument360,
    FakeLifecycle,
    FakeRateLimit,
    ManualClock,
    token_fingerprint,
)


def export_url(fake: FakeDocument360, export_id: str) -> str:
    return f"{fake.url}/v3/projects/{DEFAULT_PROJECT_ID}/exports/{export_id}"


def auth(fake: FakeDocument360) -> dict[str, str]:
    return {"Authorization": f"Bearer {fake.api_token}"}


async def status_of(fake: FakeDocument360, session: aiohttp.ClientSession, op_id: str) -> int:
    async with session.get(export_url(fake, op_id), headers=auth(fake)) as response:
        await response.read()
        return response.status


# ---------------------------------------------------------------------------- seeding


def test_seeding_is_deterministic_per_seed(clock: ManualClock) -> None:
    def draw(seed: int) -> list[tuple[str, float, float]]:
        fake = FakeDocument360(clock=clock, seed=seed)
        ids = fake.seed("v3.export", 20, failure_ratio=0.5)
        return [
            (op.id, op.running_at, op.finished_at)
            for op in (fake.operation(op_id) for op_id in ids)
        ]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_seeded_ranges_and_ratios(clock: ManualClock) -> None:
    fake = FakeDocument360(clock=clock)
    ids = fake.seed(
        "v3.export", 1000, pending=(1.0, 3.0), running=(5.0, 10.0), failure_ratio=0.3, start=50.0
    )
    ops = [fake.operation(op_id) for op_id in ids]
    assert all(op.started_at == 50.0 for op in ops)
    assert all(1.0 <= op.running_at - op.started_at <= 3.0 for op in ops)
    assert all(5.0 <= op.finished_at - op.running_at <= 10.0 for op in ops)
    failed = sum(op.outcome == "failed" for op in ops)
    assert 240 <= failed <= 360
    assert fake.operations("v3.drive_task") == []
    assert len(fake.operations("v3.export")) == len(fake.operations()) == 1000


def test_stuck_operations_never_finish(clock: ManualClock) -> None:
    fake = FakeDocument360(clock=clock)
    [op_id] = fake.seed("v3.export", stuck_ratio=1.0, pending=1.0)
    clock.advance(1e6)
    op = fake.operation(op_id)
    assert math.isinf(op.finished_at)
    assert op.outcome is None
    assert op.raw_status == "InProgress"
    assert not op.terminal
    assert op.detection_delay is None


@pytest.mark.parametrize("kind", list(TargetKind))
def test_every_kind_reaches_a_terminal_status(clock: ManualClock, kind: TargetKind) -> None:
    fake = FakeDocument360(clock=clock)
    [op_id] = fake.seed(kind, pending=1.0, running=1.0, review=1.0)
    assert fake.operation(op_id).kind is kind
    assert not fake.operation(op_id).terminal
    clock.advance(3.5)
    assert fake.operation(op_id).terminal


def test_seed_and_lookup_validation(clock: ManualClock) -> None:
    fake = FakeDocument360(clock=clock)
    with pytest.raises(ValueError, match="unknown kind"):
        fake.seed("webhook", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        fake.seed("v3.export", -1)
    with pytest.raises(ValueError, match="low <= high"):
        fake.seed("v3.export", pending=(3.0, 1.0))
    with pytest.raises(ValueError, match="within"):
        FakeLifecycle(failure_ratio=2.0)
    with pytest.raises(KeyError):
        fake.operation("nope")
    with pytest.raises(RuntimeError, match="not running"):
        _ = fake.url


def test_default_lifecycle_is_configurable(clock: ManualClock) -> None:
    fake = FakeDocument360(clock=clock, lifecycle=FakeLifecycle(pending=4.0, running=6.0))
    [op_id] = fake.seed("v3.import")
    assert fake.operation(op_id).finished_at == clock.now + 10.0
    fake.lifecycle = FakeLifecycle(pending=0.0, running=1.0)
    [quick] = fake.seed("v3.import")
    assert fake.operation(quick).finished_at == clock.now + 1.0


async def test_terminal_served_time_and_polls(
    fake: FakeDocument360, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    [op_id] = fake.seed("v3.export", pending=1.0, running=4.0)
    await status_of(fake, session, op_id)
    clock.advance(5.0)  # finished exactly now
    clock.advance(2.5)
    await status_of(fake, session, op_id)
    clock.advance(3.0)
    await status_of(fake, session, op_id)
    op = fake.operation(op_id)
    assert op.polls == 3
    assert op.first_terminal_served_at == op.finished_at + 2.5
    assert op.detection_delay == pytest.approx(2.5)


# ---------------------------------------------------------------------------- counters


async def test_stats_count_routes_statuses_tokens_and_times(
    clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    async with FakeDocument360(clock=clock, rate_limit=FakeRateLimit(limit=3)) as fake:
        [op_id] = fake.seed("v3.export")
        for _ in range(4):
            await status_of(fake, session, op_id)
            clock.advance(0.5)
        async with session.get(export_url(fake, op_id)) as response:
            assert response.status == 401
        stats = fake.stats
        assert stats.requests == 5
        assert stats.by_route["v3.exports.get"] == 5
        assert stats.by_status == {200: 3, 429: 1, 401: 1}
        assert stats.by_route_status["v3.exports.get", 429] == 1
        assert stats.requests_for_token(fake.api_token) == 4
        assert stats.by_token["-"] == 1
        assert token_fingerprint(fake.api_token) in stats.by_token
        assert stats.request_times == [1000.0, 1000.5, 1001.0, 1001.5, 1002.0]
        assert stats.admitted_times == [1000.0, 1000.5, 1001.0]
        assert stats.histogram(1.0) == {1000.0: 2, 1001.0: 2, 1002.0: 1}
        assert stats.histogram(10.0, admitted_only=True) == {1000.0: 3}
        assert fake.api_token not in repr(stats)
        fake.reset_stats()
        assert fake.stats.requests == 0
        assert fake.stats.request_times == []
        assert fake.operation(op_id).polls == 3  # operations keep their counts


# ---------------------------------------------------------------------------- latency, scale


async def test_latency_delays_every_response(
    clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    async with FakeDocument360(clock=clock, rate_limit=None, latency=(0.02, 0.03)) as fake:
        [op_id] = fake.seed("v3.export")
        started = clock.now
        await clock.run(asyncio.gather(*(status_of(fake, session, op_id) for _ in range(50))))
        elapsed = clock.now - started
    # On the fake's clock; concurrent: serial would take 50 x 0.02 s at least.
    assert 0.02 <= elapsed <= 0.03


async def test_ten_thousand_operations_and_concurrent_clients(
    clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    async with FakeDocument360(clock=clock, rate_limit=FakeRateLimit(limit=100_000)) as fake:
        ids = fake.seed("v3.export", 10_000, pending=(0, 5), running=(5, 50), failure_ratio=0.1)
        assert len(set(ids)) == 10_000
        clock.advance(60)
        sample = ids[::40]
        statuses = await asyncio.gather(*(status_of(fake, session, op_id) for op_id in sample))
        assert statuses == [200] * len(sample)
        assert all(fake.operation(op_id).first_terminal_served_at == clock.now for op_id in sample)
        assert fake.stats.requests == 250


# ---------------------------------------------------------------------------- secrets


async def test_no_secret_reaches_logs_or_reprs(
    clock: ManualClock, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeDocument360(clock=clock, rate_limit=None) as fake:
        [op_id] = fake.seed("v3.export", pending=0.0, running=0.0)
        await status_of(fake, session, op_id)
        wrong = {"Authorization": "Bearer wrong-token-zz9"}
        async with session.get(export_url(fake, op_id), headers=wrong):
            pass
        form = {
            "grant_type": "client_credentials",
            "client_id": fake.sd_client_id,
            "client_secret": fake.sd_client_secret,
        }
        async with session.post(f"{fake.url}/connect/token", data=form) as response:
            access_token = (await response.json())["access_token"]
        link = fake.download_url(op_id)
        async with session.get(link) as response:
            await response.read()
        signature = parse_qs(urlsplit(link).query)["sig"][0]
        texts = [record.getMessage() for record in caplog.records]
        texts += [repr(fake), repr(fake.stats), repr(fake.faults)]
        assert any("v3.exports.get" in text for text in texts)  # it did log, at DEBUG
        secrets = (fake.api_token, fake.sd_client_secret, access_token, signature, "zz9")
        for secret in secrets:
            assert not any(secret in text for text in texts), secret


# ---------------------------------------------------------------------------- shutdown


async def test_stop_closes_kept_alive_connections_cleanly(clock: ManualClock) -> None:
    fake = FakeDocument360(clock=clock, rate_limit=None)
    await fake.start()
    assert fake.running
    async with aiohttp.ClientSession() as session:
        [op_id] = fake.seed("v3.export")
        url = export_url(fake, op_id)
        async with session.get(url, headers=auth(fake)) as response:
            assert response.status == 200  # the connection is kept alive
        await fake.stop()
        assert not fake.running
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(url, headers=auth(fake)):
                pass
    await fake.aclose()  # idempotent


async def test_stop_wakes_slow_requests(clock: ManualClock) -> None:
    fake = FakeDocument360(clock=clock, rate_limit=None)
    await fake.start()
    [op_id] = fake.seed("v3.export")
    fake.faults.set("slow", 1.0, delay=60.0)
    async with aiohttp.ClientSession() as session:
        request = asyncio.create_task(status_of(fake, session, op_id))
        for _ in range(200):  # until the request is held by the slow fault
            if fake.stats.faults["slow"]:
                break
            await asyncio.sleep(0.005)
        assert fake.stats.faults["slow"] == 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        await fake.stop()
        assert loop.time() - started < 2.0
        with pytest.raises(aiohttp.ClientError):
            await request
    assert fake.operation(op_id).polls == 0


async def test_restart_serves_the_same_state(clock: ManualClock) -> None:
    async with FakeDocument360(clock=clock, rate_limit=None) as fake:
        with pytest.raises(RuntimeError, match="already running"):
            await fake.start()
        [op_id] = fake.seed("v3.export")
        first_url = fake.url
        await fake.stop()
        await fake.start()
        assert fake.url == first_url
        async with aiohttp.ClientSession() as session:
            assert await status_of(fake, session, op_id) == 200
        assert "operations=1" in repr(fake)


@pytest.mark.parametrize(
    ("old", "kind"),
    [
        ("export", TargetKind.V3_EXPORT),
        ("drive_task", TargetKind.V3_DRIVE_TASK),
        ("import", TargetKind.V3_IMPORT),
        ("api_reference", TargetKind.V3_API_REFERENCE),
        ("v2_delete", TargetKind.V2_DELETE_FILE),
        ("v2_export", TargetKind.V2_EXPORT),
        ("v2_import", TargetKind.V2_IMPORT),
        ("sd_task", TargetKind.SMARTDOCUMENTOR_TASK),
    ],
)
def test_the_old_seed_names_still_work_and_warn(
    clock: ManualClock, old: str, kind: TargetKind
) -> None:
    fake = FakeDocument360(clock=clock)
    with pytest.warns(DeprecationWarning, match=rf"seed kind '{old}' is deprecated.*{kind.name}"):
        [op_id] = fake.seed(old)
    assert fake.operation(op_id).kind is kind
    with pytest.warns(DeprecationWarning, match=kind.name):
        assert [op.id for op in fake.operations(old)] == [op_id]
    # The canonical names, as members or as their values, do not warn (-W error).
    assert [op.id for op in fake.operations(kind)] == [op_id]
    assert [op.id for op in fake.operations(kind.value)] == [op_id]


def test_the_old_kind_vocabulary_names_are_deprecated_aliases() -> None:
    import d360_async.testing as testing

    with pytest.warns(DeprecationWarning, match=r"OperationKind is deprecated: use d360_async\."):
        assert testing.OperationKind is TargetKind  # type: ignore[attr-defined]
    with pytest.warns(DeprecationWarning, match="OPERATION_KINDS is deprecated"):
        assert tuple(TargetKind) == testing.OPERATION_KINDS  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="NoSuchName"):
        _ = testing.NoSuchName  # type: ignore[attr-defined]
