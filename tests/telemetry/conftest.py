"""An OpenTelemetry SDK wired to in-memory exporters, handed to clients as a Telemetry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from d360_async import Client, RateLimitConfig, Telemetry
from d360_async.testing import FakeDocument360

# A fake started with ``rate_limit=None`` announces no limit, and the client's default budget
# (60 a minute, one request a second) would then pace every request after the first by a second.
FAST = RateLimitConfig(rate=1000.0, period=1.0)


@attrs.define
class Otel:
    """One test's providers, their in-memory outputs, and the Telemetry feeding them."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    spans_exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    telemetry: Telemetry

    def client(self, fake: FakeDocument360, **options: Any) -> Client:
        """A client of ``fake`` whose telemetry goes to these providers (at a `FAST` budget
        unless ``rate_limit`` is given)."""
        options.setdefault("rate_limit", FAST)
        return Client(
            api_token=fake.api_token, base_url=fake.url, telemetry=self.telemetry, **options
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.spans_exporter.get_finished_spans())

    def ours(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.instrumentation_scope.name == "d360_async"]

    def points(self, name: str) -> list[Any]:
        """The data points of metric ``name`` in a fresh collection (cumulative)."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def total(self, name: str, **attributes: Any) -> float:
        """The sum of a counter's (or the count of a histogram's) points matching attributes."""
        total = 0.0
        for point in self.points(name):
            if all(point.attributes.get(k) == v for k, v in attributes.items()):
                total += getattr(point, "value", None) if hasattr(point, "value") else point.count
        return total


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry = Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield Otel(tracer_provider, meter_provider, exporter, reader, telemetry)
    meter_provider.shutdown()
    tracer_provider.shutdown()
