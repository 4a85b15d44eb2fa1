"""A small FastAPI service that starts Document360 exports and streams their progress.

Endpoints:

* ``POST /exports`` with ``{"workspace_ids": ["...", ...], "format": "pdf"}`` starts one
  export per workspace and answers ``{"ids": [...]}`` (202);
* ``GET /exports/stream?ids=...&ids=...`` streams those exports' transitions as server-sent
  events (``event: transition``, then ``event: end``);
* ``GET /`` serves a page that starts exports and shows each one's phase live;
  ``GET /?ids=...&ids=...`` follows exports already started (the page links to it, to follow
  them from another window or another person's browser).

Several workers (``uvicorn --workers 4``) poll each export once between them when
``D360_REDIS_URL`` is set: each worker shares the budget through a ``RedisRateLimiter`` and
the polls through an ``ObservationHub``, so two browsers following one export on two workers
cost the polls of one.  Every answer says which worker process sent it (``X-Worker``).

Run it against the real API, or against `d360-async fake` (paste the `export` lines it
prints):

```console
export D360_API_TOKEN=... D360_PROJECT_ID=...   # D360_BASE_URL is optional
uvicorn --factory docs.examples.fastapi_app:app_from_env
D360_REDIS_URL=redis://localhost:6379/0 \
    uvicorn --factory docs.examples.fastapi_app:app_from_env --workers 4
```

or build it yourself with `create_app` (the tests put `FakeDocument360` behind it).

The browser is told what kind of failure happened ("not found", "the Document360 API could
not be reached"), never the backend's URL or an exception's text: those go to the log.

OpenTelemetry, opt-in: with ``D360_OTEL_CONSOLE=1`` (and ``opentelemetry-sdk`` installed) the
service prints its spans and metrics to the console.  Each HTTP request gets a server span,
and the client's spans (the exports it starts, the polls of the watch it streams) are its
children: one trace per request, polls included.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from d360_async import (
    D360Error,
    ObservationHub,
    PollPolicy,
    RateLimitConfig,
    RedisRateLimiter,
    Region,
    Transition,
)
from d360_async.contrib.fastapi import (
    D360Client,
    WatchEventStream,
    open_client,
    public_error,
    transition_payload,
    watch_events,
)

__all__ = [
    "ExportsStarted",
    "StartExports",
    "TraceRequests",
    "WorkerHeader",
    "app_from_env",
    "configure_console_telemetry",
    "create_app",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("fastapi_app")

MAX_EXPORTS = 20
"""Exports one request may start (and one stream may follow)."""


class StartExports(BaseModel):
    """The body of ``POST /exports``."""

    workspace_ids: list[str] = Field(min_length=1, max_length=MAX_EXPORTS)
    format: str = "pdf"


class ExportsStarted(BaseModel):
    """The answer of ``POST /exports``: the new exports' ids, in the order asked."""

    ids: list[str]


