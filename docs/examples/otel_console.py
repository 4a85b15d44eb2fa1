"""Print d360-async's spans and metrics to the console while watching a few exports.

Runs against the fake server, so it needs nothing but the dev tools::

    pip install 'd360-async[otel]' opentelemetry-sdk
    python docs/examples/otel_console.py

Against the real API, drop the fake and give the client your token: the OpenTelemetry part
does not change.
"""

from __future__ import annotations

import asyncio

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from d360_async import Client, PollPolicy
from d360_async.testing import FakeDocument360, FakeRateLimit


def configure_opentelemetry() -> MeterProvider:
    """What an application does once at start-up; d360-async needs nothing more."""
    resource = Resource.create({"service.name": "exports-watcher"})
    tracer_provider = TracerProvider(resource=resource)
    # SimpleSpanProcessor prints each span as it ends; use BatchSpanProcessor in production.
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=60_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    metrics.set_meter_provider(meter_provider)
    return meter_provider


async def main() -> None:
    meter_provider = configure_opentelemetry()
    tracer = trace.get_tracer("exports-watcher")
    # The fake announces 3,000 requests a minute; at its default (60, the lowest plan) the
    # client would space these polls a second apart.
    async with FakeDocument360(rate_limit=FakeRateLimit(limit=3000, window=60.0)) as fake:
        ids = fake.seed("v3.export", 3, pending=0.1, running=0.3)
        async with Client(api_token=fake.api_token, base_url=fake.url) as client:
            targets = [client.exports.target(fake.project_id, export_id) for export_id in ids]
            # The polls are children of this span: one trace for the whole job.
            with tracer.start_as_current_span("watch exports"):
                async with client.watch(targets, policy=PollPolicy(interval=0.1)) as watch:
                    async for transition in watch:
                        print(f"# {transition.key}: {transition.phase}")
            meter_provider.force_flush()  # print the metrics now, while the gauges have values
    meter_provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
