"""d360_async.contrib.fastapi and the example service, through ASGI and through real uvicorn.

httpx's ``ASGITransport`` hands a response over only once the app has finished it, which is
enough for watches that end; the disconnection tests drive the ASGI callable by hand (exact
control over when the client goes) and through a real uvicorn server (the real thing).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

import aiohttp
import attrs
import httpx
import pytest
from fastapi import FastAPI, Request

from d360_async import Client, Eta, Phase, PollPolicy, ServerError
from d360_async.contrib.fastapi import (
    STATE_KEY,
    D360Client,
    WatchEventStream,
    d360_lifespan,
    get_client,
    open_client,
    public_error,
    transition_payload,
    watch_events,
)
from d360_async.testing import FakeDocument360

from .support import BUDGET, QUICK_POLICY, example_app, serve

# -- helpers ----------------------------------------------------------------------------------


def parse_events(text: str) -> list[tuple[str, Any]]:
    """``(event, data)`` pairs of a ``text/event-stream`` body; comments are skipped."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if fields:
            events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


@asynccontextmanager
async def asgi_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client calling ``app`` in process, with the app's lifespan running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client


class ScriptedWatch:
    """Stands in for a Watch: yields ``items`` (raising any exception among them), each
    ``gap`` seconds apart, then ends, or blocks forever with ``forever=True``."""

    def __init__(self, items: Iterable[Any] = (), *, gap: float = 0.0, forever: bool = False):
        self.items = list(items)
        self.gap = gap
        self.forever = forever
        self.entered = self.exited = False
        self.exit_error: type[BaseException] | None = None

    async def __aenter__(self) -> ScriptedWatch:
        self.entered = True
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.exited = True
        self.exit_error = exc_type

    def __aiter__(self) -> ScriptedWatch:
        return self

    async def __anext__(self) -> Any:
        await asyncio.sleep(self.gap)
        if self.items:
            item = self.items.pop(0)
            if isinstance(item, BaseException):
                raise item
            return item
        if self.forever:
            await asyncio.Event().wait()
        raise StopAsyncIteration


class ASGIHarness:
    """Calls an ASGI response by hand: records what it sends, disconnects on demand."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self._request_read = False

    async def receive(self) -> dict[str, Any]:
        if not self._request_read:
            self._request_read = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def run(self, response: WatchEventStream) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}}
        await response(scope, self.receive, self.send)

    @property
    def body(self) -> str:
        return b"".join(m.get("body", b"") for m in self.sent[1:]).decode()


async def wait_until(condition: Callable[[], bool], *, limit: float) -> None:
    """Check ``condition`` every few milliseconds until it holds; fail after ``limit`` s."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def identity(item: Any) -> Any:
    return item


# -- one client per application ---------------------------------------------------------------


async def test_lifespan_opens_one_client_and_closes_it_on_shutdown(
    fake: FakeDocument360,
) -> None:
    app = FastAPI(lifespan=d360_lifespan(api_token=fake.api_token, base_url=fake.url))
    assert not hasattr(app.state, STATE_KEY)  # built at startup, not before

    async with app.router.lifespan_context(app):
        client = getattr(app.state, STATE_KEY)
        assert isinstance(client, Client)
        assert not client.closed

    assert client.closed
    assert not hasattr(app.state, STATE_KEY)


async def test_open_client_composes_with_an_own_lifespan(fake: FakeDocument360) -> None:
    started: list[Client] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_client(app, api_token=fake.api_token, base_url=fake.url) as client:
            started.append(client)
            yield

    app = FastAPI(lifespan=lifespan)
    async with app.router.lifespan_context(app):
        assert getattr(app.state, STATE_KEY) is started[0]
    assert started[0].closed


async def test_open_client_refuses_a_second_client_per_application(
    fake: FakeDocument360,
) -> None:
    app = FastAPI()
    async with open_client(app, api_token=fake.api_token, base_url=fake.url) as first:
        with pytest.raises(RuntimeError, match="one client per application"):
            async with open_client(app, api_token=fake.api_token, base_url=fake.url):
                pass
        assert getattr(app.state, STATE_KEY) is first  # the refused one changed nothing
    assert first.closed