def create_app(
    *,
    api_token: str,
    project_id: str,
    base_url: Region | str = Region.EU,
    policy: PollPolicy | None = None,
    trace_requests: bool = False,
    tracer_provider: Any = None,
    redis_url: str | None = None,
    **client_options: Any,
) -> FastAPI:
    """The service, talking to ``base_url`` with ``api_token`` about ``project_id``.

    ``policy`` paces the watches behind ``/exports/stream``; ``client_options`` go to
    `Client` (``rate_limit=``, ``retry=``, ``telemetry=``...).
    ``trace_requests`` opens an OpenTelemetry server span around each request (from
    ``tracer_provider``, or the global one), so the client's spans join the request's trace.
    ``redis_url``: share the budget (``RedisRateLimiter``) and the polls (``ObservationHub``)
    with every other process of the service given the same Redis, for ``--workers N``.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Per worker process, on its own event loop: the limiter, the hub, then the client.
        async with AsyncExitStack() as stack:
            options = dict(client_options)
            if redis_url is not None:
                per_minute = options.pop("rate_limit", None)
                config = None if per_minute is None else RateLimitConfig(rate=per_minute)
                options["rate_limiter"] = await stack.enter_async_context(
                    RedisRateLimiter(redis_url, config=config)
                )
                options["hub"] = await stack.enter_async_context(ObservationHub(redis_url))
            await stack.enter_async_context(
                open_client(app, api_token=api_token, base_url=base_url, **options)
            )
            yield

    app = FastAPI(title="Document360 exports", lifespan=lifespan)
    app.add_middleware(WorkerHeader)
    if trace_requests:
        app.add_middleware(TraceRequests, tracer_provider=tracer_provider)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.post("/exports", status_code=202)
    async def start_exports(body: StartExports, client: D360Client) -> ExportsStarted:
        try:
            started = await asyncio.gather(
                *(
                    client.exports.create(project_id, workspace_id=workspace, format=body.format)
                    for workspace in body.workspace_ids
                )
            )
        except ValueError as exc:  # a malformed workspace id, refused before sending
            raise HTTPException(status_code=422, detail="malformed workspace id") from exc
        except D360Error as exc:  # the details (the backend's URL among them) stay in the log
            logger.warning("starting exports failed: %s", exc)
            raise HTTPException(status_code=502, detail=public_error(exc)) from exc
        return ExportsStarted(ids=[str(export.id) for export in started])

    @app.get("/exports/stream")
    async def stream_exports(
        client: D360Client,
        ids: Annotated[list[str], Query(min_length=1, max_length=MAX_EXPORTS)],
    ) -> WatchEventStream:
        try:
            targets = [client.exports.target(project_id, export_id) for export_id in ids]
        except ValueError as exc:  # export ids are UUIDs; anything else never reaches a URL
            raise HTTPException(status_code=422, detail="malformed export id") from exc
        # The page knows exports by the ids it asked for; transitions know them by target key.
        export_ids = {target.key: export_id for target, export_id in zip(targets, ids, strict=True)}

        def serialize(transition: Transition[Any]) -> dict[str, Any]:
            # The target key names the backend's project too: the page needs only the id.
            payload = transition_payload(transition)
            del payload["key"]
            return {**payload, "id": export_ids[transition.key]}

        return watch_events(client.watch(targets, policy=policy), serialize=serialize)

    return app


def app_from_env() -> FastAPI:
    """The service configured from ``D360_API_TOKEN``, ``D360_PROJECT_ID`` and, optionally,
    ``D360_BASE_URL``, ``D360_REDIS_URL`` (several workers: one budget, one poll per export)
    and ``D360_OTEL_CONSOLE=1`` (for ``uvicorn --factory``)."""
    console = os.environ.get("D360_OTEL_CONSOLE", "") not in ("", "0")
    if console:
        configure_console_telemetry()
    return create_app(
        api_token=os.environ["D360_API_TOKEN"],
        project_id=os.environ["D360_PROJECT_ID"],
        base_url=os.environ.get("D360_BASE_URL", Region.EU),
        trace_requests=console,
        redis_url=os.environ.get("D360_REDIS_URL") or None,
    )


def configure_console_telemetry(*, metric_interval: float = 10.0) -> None:
    """Install the OpenTelemetry SDK as the global providers, printing to the console.

    The client needs no change: it emits through the global providers once they are set.
    """
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({"service.name": "d360-exports-example"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(
        ConsoleMetricExporter(), export_interval_millis=metric_interval * 1000
    )
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


class WorkerHeader:
    """ASGI middleware: every HTTP answer names the worker process that sent it
    (``X-Worker: <pid>``), to see which worker of ``--workers N`` serves which page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.value = str(os.getpid()).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-worker", self.value)]
            await send(message)

        await self.app(scope, receive, send_with_header)


