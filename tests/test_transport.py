"""The transport against a real FakeDocument360: errors, retries, auth, lifecycle, secrets."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yarl
from multidict import CIMultiDict, CIMultiDictProxy

from d360_async._core._config import Hooks, RequestEvent, ResponseEvent, RetryEvent, Timeouts
from d360_async._core._errors import (
    AuthenticationError,
    ConnectError,
    CredentialsUnavailable,
    D360Error,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    ServerError,
    ValidationError,
)
from d360_async._core._response import Response, check_v2, unwrap_v3
from d360_async._core._retry import RetryPolicy
from d360_async._limiters import LocalRateLimiter, RateLimitConfig
from d360_async._transport._auth import ApiTokenAuth, BearerAuth
from d360_async._transport._transport import USER_AGENT, Transport
from d360_async.testing import DEFAULT_PROJECT_ID, FakeDocument360, FakeRateLimit, ManualClock

TOKEN = "test-api-token"
V2_TOKEN = "test-v2-token"


class RecordingClock(ManualClock):
    """Records the delays the transport asks for instead of sleeping them (time stands still)."""

    __slots__ = ("delays",)

    def __init__(self) -> None:
        super().__init__()
        self.delays: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDocument360]:
    async with FakeDocument360(rate_limit=None) as server:
        yield server


def make_transport(fake: FakeDocument360, **kw: Any) -> Transport:
    kw.setdefault("limiter", LocalRateLimiter(RateLimitConfig(rate=10_000, period=1)))
    kw.setdefault("clock", RecordingClock())
    kw.setdefault("rng", random.Random(7))
    return Transport(base_url=fake.url, **kw)


def export_path(export_id: str) -> str:
    return f"/v3/projects/{DEFAULT_PROJECT_ID}/exports/{export_id}"


async def test_success_returns_decoded_data(fake: FakeDocument360) -> None:
    (export_id,) = fake.seed("v3.export", 1)
    transport = make_transport(fake)
    try:
        data = await transport.request_decoded(
            "GET", export_path(export_id), unwrap_v3, auth=BearerAuth(TOKEN)
        )
    finally:
        await transport.aclose()
    assert data["id"] == export_id
    assert data["status"] == "Pending"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        pytest.param("http_500", ServerError, id="500"),
        pytest.param("html_502", ServerError, id="html-502"),
        pytest.param("malformed_json", MalformedResponse, id="malformed-200"),
        pytest.param("truncated", (ProtocolError, MalformedResponse), id="truncated"),
    ],
)
async def test_persistent_fault_raises_documented_error(
    fake: FakeDocument360, fault: Any, expected: Any
) -> None:
    (export_id,) = fake.seed("v3.export", 1)
    fake.faults.set(fault, 1.0, routes="v3.exports.get")
    transport = make_transport(fake, retry=RetryPolicy(max_attempts=3))
    try:
        with pytest.raises(expected) as info:
            await transport.request_decoded(
                "GET", export_path(export_id), unwrap_v3, auth=BearerAuth(TOKEN)
            )
    finally:
        await transport.aclose()
    assert isinstance(info.value, D360Error)
    assert info.value.method == "GET"
    assert export_id in (info.value.url or "")
    # Three attempts were made: the policy's max, each a real request.
    assert fake.stats.by_route.get("v3.exports.get", 0) >= 3


async def test_500_carries_trace_id_from_problem_body(fake: FakeDocument360) -> None:
    (export_id,) = fake.seed("v3.export", 1)
    fake.faults.set("http_500", 1.0, routes="v3.exports.get")
    transport = make_transport(fake, retry=RetryPolicy(max_attempts=1))
    try:
        with pytest.raises(ServerError) as info:
            await transport.request("GET", export_path(export_id), auth=BearerAuth(TOKEN))
    finally:
        await transport.aclose()
    assert info.value.status == 500
    assert info.value.trace_id
    assert info.value.trace_id in str(info.value)


async def test_401_problem_body(fake: FakeDocument360) -> None:
    (export_id,) = fake.seed("v3.export", 1)
    transport = make_transport(fake)
    try:
        with pytest.raises(AuthenticationError) as info:
            await transport.request("GET", export_path(export_id), auth=BearerAuth("wrong"))
    finally:
        await transport.aclose()
    assert info.value.status == 401
    assert info.value.trace_id
    assert info.value.errors
    assert info.value.errors[0].code == "UNAUTHORIZED"
    # Not retried: a 401 with a static token cannot get better.
    assert fake.stats.by_route["v3.exports.get"] == 1


async def test_401_empty_gateway_body() -> None:
    async with FakeDocument360(rate_limit=None, empty_401=True) as fake:
        (export_id,) = fake.seed("v3.export", 1)
        transport = make_transport(fake)
        try:
            with pytest.raises(AuthenticationError) as info:
                await transport.request("GET", export_path(export_id), auth=BearerAuth("nope"))
        finally:
            await transport.aclose()
    assert info.value.status == 401


async def test_404_problem_body(fake: FakeDocument360) -> None:
    transport = make_transport(fake)
    missing = "9a3b4c5d-6e7f-8a9b-0c1d-2e3f4a5b6c7d"
    try:
        with pytest.raises(NotFound) as info:
            await transport.request("GET", export_path(missing), auth=BearerAuth(TOKEN))
    finally:
        await transport.aclose()
    assert info.value.trace_id
    assert info.value.errors[0].code == "RESOURCE_NOT_FOUND"


async def test_smartdocumentor_empty_404(fake: FakeDocument360) -> None:
    transport = make_transport(fake)
    try:
        form = {
            "grant_type": "client_credentials",
            "client_id": "sd-client",
            "client_secret": "sd-secret",
            "scope": "WebAPI",
        }
        token = (await transport.request("POST", "/connect/token", auth=None, data=form)).json()
        with pytest.raises(NotFound) as info:
            await transport.request(
                "GET",
                "/api/v1.0/external/sdtask/status",
                params={"taskId": 987654},
                auth=BearerAuth(token["access_token"]),
            )
    finally:
        await transport.aclose()
    assert info.value.status == 404


async def test_v2_success_false_is_an_error(fake: FakeDocument360) -> None:
    transport = make_transport(fake)
    try:
        with pytest.raises(ValidationError) as info:
            await transport.request_decoded(
                "GET",
                "/v2/Project/Export/no-such-export",
                check_v2,
                auth=ApiTokenAuth(V2_TOKEN),
            )
    finally:
        await transport.aclose()
    assert info.value.status == 400


async def test_403_on_expired_download_link(fake: FakeDocument360) -> None:
    (export_id,) = fake.seed("v3.export", 1)
    transport = make_transport(fake)
    try:
        with pytest.raises(PermissionDenied) as info:
            async with transport.stream("GET", fake.download_url(export_id, ttl=-1)):
                pass
    finally:
        await transport.aclose()
    assert "sig=" not in str(info.value) or "REDACTED" in str(info.value)


async def test_429_beyond_cap_raises_rate_limited_with_retry_at() -> None:
    limit = FakeRateLimit(limit=1, window=600, headers=False)
    async with FakeDocument360(rate_limit=limit) as fake:
        (export_id,) = fake.seed("v3.export", 1)
        transport = make_transport(fake, retry=RetryPolicy(max_retry_after=60))
        try:
            await transport.request("GET", export_path(export_id), auth=BearerAuth(TOKEN))
            with pytest.raises(RateLimited) as info:
                await transport.request("GET", export_path(export_id), auth=BearerAuth(TOKEN))
        finally:
            await transport.aclose()
    assert info.value.retry_at is not None
    assert info.value.rate_limit is not None


async def test_retry_after_on_503_is_honoured(fake: FakeDocument360) -> None:
    (export_id,) = fake.seed("v3.export", 1)
    fake.faults.next("http_503", count=2, route="v3.exports.get", retry_after=3)
    sleep = RecordingClock()
    transport = make_transport(fake, clock=sleep)
    try:
        await transport.request("GET", export_path(export_id), auth=BearerAuth(TOKEN))
    finally:
        await transport.aclose()
    assert len(sleep.delays) == 2
    for delay in sleep.delays:
        assert 3.0 <= delay <= 3.0 * 1.1 + 1e-9


async def test_backoff_delays_within_full_jitter_bounds(fake: FakeDocument360) -> None:
    (export_id,) = fake.seed("v3.export", 1)
    fake.faults.next("http_500", count=3, route="v3.exports.get")
    sleep = RecordingClock()
    policy = RetryPolicy(max_attempts=4, backoff_base=0.5, backoff_cap=20.0)
    transport = make_transport(fake, clock=sleep, retry=policy)
    try:
        await transport.request("GET", export_path(export_id), auth=BearerAuth(TOKEN))
    finally:
        await transport.aclose()
    assert len(sleep.delays) == 3
    for attempt, delay in enumerate(sleep.delays, start=1):
        assert 0.0 <= delay <= 0.5 * 2 ** (attempt - 1)


async def test_quota_stops_retries_during_sustained_outage(fake: FakeDocument360) -> None:
    (export_id,) = fake.seed("v3.export", 1)
    fake.faults.set("http_500", 1.0, routes="v3.exports.get")
    policy = RetryPolicy(max_attempts=5, quota=20, retry_cost=5)
    transport = make_transport(fake, retry=policy)
    try:
        for _ in range(10):
            with pytest.raises(ServerError):
                await transport.request("GET", export_path(export_id), auth=BearerAuth(TOKEN))
    finally:
        await transport.aclose()
    # 10 calls; without a quota they would make 50 requests. The pool pays 4 retries in all.
    assert fake.stats.by_route["v3.exports.get"] == 10 + 4
    assert transport.retry_quota.available < 5


async def test_post_not_retried_on_500(fake: FakeDocument360) -> None:
    fake.faults.next("http_500", count=1, route="v3.exports.create")
    transport = make_transport(fake)
    body = {"workspace_id": "ws", "format": "pdf"}
    try:
        with pytest.raises(ServerError):
            await transport.request(
                "POST",
                f"/v3/projects/{DEFAULT_PROJECT_ID}/exports",
                auth=BearerAuth(TOKEN),
                json=body,
            )
    finally:
        await transport.aclose()
    assert fake.stats.by_route["v3.exports.create"] == 1


async def test_token_provider_asked_again_once_after_401(fake: FakeDocument360) -> None:
    (export_id,) = fake.seed("v3.export", 1)
    tokens = iter(["stale-token", TOKEN, "never-used"])
    calls: list[str] = []

    async def provider() -> str:
        token = next(tokens)
        calls.append(token)
        return token

    transport = make_transport(fake)
    try:
        response = await transport.request("GET", export_path(export_id), auth=BearerAuth(provider))
    finally:
        await transport.aclose()
    assert response.status == 200
    assert calls == ["stale-token", TOKEN]


async def test_connect_error_is_mapped() -> None:
    async with FakeDocument360(rate_limit=None) as fake:
        url = fake.url
    clock = RecordingClock()  # the limiter paces the retry on this clock
    transport = Transport(
        base_url=url,
        limiter=LocalRateLimiter(clock=clock),
        clock=clock,
        retry=RetryPolicy(max_attempts=2),
    )
    try:
        with pytest.raises(ConnectError) as info:
            await clock.run(
                transport.request("GET", "/v3/projects/x/exports/y", auth=BearerAuth(TOKEN))
            )
    finally:
        await transport.aclose()
    # aiohttp's exception (which can carry the full URL) is not chained, only the OS reason.
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert not isinstance(info.value.__cause__, aiohttp.ClientError)
    assert info.value.__context__ is None
    assert info.value.cause_type == "ClientConnectorError"


async def test_user_agent_and_bearer_sent(fake: FakeDocument360) -> None:
    seen: dict[str, str] = {}

    async def capture(event: RequestEvent) -> None:
        seen["url"] = event.url

    (export_id,) = fake.seed("v3.export", 1)
    transport = make_transport(fake, hooks=Hooks(on_request=[capture]))
    try:
        await transport.request("GET", export_path(export_id), auth=BearerAuth(TOKEN))
    finally:
        await transport.aclose()
    assert USER_AGENT.startswith("d360-async/")
    assert seen["url"].endswith(export_path(export_id))


async def test_hooks_see_request_response_and_retry(fake: FakeDocument360) -> None:
    events: list[object] = []
    (export_id,) = fake.seed("v3.export", 1)
    fake.faults.next("http_500", count=1, route="v3.exports.get")
    hooks = Hooks(on_request=[events.append], on_response=[events.append], on_retry=[events.append])
    transport = make_transport(fake, hooks=hooks)
    try:
        await transport.request("GET", export_path(export_id), auth=BearerAuth(TOKEN))
    finally:
        await transport.aclose()
    kinds = [type(e) for e in events]
    assert kinds == [RequestEvent, ResponseEvent, RetryEvent, RequestEvent, ResponseEvent]


async def test_idle_hooks_get_no_events_for_a_call(fake: FakeDocument360) -> None:
    """Hooks that say they would do nothing now (the telemetry's, while no SDK records) get no
    event for a call that starts then; once they are not idle, every event comes again."""
    events: list[object] = []
    idle = [True]
    (export_id,) = fake.seed("v3.export", 1)
    hooks = Hooks(
        on_request=[events.append],
        on_response=[events.append],
        on_retry=[events.append],
        on_limiter_wait=[events.append],
        on_request_end=[events.append],
    )._idle_when(lambda: idle[0])
    transport = make_transport(fake, hooks=hooks)
    try:
        await transport.request("GET", export_path(export_id), auth=BearerAuth(TOKEN))
        assert events == []
        idle[0] = False
        await transport.request("GET", export_path(export_id), auth=BearerAuth(TOKEN))
    finally:
        await transport.aclose()
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["LimiterWaitEvent", "RequestEvent", "ResponseEvent", "RequestEndEvent"]


async def test_a_limiter_subclass_overriding_its_coroutines_keeps_them_called(
    fake: FakeDocument360,
) -> None:
    """The transport admits and settles through LocalRateLimiter's synchronous forms only
    while they are what its coroutines do: a subclass's own acquire and complete still run."""
    calls: list[str] = []

    class Counting(LocalRateLimiter):
        async def acquire(self, key: Any, *, priority: Any = None) -> Any:
            calls.append("acquire")
            return await super().acquire(key)

        async def complete(self, ticket: Any, *, status: Any, state: Any) -> None:
            calls.append("complete")
            await super().complete(ticket, status=status, state=state)

    (export_id,) = fake.seed("v3.export", 1)
    plain = LocalRateLimiter(RateLimitConfig(rate=10_000, period=1))
    counting = Counting(RateLimitConfig(rate=10_000, period=1))
    for limiter in (plain, counting):
        transport = make_transport(fake, limiter=limiter)
        try:
            await transport.request("GET", export_path(export_id), auth=BearerAuth(TOKEN))
        finally:
            await transport.aclose()
            await limiter.aclose()
    assert calls == ["acquire", "complete"]
    assert [s.requests for s in plain.stats()] == [1]


async def test_borrowed_session_is_not_closed(fake: FakeDocument360) -> None:
    (export_id,) = fake.seed("v3.export", 1)
    async with aiohttp.ClientSession() as session:
        transport = make_transport(fake, session=session)
        await transport.request("GET", export_path(export_id), auth=BearerAuth(TOKEN))
        await transport.aclose()
        assert not session.closed


async def test_closed_transport_cannot_be_reused(fake: FakeDocument360) -> None:
    transport = make_transport(fake)
    await transport.aclose()
    await transport.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await transport.request("GET", "/v3/projects/x/exports/y", auth=BearerAuth(TOKEN))


def test_base_url_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="absolute"):
        Transport(base_url="apihub.document360.io", limiter=LocalRateLimiter())