async def test_the_dependency_hands_endpoints_the_application_client(
    fake: FakeDocument360,
) -> None:
    [export_id] = fake.seed("v3.export", 1, pending=0, running=0)
    app = FastAPI(
        lifespan=d360_lifespan(api_token=fake.api_token, base_url=fake.url, rate_limit=BUDGET)
    )

    @app.get("/exports/{export_id}")
    async def show(export_id: str, request: Request, client: D360Client) -> dict[str, Any]:
        export = await client.exports.get(fake.project_id, export_id)
        return {"status": export.status, "same": client is get_client(request)}

    async with asgi_client(app) as http:
        first = await http.get(f"/exports/{export_id}")
        second = await http.get(f"/exports/{export_id}")
    assert first.json() == {"status": "Completed", "same": True}
    assert second.status_code == 200
    assert fake.stats.by_route["v3.exports.get"] == 2


async def test_the_dependency_explains_a_missing_lifespan() -> None:
    app = FastAPI()

    @app.get("/")
    async def index(client: D360Client) -> str:
        return repr(client)  # pragma: no cover - never reached

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://app"
    ) as http:
        with pytest.raises(RuntimeError, match="d360_lifespan"):
            await http.get("/")


# -- server-sent events, by hand --------------------------------------------------------------


async def test_each_item_becomes_a_transition_event_then_end() -> None:
    watch = ScriptedWatch([{"n": 1}, {"n": 2, "text": "two\nlines"}])
    harness = ASGIHarness()
    await harness.run(WatchEventStream(watch, serialize=identity, heartbeat=None))  # type: ignore[arg-type]

    start = harness.sent[0]
    assert start["type"] == "http.response.start"
    assert start["status"] == 200
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache"
    assert parse_events(harness.body) == [
        ("transition", {"n": 1}),
        ("transition", {"n": 2, "text": "two\nlines"}),  # newlines stay inside the JSON
        ("end", {"transitions": 2}),
    ]
    assert harness.sent[-1]["more_body"] is False
    assert watch.entered
    assert watch.exited
    assert watch.exit_error is None


async def test_a_library_error_ends_the_stream_with_an_error_event() -> None:
    watch = ScriptedWatch([{"n": 1}, ServerError("the server failed", status=503)])
    harness = ASGIHarness()
    await harness.run(WatchEventStream(watch, serialize=identity, heartbeat=None))  # type: ignore[arg-type]

    events = parse_events(harness.body)
    assert events[0] == ("transition", {"n": 1})
    assert events[1][0] == "error"
    assert events[1][1]["error"] == "ServerError"
    # The browser learns what kind of failure it was, not the exception's own text.
    assert events[1][1]["message"] == "the Document360 API failed (HTTP 503)"
    assert "the server failed" not in harness.body
    assert len(events) == 2  # no "end" after an error
    assert watch.exited


async def test_heartbeats_keep_an_idle_stream_alive() -> None:
    watch = ScriptedWatch([{"n": 1}], gap=0.12)
    harness = ASGIHarness()
    await harness.run(WatchEventStream(watch, serialize=identity, heartbeat=0.02))  # type: ignore[arg-type]

    assert harness.body.count(": keep-alive\n\n") >= 2
    assert [name for name, _ in parse_events(harness.body)] == ["transition", "end"]


async def test_a_disconnected_client_stops_the_watch_at_once() -> None:
    watch = ScriptedWatch([{"n": 1}], forever=True)  # would wait for a change forever
    harness = ASGIHarness()
    task = asyncio.create_task(
        harness.run(WatchEventStream(watch, serialize=identity, heartbeat=None))  # type: ignore[arg-type]
    )
    await wait_until(lambda: "transition" in harness.body, limit=2)
    harness.gone.set()
    await asyncio.wait_for(task, timeout=2)

    assert watch.exited
    assert watch.exit_error is asyncio.CancelledError  # left through cancellation, at once
    assert all(m.get("more_body", True) for m in harness.sent[1:])  # nothing sent after
    assert "end" not in harness.body


@pytest.mark.parametrize("heartbeat", [0, -1.0])
def test_heartbeat_must_be_positive(heartbeat: float) -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        WatchEventStream(ScriptedWatch(), heartbeat=heartbeat)  # type: ignore[arg-type]