class TraceRequests:
    """ASGI middleware: one server span per HTTP request, current while it is handled.

    A few lines instead of ``opentelemetry-instrumentation-asgi``, which does the same with
    more attributes; either makes the client's spans children of the request's.
    """

    def __init__(self, app: ASGIApp, tracer_provider: Any = None) -> None:
        from opentelemetry import trace

        self.app = app
        self.tracer = trace.get_tracer("fastapi_app", tracer_provider=tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry.trace import SpanKind

        name = f"{scope['method']} {scope['path']}"
        with self.tracer.start_as_current_span(name, kind=SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", scope["method"])
            span.set_attribute("url.path", scope["path"])
            await self.app(scope, receive, send)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Document360 exports</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 50rem; }
  table { border-collapse: collapse; width: 100%; margin-top: 1rem; }
  td, th { border-bottom: 1px solid #ddd; padding: .3rem .5rem; text-align: left; }
  td.id { font-family: monospace; }
  .succeeded { color: #137333; } .failed, .error, .timed_out { color: #b3261e; }
</style>
</head>
<body>
<h1>Document360 exports</h1>
<form id="start">
  <label>Workspace ids (comma separated)
    <input id="workspaces" name="workspaces" size="40" required></label>
  <select id="format" name="format"><option>pdf</option><option>html</option></select>
  <button id="go" type="submit">Start exports</button>
</form>
<p id="summary"></p>
<p><a id="share" hidden>Follow these exports from another window</a></p>
<table><thead><tr><th>Export</th><th>Status</th><th>Expected to finish</th><th>Polls</th></tr>
</thead>
<tbody id="exports"></tbody></table>
<script>
"use strict";
const LABELS = {pending: "Pending", running: "Running", succeeded: "Completed",
                failed: "Failed", cancelled: "Cancelled", unknown: "Unknown"};
const rows = new Map();
const summary = document.getElementById("summary");

function label(t) {
  if (t.kind === "error") return "Error: " + t.error;
  if (t.kind === "timed_out") return "Timed out (" + LABELS[t.phase] + ")";
  return LABELS[t.phase] || t.phase;
}

function addRow(id) {
  const tr = document.createElement("tr");
  tr.dataset.id = id;
  const cells = ["id", "status", "eta", "polls"].map((name) => {
    const td = document.createElement("td");
    td.className = name;
    tr.appendChild(td);
    return td;
  });
  cells[0].textContent = id;
  cells[1].textContent = "Starting";
  document.getElementById("exports").appendChild(tr);
  rows.set(id, {status: cells[1], eta: cells[2], polls: cells[3]});
}

function span(seconds) {
  return seconds < 90 ? Math.round(seconds) + " s" : Math.round(seconds / 60) + " min";
}

// The hint comes from the durations the service has learned for exports: an expected time
// and an 80 % interval, counted from when the status was seen.
function hint(t) {
  if (t.final) return "";
  if (!t.eta) return "learning...";
  return "in about " + span(t.eta.seconds) + " (" + span(t.eta.low) + " to " +
    span(t.eta.high) + ")";
}

function follow(ids) {
  const query = new URLSearchParams(ids.map((id) => ["ids", id]));
  const events = new EventSource("/exports/stream?" + query);
  events.addEventListener("transition", (message) => {
    const t = JSON.parse(message.data);
    const row = rows.get(t.id);
    row.status.textContent = label(t);
    row.status.className = "status " + (t.kind === "changed" ? t.phase : t.kind);
    row.status.dataset.phase = t.phase;
    row.eta.textContent = hint(t);
    row.polls.textContent = t.polls;
  });
  events.addEventListener("end", () => {
    events.close();  // otherwise the browser reconnects and the watch starts again
    summary.textContent = "All exports finished.";
  });
  events.addEventListener("error", (message) => {
    if (message.data) {  // the server's own error event, not a dropped connection
      events.close();
      summary.textContent = "Watch failed: " + JSON.parse(message.data).message;
    }
  });
}

document.getElementById("start").addEventListener("submit", async (event) => {
  event.preventDefault();
  const workspaceIds = document.getElementById("workspaces").value
    .split(",").map((s) => s.trim()).filter(Boolean);
  summary.textContent = "Starting " + workspaceIds.length + " export(s)...";
  const response = await fetch("/exports", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({workspace_ids: workspaceIds,
                          format: document.getElementById("format").value}),
  });
  if (!response.ok) {
    summary.textContent = "Could not start: HTTP " + response.status;
    return;
  }
  const {ids} = await response.json();
  watch(ids);
});

function watch(ids) {
  ids.forEach(addRow);
  summary.textContent = "Watching " + ids.length + " export(s)...";
  const share = document.getElementById("share");
  share.href = "/?" + new URLSearchParams(ids.map((id) => ["ids", id]));
  share.hidden = false;
  follow(ids);
}

// Opened from a "follow" link: watch those exports at once.
const given = new URLSearchParams(location.search).getAll("ids");
if (given.length) watch(given);
</script>
</body>
</html>
"""