def test_timeouts_reject_non_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Timeouts(connect=0)


async def test_no_secret_in_reprs_errors_or_debug_logs(
    fake: FakeDocument360, caplog: pytest.LogCaptureFixture
) -> None:
    (export_id,) = fake.seed("v3.export", 1)
    fake.faults.next("http_500", count=1, route="v3.exports.get")
    secret_v3, secret_v2 = TOKEN, V2_TOKEN
    bearer, v2 = BearerAuth(secret_v3), ApiTokenAuth(secret_v2)
    transport = make_transport(fake)
    texts: list[str] = [repr(bearer), repr(v2), repr(transport)]
    caplog.set_level(logging.DEBUG)
    try:
        ok: Response = await transport.request("GET", export_path(export_id), auth=bearer)
        texts.append(repr(ok))
        for auth in (BearerAuth("bad-secret-token"), ApiTokenAuth("bad-v2-secret")):
            with pytest.raises(D360Error) as info:
                await transport.request("GET", export_path(export_id), auth=auth)
            texts += [str(info.value), repr(info.value)]
        async with transport.stream("GET", fake.download_url(export_id)) as stream:
            await stream.read()
        with pytest.raises(D360Error) as info:
            async with transport.stream("GET", fake.download_url(export_id, ttl=-1)):
                pass
        texts += [str(info.value), repr(info.value)]
    finally:
        await transport.aclose()
    texts += [record.getMessage() for record in caplog.records]
    blob = "\n".join(texts)
    for secret in (secret_v3, secret_v2, "bad-secret-token", "bad-v2-secret"):
        assert secret not in blob
    assert "sig=" not in blob.replace("sig=REDACTED", "")