def test_watching_targets_needs_the_request_to_find_the_client() -> None:
    with pytest.raises(TypeError, match="request"):
        watch_events([])


# -- real watches through ASGI ----------------------------------------------------------------


async def test_watch_events_follows_targets_with_the_application_client(
    fake: FakeDocument360,
) -> None:
    ids = fake.seed("v3.export", 2)
    failed = fake.seed("v3.export", 1, failure_ratio=1.0)
    app = FastAPI(
        lifespan=d360_lifespan(api_token=fake.api_token, base_url=fake.url, rate_limit=BUDGET)
    )

    @app.get("/events")
    async def stream(client: D360Client) -> WatchEventStream:
        targets = [client.exports.target(fake.project_id, i) for i in [*ids, *failed]]
        return watch_events(client.watch(targets, policy=QUICK_POLICY), heartbeat=None)

    async with asgi_client(app) as http:
        response = await http.get("/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_events(response.text)
    assert events[-1] == ("end", {"transitions": len(events) - 1})

    finals = {data["key"]: data for name, data in events if name == "transition" and data["final"]}
    assert len(finals) == 3
    phases = {key.rsplit("/", 1)[1]: data["phase"] for key, data in finals.items()}
    assert phases == {ids[0]: "succeeded", ids[1]: "succeeded", failed[0]: "failed"}
    first = next(data for name, data in events if name == "transition")
    assert set(first) == {
        "key",
        "target_kind",
        "kind",
        "previous",
        "phase",
        "raw_status",
        "observed_at",
        "polls",
        "final",
        "warnings",
        "error",
        "eta",
    }
    assert first["previous"] is None
    assert first["kind"] == "changed"
    assert first["target_kind"] == "v3.export"


async def test_watch_events_accepts_bare_targets(fake: FakeDocument360) -> None:
    ids = fake.seed("v3.export", 2, pending=0, running=0)  # finished: one poll each
    app = FastAPI(
        lifespan=d360_lifespan(api_token=fake.api_token, base_url=fake.url, rate_limit=BUDGET)
    )

    @app.get("/events")
    async def stream(request: Request, client: D360Client) -> WatchEventStream:
        return watch_events([client.exports.target(fake.project_id, i) for i in ids], request)

    async with asgi_client(app) as http:
        events = parse_events((await http.get("/events")).text)
    assert [(name, data.get("phase")) for name, data in events] == [
        ("transition", "succeeded"),
        ("transition", "succeeded"),
        ("end", None),
    ]


async def test_an_operation_that_vanished_ends_with_an_error_transition(
    fake: FakeDocument360,
) -> None:
    missing = str(uuid.uuid4())
    app = FastAPI(
        lifespan=d360_lifespan(api_token=fake.api_token, base_url=fake.url, rate_limit=BUDGET)
    )
    policy = PollPolicy(interval=0.05, not_found_grace=0)

    @app.get("/events")
    async def stream(client: D360Client) -> WatchEventStream:
        target = client.exports.target(fake.project_id, missing)
        return watch_events(client.watch([target], policy=policy))

    async with asgi_client(app) as http:
        events = parse_events((await http.get("/events")).text)
    [(name, data), end] = events
    assert name == "transition"
    assert data["kind"] == "error"
    assert data["final"] is True
    assert "Not Found" in data["error"] or "not found" in data["error"].lower()
    assert end == ("end", {"transitions": 1})


def test_transition_payload_is_json_and_leaves_the_signed_link_out() -> None:
    from datetime import UTC, datetime

    from d360_async import Transition, TransitionKind

    class Target:
        key = "v3.export/p/e"
        kind = "v3.export"

    transition = Transition(
        target=Target(),  # type: ignore[arg-type]
        kind=TransitionKind.CHANGED,
        previous=Phase.RUNNING,
        phase=Phase.SUCCEEDED,
        raw_status="Completed",
        snapshot={"download_url": "https://blob/x.zip?sig=SECRET"},
        observed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        polls=4,
        final=True,
    )
    payload = transition_payload(transition)
    assert payload == {
        "key": "v3.export/p/e",
        "target_kind": "v3.export",
        "kind": "changed",
        "previous": "running",
        "phase": "succeeded",
        "raw_status": "Completed",
        "observed_at": "2026-01-02T03:04:05+00:00",
        "polls": 4,
        "final": True,
        "warnings": [],
        "error": None,
        "eta": None,
    }
    assert "SECRET" not in json.dumps(payload)
    running = attrs.evolve(
        transition,
        phase=Phase.RUNNING,
        final=False,
        eta=Eta(seconds=41.04, low=20.0, high=70.04, samples=9),
    )
    assert transition_payload(running)["eta"] == {"seconds": 41.0, "low": 20.0, "high": 70.0}


# -- the example service through ASGI ---------------------------------------------------------


async def test_example_starts_one_export_per_workspace(
    example: ModuleType, fake: FakeDocument360
) -> None:
    async with asgi_client(example_app(example, fake)) as http:
        response = await http.post(
            "/exports", json={"workspace_ids": ["ws-a", "ws-b", "ws-c"], "format": "pdf"}
        )
    assert response.status_code == 202
    ids = response.json()["ids"]
    assert len(ids) == len(set(ids)) == 3
    assert {op.id for op in fake.operations("v3.export")} == set(ids)
    assert fake.stats.by_route["v3.exports.create"] == 3


async def test_example_streams_every_export_to_its_end(
    example: ModuleType, fake: FakeDocument360
) -> None:
    async with asgi_client(example_app(example, fake)) as http:
        started = await http.post("/exports", json={"workspace_ids": ["ws-a", "ws-b"]})
        ids = started.json()["ids"]
        response = await http.get("/exports/stream", params={"ids": ids})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_events(response.text)
    transitions = [data for name, data in events if name == "transition"]
    assert events[-1] == ("end", {"transitions": len(transitions)})
    for export_id in ids:
        mine = [t for t in transitions if t["id"] == export_id]
        assert mine[0]["previous"] is None
        assert [t["previous"] for t in mine[1:]] == [t["phase"] for t in mine[:-1]]
        assert mine[-1]["phase"] == Phase.SUCCEEDED.value
        assert mine[-1]["final"]
        assert mine[-1]["raw_status"] == "Completed"
    assert fake.stats.rate_limited == 0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("POST", "/exports", {"workspace_ids": []}, id="no-workspace"),
        pytest.param("POST", "/exports", {"workspace_ids": ["../etc"]}, id="bad-workspace"),
        pytest.param("POST", "/exports", {"format": "pdf"}, id="missing-workspaces"),
        pytest.param("GET", "/exports/stream", None, id="no-ids"),
        pytest.param("GET", "/exports/stream?ids=not-a-uuid", None, id="bad-id"),
        pytest.param("GET", "/exports/stream?ids=a%2F..%2Fb", None, id="path-in-id"),
    ],
)
async def test_example_refuses_bad_input_before_calling_the_api(
    example: ModuleType, fake: FakeDocument360, method: str, path: str, body: Any
) -> None:
    async with asgi_client(example_app(example, fake)) as http:
        response = await http.request(method, path, json=body)
    assert response.status_code == 422
    assert fake.stats.requests == 0


