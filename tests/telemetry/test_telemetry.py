"""OpenTelemetry spans and metrics against the fake server, counted against its own stats."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from d360_async import (
    Client,
    Hooks,
    LimiterWaitEvent,
    PollPolicy,
    RateLimitConfig,
    RequestEndEvent,
    RequestEvent,
    RetryPolicy,
    TargetFinished,
    Transition,
    TransitionKind,
)
from d360_async._core._redact import fingerprint
from d360_async.testing import FakeDocument360, FakeLifecycle, FakeRateLimit, ManualClock

from .conftest import FAST, Otel

BUDGET = 400  # requests per second, the fake's and the client's


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings(item)]
    return [str(value)]


def _everything_exported(otel: Otel) -> list[str]:
    """Every string a backend would receive: span names, attributes, events, metric labels."""
    texts: list[str] = []
    for span in otel.spans():
        texts.append(span.name)
        for key, value in (span.attributes or {}).items():
            texts += [key, *_strings(value)]
        if span.status.description:
            texts.append(span.status.description)
        for event in span.events:
            texts.append(event.name)
            for key, value in (event.attributes or {}).items():
                texts += [key, *_strings(value)]
    data = otel.reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                texts.append(metric.name)
                for point in metric.data.data_points:
                    for key, value in point.attributes.items():
                        texts += [key, *_strings(value)]
    return texts


def _assert_no_secret(texts: list[str], *secrets: str) -> None:
    assert texts
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"secret in {text!r}"
        assert "sig=" not in text.lower() or "sig=REDACTED" in text, text
        assert "Bearer" not in text, text


def _resends(span: ReadableSpan) -> int:
    return int((span.attributes or {}).get("http.request.resend_count", 0))


async def _exhaust_budget(fake: FakeDocument360, export_id: str) -> None:
    """Spend the fake's whole window behind the client's back, so its first polls get 429s."""
    url = f"{fake.url}/v3/projects/{fake.project_id}/exports/{export_id}"
    headers = {"Authorization": f"Bearer {fake.api_token}"}
    async with aiohttp.ClientSession() as session:
        for _ in range(BUDGET + 1):
            async with session.get(url, headers=headers) as response:
                await response.read()
                if response.status == 429:
                    return
    raise AssertionError("the fake never answered 429")


async def test_a_watch_with_faults_and_429s_is_counted_exactly(
    otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="d360_async")
    lifecycle = FakeLifecycle(pending=(0.2, 0.8), running=(0.3, 1.2), failure_ratio=0.1)
    # Fake, client, limiter and watch on one ManualClock: lifecycles, 429 pauses and retry
    # back-offs take no real time (the client's own clock reading comes from it too).
    clock = ManualClock()
    fake = FakeDocument360(
        rate_limit=FakeRateLimit(limit=BUDGET, window=1.0),
        lifecycle=lifecycle,
        seed=11,
        clock=clock,
    )
    transitions: list[Transition[Any]] = []
    async with fake, clock.autoadvance():
        ids = fake.seed("v3.export", 300)
        fake.faults.set("http_500", 0.04)
        # No dropped connections: aiohttp resends a request silently when a kept-alive
        # connection was closed under it, so the server would count an attempt twice.
        fake.faults.set("html_502", 0.02)
        fake.faults.set("malformed_json", 0.02)
        await _exhaust_budget(fake, ids[0])
        fake.reset_stats()
        async with Client(
            api_token=fake.api_token,
            base_url=fake.url,
            rate_limit=RateLimitConfig(rate=BUDGET, period=1.0),
            telemetry=otel.telemetry,
            clock=clock,
        ) as client:
            targets = [client.exports.target(fake.project_id, export_id) for export_id in ids]
            policy = PollPolicy(interval=0.2, max_interval=1.0)
            async with client.watch(targets, policy=policy, max_concurrency=32) as watch:
                transitions = [t async for t in watch]
            stats = fake.stats
            base = f"{fake.url}/v3/projects/{fake.project_id}/"
            limiter_stats = client.rate_limit_stats()
            gauges = {
                name: otel.points(f"d360.rate_limit.{name}")
                for name in ("limit", "remaining", "reset")
            }

    # The watch itself went as a watch should.
    finals = [t for t in transitions if t.final]
    assert len(finals) == 300
    assert all(t.kind is TransitionKind.CHANGED and t.phase.is_terminal for t in finals)
    assert stats.rate_limited >= 1, "the test must include a 429"
    assert stats.faults["http_500"]
    assert stats.faults["html_502"]
    assert stats.faults["malformed_json"]

    # One CLIENT span per call (per poll), following the HTTP client conventions.
    spans = otel.ours()
    assert spans
    for span in spans:
        attributes = span.attributes or {}
        assert span.kind is SpanKind.CLIENT
        assert span.name == "GET /v3/projects/{id}/exports/{id}"
        assert attributes["http.request.method"] == "GET"
        assert attributes["server.address"] == "127.0.0.1"
        assert str(attributes["url.full"]).startswith(base)
        assert attributes["d360.api"] == "v3"
        if span.status.status_code is StatusCode.ERROR:
            assert attributes["error.type"]
    # Every attempt the server saw is one span's first attempt or one of its resends...
    assert sum(1 + _resends(span) for span in spans) == stats.requests
    # ...and every resend was announced by a retry event carrying its reason and delay.
    retries = [e for span in spans for e in span.events if e.name == "d360.retry"]
    assert len(retries) == sum(_resends(span) for span in spans) > 0
    reasons = Counter(e.attributes["d360.retry.reason"] for e in retries)  # type: ignore[index]
    assert reasons["500"] >= 1, reasons
    assert reasons["429"] >= 1, reasons
    assert all(e.attributes["d360.retry.delay"] >= 0 for e in retries)  # type: ignore[index]
    # A 429 pauses the key: later attempts wait for the limiter, and say so.
    waits = [e for span in spans for e in span.events if e.name == "d360.rate_limit.wait"]
    assert waits
    assert all(e.attributes["d360.rate_limit.waited"] > 0 for e in waits)

    # Request metrics agree with the server's own counts, status by status.
    assert otel.total("d360.requests") == stats.requests
    for status, count in stats.by_status.items():
        if status == 0:  # dropped connection: no status
            assert otel.total("d360.requests", **{"d360.status_class": "none"}) == count
        else:
            assert otel.total("d360.requests", **{"http.response.status_code": status}) == count
    assert otel.total("d360.rate_limit.throttled") == stats.rate_limited
    assert otel.total("http.client.request.duration") == stats.requests - stats.by_status[0]
    # Every attempt was admitted by the limiter, and its wait recorded.
    assert otel.total("d360.rate_limit.wait") == stats.requests

    # Watch metrics agree with what the consumer received.
    by_kind = Counter(t.kind.value for t in transitions)
    for kind, count in by_kind.items():
        assert otel.total("d360.watch.transitions", **{"d360.transition.kind": kind}) == count
    assert otel.total("d360.watch.transitions") == len(transitions)
    assert all(point.value == 0 for point in otel.points("d360.watch.targets"))
    phases = {p.attributes["d360.phase"] for p in otel.points("d360.watch.targets")}
    assert phases >= {"running", "succeeded", "failed"}, phases
    (polls,) = otel.points("d360.watch.polls")
    assert polls.count == 300
    assert polls.sum == len(spans) == sum(t.polls for t in finals)
    assert sum(p.count for p in otel.points("d360.watch.target.duration")) == 300

    # Gauges per rate-limit key, named by fingerprint.
    (stat,) = limiter_stats
    for name in ("limit", "remaining", "reset"):
        (point,) = gauges[name]
        assert point.attributes["d360.rate_limit.key"] == fingerprint(fake.api_token)
        assert point.attributes["d360.project_id"] == fake.project_id
    assert gauges["limit"][0].value == stat.limit == BUDGET
    assert 0 <= gauges["remaining"][0].value <= BUDGET

    # Nothing secret went anywhere: spans, events, metrics, log records and their extras.
    texts = _everything_exported(otel)
    for record in caplog.records:
        texts.append(record.getMessage())
        texts += [str(v) for k, v in vars(record).items() if k.startswith("d360_")]
    assert any(k.startswith("d360_") for r in caplog.records for k in vars(r))
    _assert_no_secret(texts, fake.api_token, fake.v2_api_token)


async def test_trace_context_reaches_the_api_and_not_the_download_host(
    otel: Otel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="d360_async")
    tracer = otel.tracer_provider.get_tracer("test")
    async with FakeDocument360(rate_limit=None) as fake:
        [export_id] = fake.seed("v3.export", 1)
        fake.finish(export_id)
        async with otel.client(fake) as client:
            with tracer.start_as_current_span("handler") as parent:
                export = await client.exports.get(fake.project_id, export_id)
                await client.exports.download(fake.project_id, export_id, tmp_path / "x.zip")
        stats = fake.stats
    assert export.download_url
    assert "sig=" in str(export.download_url)  # a signed link: its signature must go nowhere
    trace_id = format(parent.get_span_context().trace_id, "032x")
    routes = {route for route, traced in stats.trace_context if traced == trace_id}
    assert "v3.exports.get" in routes
    assert "download" not in {route for route, _ in stats.trace_context}
    assert stats.downloads == 1
    assert not stats.download_credentials_seen
    ours = otel.ours()
    assert ours
    for span in ours:
        assert span.parent is not None
        assert span.parent.span_id == parent.get_span_context().span_id
        assert "download" not in span.name
    texts = _everything_exported(otel) + [r.getMessage() for r in caplog.records]
    signature = str(export.download_url).split("sig=")[1].split("&")[0]
    _assert_no_secret(texts, fake.api_token, signature)


async def test_watch_polls_join_the_trace_of_who_started_the_watch(otel: Otel) -> None:
    tracer = otel.tracer_provider.get_tracer("test")
    async with FakeDocument360(rate_limit=None) as fake:
        [export_id] = fake.seed("v3.export", 1, pending=0.1, running=0.2)
        async with otel.client(fake) as client:
            with tracer.start_as_current_span("request") as parent:
                target = client.exports.target(fake.project_id, export_id)
                final = await client.wait(target, policy=PollPolicy(interval=0.05))
        polled = fake.operation(export_id).polls
    assert final.phase.is_terminal
    trace_id = parent.get_span_context().trace_id
    ours = otel.ours()
    assert len(ours) == polled >= 2
    assert all(span.context.trace_id == trace_id for span in ours)
    assert otel.total("d360.watch.polls") == 1


async def test_no_double_span_with_the_aiohttp_client_instrumentation(
    otel: Otel, tmp_path: Path
) -> None:
    instrumentation = pytest.importorskip("opentelemetry.instrumentation.aiohttp_client")
    instrumentor = instrumentation.AioHttpClientInstrumentor()
    instrumentor.instrument(tracer_provider=otel.tracer_provider)
    try:
        async with FakeDocument360(rate_limit=None) as fake:
            [export_id] = fake.seed("v3.export", 1)
            fake.finish(export_id)
            # The client's session is created after instrument(), so it is instrumented.
            async with otel.client(fake) as client:
                await client.exports.get(fake.project_id, export_id)
                await client.exports.get(fake.project_id, export_id)
                await client.exports.download(fake.project_id, export_id, tmp_path / "x.zip")
            api_requests = fake.stats.requests - fake.stats.downloads
            traced = fake.stats.trace_context
    finally:
        instrumentor.uninstrument()
    ours = otel.ours()
    theirs = [s for s in otel.spans() if s.instrumentation_scope.name != "d360_async"]
    assert len(ours) == api_requests >= 2, "one span per API request, ours"
    # The aiohttp instrumentation traced only what is not ours: the signed-link download.
    assert len(theirs) == 1
    assert theirs[0].kind is SpanKind.CLIENT
    assert "sig=" not in str((theirs[0].attributes or {}).get("url.full", ""))
    # The API saw our spans' trace context, not a second span's.
    our_traces = {format(s.context.trace_id, "032x") for s in ours}
    assert {t for route, t in traced if route != "download"} <= our_traces


async def test_telemetry_off_feeds_nothing(otel: Otel) -> None:
    async with FakeDocument360(rate_limit=None) as fake:
        [export_id] = fake.seed("v3.export", 1)
        async with Client(api_token=fake.api_token, base_url=fake.url, telemetry=False) as client:
            await client.exports.get(fake.project_id, export_id)
            assert client._transport.hooks == Hooks()
        assert not fake.stats.trace_context
    assert otel.spans() == []


async def test_hooks_see_waits_ends_transitions_and_finished_targets() -> None:
    events: list[Any] = []

    def add_header(event: RequestEvent) -> None:
        events.append(event)
        event.headers["traceparent"] = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
        event.headers["Authorization"] = "Bearer not-the-token"  # cannot replace the credential

    hooks = Hooks(
        on_request=[add_header],
        on_limiter_wait=[events.append],
        on_request_end=[events.append],
        on_transition=[events.append],
        on_target_finished=[events.append],
    )
    async with FakeDocument360(rate_limit=None) as fake:
        [export_id] = fake.seed("v3.export", 1, pending=0.05, running=0.05)
        # Retry-After: 0, so the one retry waits only its (millisecond) back-off.
        fake.faults.next("http_503", count=1, retry_after=0)
        async with Client(
            api_token=fake.api_token,
            base_url=fake.url,
            hooks=hooks,
            telemetry=False,
            rate_limit=FAST,
            retry=RetryPolicy(backoff_base=0.001, backoff_cap=0.01),
        ) as client:
            target = client.exports.target(fake.project_id, export_id)
            final = await client.wait(target, policy=PollPolicy(interval=0.05))
        stats = fake.stats
    assert stats.auth_failures == 0
    assert sum(stats.trace_context.values()) == stats.requests
    waits = [e for e in events if isinstance(e, LimiterWaitEvent)]
    ends = [e for e in events if isinstance(e, RequestEndEvent)]
    requests = [e for e in events if isinstance(e, RequestEvent)]
    assert len(waits) == len(requests) == stats.requests
    assert len(ends) == final.polls
    assert {e.call for e in waits} == {e.call for e in ends} == {e.call for e in requests}
    assert all(e.error is None and e.elapsed >= 0 for e in ends)
    assert all(e.key.token_fingerprint == fingerprint(fake.api_token) for e in waits)
    # Per call: waits and attempts first, its end last.
    for call in {e.call for e in ends}:
        mine = [e for e in events if getattr(e, "call", None) == call]
        assert isinstance(mine[0], LimiterWaitEvent)
        assert isinstance(mine[-1], RequestEndEvent)
    transitions = [e for e in events if isinstance(e, Transition)]
    (finished,) = [e for e in events if isinstance(e, TargetFinished)]
    assert transitions[-1] is final is finished.transition
    assert finished.key == target.key
    assert finished.polls == final.polls
    assert finished.phase is final.phase
    assert not finished.removed
    assert finished.first_seen_at == transitions[0].observed_at <= finished.finished_at


async def test_removed_targets_leave_the_phase_counter(otel: Otel) -> None:
    async with FakeDocument360(rate_limit=None) as fake:
        ids = fake.seed("v3.export", 3, pending=30, running=30)
        async with otel.client(fake) as client:
            targets = [client.exports.target(fake.project_id, i) for i in ids]
            async with client.watch(targets, keep_open=True) as watch:
                seen = 0
                async for _transition in watch:
                    seen += 1
                    if seen == 3:
                        break
                counted = otel.total("d360.watch.targets", **{"d360.phase": "pending"})
                for target in targets:
                    watch.remove(target)
                await _settle()
                after = otel.total("d360.watch.targets", **{"d360.phase": "pending"})
    assert counted == 3
    assert after == 0
    assert otel.total("d360.watch.polls", **{"d360.outcome": "removed"}) == 3


async def _settle() -> None:
    import asyncio

    for _ in range(5):
        await asyncio.sleep(0)


async def test_smartdocumentor_spans_and_no_client_secret(otel: Otel) -> None:
    from d360_async.smartdocumentor import SmartDocumentorClient

    async with FakeDocument360(rate_limit=None) as fake:
        [task_id] = fake.seed("smartdocumentor.task", 1)
        async with SmartDocumentorClient(
            client_id=fake.sd_client_id,
            client_secret=fake.sd_client_secret,
            base_url=fake.url,
            telemetry=otel.telemetry,
        ) as sd:
            await sd.tasks.status(task_id=int(task_id))
            token = await sd.auth.token()
        requests = fake.stats.requests
    ours = otel.ours()
    assert len(ours) == requests == 2  # the token, then the status
    assert {(s.attributes or {})["d360.api"] for s in ours} == {"smartdocumentor"}
    assert {s.name for s in ours} == {"POST /connect/token", "GET /api/v1.0/external/sdtask/status"}
    _assert_no_secret(_everything_exported(otel), fake.sd_client_secret, token)


async def test_a_failed_call_and_a_cancelled_one(otel: Otel) -> None:
    import asyncio
    import uuid

    from d360_async import NotFound

    async with FakeDocument360(rate_limit=None) as fake:
        [export_id] = fake.seed("v3.export", 1)
        async with otel.client(fake) as client:
            with pytest.raises(NotFound):
                await client.exports.get(fake.project_id, str(uuid.uuid4()))
            # The next answer is held (and dropped when the fake stops): cancelled in flight.
            fake.faults.set("slow", 1.0, delay=30.0)
            call = asyncio.ensure_future(client.exports.get(fake.project_id, export_id))
            for _ in range(200):  # until the second request reached the server
                if fake.stats.requests >= 2:
                    break
                await asyncio.sleep(0.005)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
    failed, cancelled = otel.ours()
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "404"
    assert (failed.attributes or {})["error.type"] == "404"
    assert (failed.attributes or {})["http.response.status_code"] == 404
    assert cancelled.status.status_code is StatusCode.UNSET
    assert (cancelled.attributes or {})["d360.cancelled"] is True
    assert (cancelled.attributes or {})["error.type"] == "CancelledError"
    assert otel.total("d360.requests", **{"d360.status_class": "none"}) == 1
    assert not otel.telemetry._calls, "every call's record is gone once it ended"


async def test_leaving_a_watch_early_empties_the_phase_counter(otel: Otel) -> None:
    async with FakeDocument360(rate_limit=None) as fake:
        ids = fake.seed("v3.export", 3, pending=30, running=30)
        async with otel.client(fake) as client:
            targets = [client.exports.target(fake.project_id, i) for i in ids]
            async with client.watch(targets) as watch:
                async for _ in watch:
                    break
            counted = otel.total("d360.watch.targets", **{"d360.phase": "pending"})
    assert counted == 0
    assert otel.total("d360.watch.polls", **{"d360.outcome": "abandoned"}) == 3
    assert not otel.telemetry._phases