async def test_budget_paused_beyond_cap_raises_instead_of_waiting() -> None:
    # The server says the window resets in 10 minutes; the cap is 60 s: no 10-minute hang.
    limit = FakeRateLimit(limit=2, window=600, reset_format="delay")
    async with FakeDocument360(rate_limit=limit) as fake:
        (export_id,) = fake.seed("v3.export", 1)
        transport = make_transport(
            fake,
            limiter=LocalRateLimiter(RateLimitConfig(rate=10_000, period=1)),
            retry=RetryPolicy(max_retry_after=60),
        )
        try:
            for _ in range(2):
                await transport.request("GET", export_path(export_id), auth=BearerAuth(TOKEN))
            with pytest.raises(RateLimited) as info:
                await transport.request("GET", export_path(export_id), auth=BearerAuth(TOKEN))
        finally:
            await transport.aclose()
        assert fake.stats.rate_limited == 0  # refused locally, never sent
    assert info.value.retry_at is not None


def test_too_many_redirects_is_named_and_not_chained() -> None:
    from d360_async._transport._transport import map_client_error

    info = aiohttp.RequestInfo(
        url=yarl.URL("https://h/blob?sig=abcdef123"),
        method="GET",
        headers=CIMultiDictProxy(CIMultiDict()),
    )
    raw = aiohttp.TooManyRedirects(info, history=(), status=0)
    error = map_client_error(raw, method="GET", url="https://h/blob?sig=REDACTED")
    assert isinstance(error, ProtocolError)
    assert str(error).startswith("too many redirects")
    assert error.cause_type == "TooManyRedirects"
    assert "abcdef123" not in repr(error)


