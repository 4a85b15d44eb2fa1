"""The example service with tracing on: one trace per HTTP request, the client's spans in it."""

from __future__ import annotations

import asyncio
import time
from types import ModuleType

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from d360_async import Telemetry
from d360_async.testing import FakeDocument360, FakeLifecycle

from .support import example_app


async def _end_once_polled(fake: FakeDocument360, ids: list[str]) -> None:
    """Finish each export once it has been polled (the deadline only catches a hang)."""
    deadline = time.monotonic() + 30.0
    while any(fake.operation(i).polls == 0 for i in ids):
        assert time.monotonic() < deadline, "the stream never polled every export"
        await asyncio.sleep(0.01)
    for export_id in ids:
        fake.finish(export_id)


async def test_a_requests_trace_holds_the_calls_and_polls_it_caused(
    example: ModuleType, fake: FakeDocument360
) -> None:
    fake.lifecycle = FakeLifecycle(pending=0.0, running=1e6, failure_ratio=0.0)
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    telemetry = Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
    app = example_app(
        example, fake, trace_requests=True, tracer_provider=tracer_provider, telemetry=telemetry
    )
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                started = await http.post("/exports", json={"workspace_ids": ["ws-a", "ws-b"]})
                ids = started.json()["ids"]
                # Running until the stream has seen each of them, then ended: at least two
                # polls each, however slowly a loaded machine gets the stream going.
                finisher = asyncio.ensure_future(_end_once_polled(fake, ids))
                streamed = await http.get("/exports/stream", params={"ids": ids})
                await finisher
        assert streamed.status_code == 200
        polls = sum(fake.operation(export_id).polls for export_id in ids)
    finally:
        meter_provider.shutdown()
        tracer_provider.shutdown()

    spans = exporter.get_finished_spans()
    servers = {s.name: s for s in spans if s.kind is SpanKind.SERVER}
    assert set(servers) == {"POST /exports", "GET /exports/stream"}
    ours = [s for s in spans if s.instrumentation_scope.name == "d360_async"]

    def children(server_name: str) -> list[str]:
        server = servers[server_name]
        return [
            s.name
            for s in ours
            if s.context.trace_id == server.context.trace_id
            and s.parent is not None
            and s.parent.span_id == server.context.span_id
        ]

    assert children("POST /exports") == ["POST /v3/projects/{id}/exports"] * 2
    stream_calls = children("GET /exports/stream")
    assert len(stream_calls) == polls >= 4
    assert set(stream_calls) == {"GET /v3/projects/{id}/exports/{id}"}
    assert len(ours) == 2 + polls, "every client span belongs to one request's trace"