async def test_example_page_is_self_contained(example: ModuleType, fake: FakeDocument360) -> None:
    async with asgi_client(example_app(example, fake)) as http:
        response = await http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "new EventSource(" in page
    assert '"Completed"' in page
    assert "http://" not in page
    assert "https://" not in page
    assert "<link" not in page
    assert "src=" not in page


async def test_example_never_sends_backend_urls_or_error_text_to_the_browser(
    example: ModuleType, fake: FakeDocument360
) -> None:
    backend = fake.url.split("://", 1)[1]  # host:port of the Document360 API behind the app
    missing = str(uuid.uuid4())
    app = example_app(example, fake, policy=PollPolicy(interval=0.05, not_found_grace=0))
    async with asgi_client(app) as http:
        # An export that does not exist: the watch ends it with an error transition.
        stream = await http.get("/exports/stream", params={"ids": [missing]})
        # The API refusing to start exports: a 502 that says what kind of failure it was.
        fake.faults.set("http_500", 1.0, routes="v3.exports.create")
        refused = await http.post("/exports", json={"workspace_ids": ["ws-a"]})
        bad = await http.get("/exports/stream", params={"ids": ["../../secret"]})
    [(name, data), _end] = parse_events(stream.text)
    assert name == "transition"
    assert data["kind"] == "error"
    assert data["error"] == "not found (HTTP 404)"
    assert refused.status_code == 502
    assert refused.json() == {"detail": "the Document360 API failed (HTTP 500)"}
    assert bad.status_code == 422
    for body in (stream.text, refused.text, bad.text):
        assert backend not in body
        assert "127.0.0.1" not in body
        assert "/v3/projects" not in body
        assert fake.project_id not in body
        assert "must be a UUID" not in body  # the library's own validation text