class BrokenAuth:
    """A credential source of the caller's own that fails like real code does."""

    fingerprint = "fp:broken"

    def __init__(self) -> None:
        self.calls = 0

    async def apply(self, headers: dict[str, str]) -> None:
        self.calls += 1
        raise KeyError("vault entry 'd360' is missing")

    async def refresh(self) -> bool:
        return False

    def secrets(self) -> tuple[str, ...]:
        return ()


async def test_a_failing_credential_source_is_typed_and_retried() -> None:
    async with FakeDocument360(rate_limit=None) as fake:
        clock = RecordingClock()  # the limiter paces the retries on this clock
        transport = Transport(
            base_url=fake.url,
            limiter=LocalRateLimiter(clock=clock),
            clock=clock,
            retry=RetryPolicy(max_attempts=3),
        )
        auth = BrokenAuth()
        try:
            with pytest.raises(CredentialsUnavailable) as info:
                await clock.run(transport.request("GET", "/v3/projects/x/exports/y", auth=auth))
        finally:
            await transport.aclose()
    assert auth.calls == 3
    assert info.value.cause_type == "KeyError"
    assert info.value.__context__ is None
    assert info.value.method == "GET"
    assert "vault entry" in str(info.value)
    assert fake.stats.requests == 0, "nothing was sent without a credential"
