"""The global providers by default, and a library that works unchanged without the extra.

Both run in a subprocess: global providers can be set once per process, and the import
blocker must act before anything imported OpenTelemetry.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

_BLOCKER = """
import importlib.abc
import sys


class BlockOpenTelemetry(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, BlockOpenTelemetry())
"""

_WITHOUT_EXTRA = """
import asyncio
import sys

import d360_async
from d360_async import Client, PollPolicy, Telemetry
from d360_async._transport import _telemetry
from d360_async.testing import FakeDocument360, FakeRateLimit

assert _telemetry.AVAILABLE is False
try:
    Telemetry()
except ImportError as exc:
    assert "d360-async[otel]" in str(exc), exc
else:
    raise AssertionError("Telemetry() without opentelemetry-api must raise ImportError")


async def main() -> None:
    # A generous announced budget: at the fake's default (60 a minute) the client would space
    # these requests a second apart.
    async with FakeDocument360(rate_limit=FakeRateLimit(limit=1000, window=1.0)) as fake:
        ids = fake.seed("v3.export", 3, pending=0.05, running=0.05)
        async with Client(api_token=fake.api_token, base_url=fake.url) as client:
            export = await client.exports.get(fake.project_id, ids[0])
            assert str(export.id) == ids[0]
            targets = [client.exports.target(fake.project_id, i) for i in ids]
            finals = []
            async with client.watch(targets, policy=PollPolicy(interval=0.05)) as watch:
                finals = [t async for t in watch if t.final]
            assert len(finals) == 3
        assert not fake.stats.trace_context, "no trace header without OpenTelemetry"


asyncio.run(main())
assert not [m for m in sys.modules if m.split(".")[0] == "opentelemetry"], "imported anyway"
print("OK", d360_async.__version__)
"""

_GLOBAL = """
import asyncio

from d360_async import Client
from d360_async.testing import FakeDocument360, FakeRateLimit


async def main() -> None:
    # It sends rate-limit headers (gauges have values), of a budget that paces nothing here.
    async with FakeDocument360(rate_limit=FakeRateLimit(limit=1000, window=1.0)) as fake:
        [export_id] = fake.seed("v3.export", 1)
        # Built before the application configured the SDK: the global proxies forward later.
        early = Client(api_token=fake.api_token, base_url=fake.url)
        off = Client(api_token=fake.api_token, base_url=fake.url, telemetry=False)
        from d360_async._transport import _telemetry

        assert _telemetry._default is not None
        assert not _telemetry._default.recording(), "nothing records before the SDK is set"
        await early.exports.get(fake.project_id, export_id)  # a call no one records
        assert not _telemetry._default._calls

        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        assert _telemetry._default.recording()

        async with early, off:
            await early.exports.get(fake.project_id, export_id)
            await off.exports.get(fake.project_id, export_id)
            late = Client(api_token=fake.api_token, base_url=fake.url)
            async with late:
                await late.exports.get(fake.project_id, export_id)
            data = reader.get_metrics_data()  # gauges report open clients only
        spans = exporter.get_finished_spans()
        assert len(spans) == 2, [s.name for s in spans]
        assert {s.instrumentation_scope.name for s in spans} == {"d360_async"}
        names = set()
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    names.add(m.name)
                    if m.name == "d360.requests":
                        assert sum(p.value for p in m.data.data_points) == 2
        assert {"d360.requests", "d360.rate_limit.wait", "d360.rate_limit.limit"} <= names
        assert len(fake.stats.trace_context) == 2, fake.stats.trace_context
        assert fake.stats.requests == 4


asyncio.run(main())
print("OK")
"""


def _run(source: str) -> str:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_library_works_unchanged_without_opentelemetry() -> None:
    assert _run(_BLOCKER + _WITHOUT_EXTRA).startswith("OK ")


def test_the_blocker_really_blocks() -> None:
    # Guards the test above: with the blocker in place, the API is not importable.
    out = _run(
        _BLOCKER
        + "\ntry:\n    import opentelemetry.trace\nexcept ImportError:\n    print('blocked')\n"
    )
    assert out.strip() == "blocked"


def test_clients_use_the_global_providers_even_when_configured_late() -> None:
    assert _run(_GLOBAL).strip() == "OK"