def test_public_error_never_repeats_the_message() -> None:
    from d360_async import ConnectError, NotFound

    secret_text = "GET http://backend.internal:8080/v3/projects/p/exports/e"
    assert public_error(NotFound(secret_text, status=404)) == "not found (HTTP 404)"
    assert public_error(ConnectError(secret_text)) == "the Document360 API could not be reached"
    assert public_error(RuntimeError(secret_text)) == "the operation could not be followed"


def test_example_app_from_env(example: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D360_API_TOKEN", "token-from-env")
    monkeypatch.setenv("D360_PROJECT_ID", str(uuid.uuid4()))
    monkeypatch.setenv("D360_BASE_URL", "http://127.0.0.1:9")
    app = example.app_from_env()
    assert {route.path for route in app.routes} >= {"/", "/exports", "/exports/stream"}


# -- real uvicorn -----------------------------------------------------------------------------


class ProbedWatch:
    """Wraps a real watch and records, thread-safely, when its ``async with`` was left."""

    def __init__(self, watch: Any) -> None:
        self.watch = watch
        self.left = threading.Event()

    async def __aenter__(self) -> Any:
        return await self.watch.__aenter__()

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            return await self.watch.__aexit__(*exc)
        finally:
            self.left.set()


async def test_closing_the_connection_stops_the_watch_behind_uvicorn(
    fake: FakeDocument360,
) -> None:
    ids = fake.seed("v3.export", 3, pending=0, running=3600)  # they will not finish
    probes: list[ProbedWatch] = []
    app = FastAPI(
        lifespan=d360_lifespan(api_token=fake.api_token, base_url=fake.url, rate_limit=BUDGET)
    )
    policy = PollPolicy(interval=0.02, max_interval=0.02, adaptive=False)

    @app.get("/events")
    async def stream(client: D360Client) -> WatchEventStream:
        targets = [client.exports.target(fake.project_id, i) for i in ids]
        probe = ProbedWatch(client.watch(targets, policy=policy))
        probes.append(probe)
        return WatchEventStream(probe, heartbeat=None)  # type: ignore[arg-type]

    async with serve(app) as url:
        async with aiohttp.ClientSession() as session, session.get(f"{url}/events") as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            seen = 0
            async for line in response.content:
                seen += line.startswith(b"event: transition")
                if seen == len(ids):
                    break
            # Leaving the block without reading the rest closes the connection.
        await wait_until(lambda: bool(probes) and probes[0].left.is_set(), limit=5)

        # No poll after the watch was left (one already on the wire may still land).
        await asyncio.sleep(0.05)
        polls = fake.stats.by_route["v3.exports.get"]
        await asyncio.sleep(0.2)  # ten poll intervals
        assert fake.stats.by_route["v3.exports.get"] == polls
    assert len(probes) == 1
    assert fake.stats.rate_limited == 0


async def test_example_streams_through_uvicorn_as_it_happens(
    example: ModuleType, fake: FakeDocument360
) -> None:
    """Events arrive one by one while the exports run, not all at the end."""
    async with serve(example_app(example, fake)) as url, aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/exports", json={"workspace_ids": ["ws-a", "ws-b"]}
        ) as started:
            ids = (await started.json())["ids"]
        arrivals: list[tuple[float, str]] = []
        async with session.get(
            f"{url}/exports/stream", params=[("ids", i) for i in ids]
        ) as response:
            text = ""
            async for chunk in response.content.iter_any():
                text += chunk.decode()
                arrivals.append((time.monotonic(), chunk.decode()))
    events = parse_events(text)
    assert events[-1][0] == "end"
    assert {data["id"] for name, data in events if name == "transition" and data["final"]} == set(
        ids
    )
    assert len(arrivals) > 1  # streamed in pieces, not buffered into one
