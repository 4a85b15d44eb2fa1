"""FastAPI integration: one client per application, and watches streamed as server-sent events.

Install with ``pip install 'd360-async[fastapi]'``. Three pieces:

* [d360_lifespan][d360_async.contrib.fastapi.d360_lifespan] opens one [Client][d360_async.Client]
  when the application starts, stores it on ``app.state``, and closes it on shutdown
  ([open_client][d360_async.contrib.fastapi.open_client] does the same inside a lifespan of your
  own);
* [get_client][d360_async.contrib.fastapi.get_client] is the dependency that hands that client to
  endpoints ([D360Client][d360_async.contrib.fastapi.D360Client] is the ready-made ``Annotated``
  form);
* [watch_events][d360_async.contrib.fastapi.watch_events] turns a watch into a ``text/event-stream``
  response: one ``event: transition`` with a JSON ``data:`` line per
  [Transition][d360_async.Transition], then one ``event: end``. When the browser goes away the
  watch is left at once, so every request it had in flight stops.

For example:

```python
app = FastAPI(lifespan=d360_lifespan(api_token=os.environ["D360_API_TOKEN"]))

@app.get("/exports/{export_id}/events")
async def export_events(export_id: str, client: D360Client) -> WatchEventStream:
    return watch_events(client.watch([client.exports.target(PROJECT_ID, export_id)]))
```

Added in version 0.1.0.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, Final

import anyio
import anyio.lowlevel
from fastapi import Depends
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from d360_async import (
    APIError,
    AuthenticationError,
    Client,
    D360Error,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    RateLimited,
    RedactingFilter,
    ServerError,
    Target,
    Transition,
    TransportError,
    ValidationError,
    Watch,
)

__all__ = [
    "STATE_KEY",
    "D360Client",
    "WatchEventStream",
    "d360_lifespan",
    "get_client",
    "open_client",
    "public_error",
    "transition_payload",
    "watch_events",
]

logger = logging.getLogger("d360_async.contrib.fastapi")
logger.addFilter(RedactingFilter())  # tokens and link signatures never reach a handler

STATE_KEY: Final = "d360_client"
"""The attribute of ``app.state`` that holds the application's client."""

TransitionSerializer = Callable[[Transition[Any]], Mapping[str, Any]]
"""Turns one transition into the JSON object sent as an event's ``data``."""


# -- one client per application -------------------------------------------------------------


@asynccontextmanager
async def open_client(app: Starlette, /, **client_kwargs: Any) -> AsyncIterator[Client]:
    """Open a client for ``app`` for as long as the block runs; for your own lifespan.

    The client is built with ``Client(**client_kwargs)``, stored as ``app.state.d360_client``
    (where [get_client][d360_async.contrib.fastapi.get_client] finds it), and closed and removed
    when the block exits:

    ```python
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_client(app, api_token=token) as client:
            ...  # anything else your application starts
            yield
    ```

    ``app`` is the FastAPI (or Starlette) application. The client is created when the block
    starts, so create it inside the application's event loop, as a lifespan does.

    Added in version 0.1.0.
    """
    if getattr(app.state, STATE_KEY, None) is not None:
        raise RuntimeError(f"app.state.{STATE_KEY} is already set: one client per application")
    client = Client(**client_kwargs)
    setattr(app.state, STATE_KEY, client)
    try:
        async with client:
            yield client
    finally:
        delattr(app.state, STATE_KEY)


def d360_lifespan(
    **client_kwargs: Any,
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """A lifespan for ``FastAPI(lifespan=...)`` that opens one client per application.

    ``client_kwargs`` are passed to [Client][d360_async.Client] when the application starts
    (not when this is called), and the client is closed on shutdown:

    ```python
    app = FastAPI(lifespan=d360_lifespan(api_token=token, base_url=Region.US))
    ```

    To start other things too, use [open_client][d360_async.contrib.fastapi.open_client] inside a
    lifespan of your own.

    Added in version 0.1.0.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_client(app, **client_kwargs):
            yield

    return lifespan


def get_client(request: Request) -> Client:
    """The dependency that hands the application's client to an endpoint.

    Raises:
        RuntimeError: the application was not started with
            [d360_lifespan][d360_async.contrib.fastapi.d360_lifespan] or
            [open_client][d360_async.contrib.fastapi.open_client] (or has already shut down).

    Added in version 0.1.0.
    """
    client = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(client, Client):
        raise RuntimeError(
            "no d360_async client on app.state: create the application with "
            "FastAPI(lifespan=d360_lifespan(...)) or use open_client() in its lifespan"
        )
    return client


D360Client = Annotated[Client, Depends(get_client)]
"""An endpoint parameter annotated ``client: D360Client`` receives the application's client."""


# -- server-sent events ---------------------------------------------------------------------


# What a browser is told about an error, by its class: a category and nothing else.  The
# message of one of our errors names the backend's method and URL (redacted of secrets, but
# still the backend's address) and may quote the server's own error text, which is the
# backend's business, not the page's.
_PUBLIC_ERRORS: Final[tuple[tuple[type[D360Error], str], ...]] = (
    (NotFound, "not found"),
    (AuthenticationError, "the service's credential was refused"),
    (PermissionDenied, "the service may not do this"),
    (RateLimited, "rate limited; try again later"),
    (ValidationError, "the request was refused"),
    (ServerError, "the Document360 API failed"),
    (APIError, "the Document360 API answered with an error"),
    (MalformedResponse, "the Document360 API's answer could not be read"),
    (TransportError, "the Document360 API could not be reached"),
)


def public_error(exc: BaseException) -> str:
    """A short description of ``exc`` that is safe to send to a browser.

    It says what kind of failure it was ("not found", "the Document360 API could not be
    reached"), with the HTTP status when there was one, and never the backend's URL, the
    server's error text or anything else from the exception's message.  Log the exception
    itself on the server for the details.

    Added in version 0.1.0.
    """
    for cls, text in _PUBLIC_ERRORS:
        if isinstance(exc, cls):
            status = exc.status
            return f"{text} (HTTP {status})" if status is not None else text
    return "the operation could not be followed"


def transition_payload(transition: Transition[Any]) -> dict[str, Any]:
    """The default JSON object for one transition's ``data:`` line.

    Keys: ``key`` and ``target_kind`` (the target's), ``kind`` (``"changed"``,
    ``"stalled"``, ``"error"`` or ``"timed_out"``), ``previous`` (``null`` on first sight) and
    ``phase`` (lower-case phase names), ``raw_status``, ``observed_at`` (ISO 8601), ``polls``,
    ``final`` (nothing more will come for this target), ``warnings``, ``error`` (what
    [public_error][d360_async.contrib.fastapi.public_error] says about the error behind an
    ``"error"`` transition, else ``null``: never the backend's URL or the server's own error
    text, which stay in the server's log) and ``eta`` (``{"seconds", "low", "high"}``:
    expected seconds from ``observed_at`` until it finishes and the 80 % interval, from the
    durations learned for its kind; ``null`` when unknown).

    The snapshot is left out on purpose: an export's snapshot holds a signed download link,
    which authorises whoever reads it. Pass your own ``serialize=`` to
    [watch_events][d360_async.contrib.fastapi.watch_events] to send what your page needs.

    Added in version 0.1.0.
    """
    error = transition.error
    eta = transition.eta
    return {
        "key": transition.target.key,
        "target_kind": transition.target.kind,
        "kind": transition.kind.value,
        "previous": None if transition.previous is None else transition.previous.value,
        "phase": transition.phase.value,
        "raw_status": transition.raw_status,
        "observed_at": transition.observed_at.isoformat(),
        "polls": transition.polls,
        "final": transition.final,
        "warnings": list(transition.warnings),
        "error": None if error is None else public_error(error),
        "eta": None
        if eta is None
        else {
            "seconds": round(eta.seconds, 1),
            "low": round(eta.low, 1),
            "high": round(eta.high, 1),
        },
    }


def _event(name: str, data: Mapping[str, Any]) -> bytes:
    # One JSON line per event: json.dumps never emits a raw newline, which would end the field.
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
    return f"event: {name}\ndata: {body}\n\n".encode()


class WatchEventStream(Response):
    """A ``text/event-stream`` response that runs a watch while the client listens.

    Build it with [watch_events][d360_async.contrib.fastapi.watch_events]. It enters the watch when
    the response starts, sends an ``event: transition`` per transition and an ``event: end``
    (``data: {"transitions": n}``) once the watch is over, and a comment line every ``heartbeat``
    seconds so that proxies keep the connection open. If the watch raises a
    [D360Error][d360_async.D360Error], an ``event: error`` (``data: {"error": <class name>,
    "message": <public_error(exc)>}``) is sent instead of ``end``; the details go to the log.

    The response listens for the client's disconnection itself, whichever ASGI server runs it:
    when the client goes away, the watch's ``async with`` is left at once (cancelling its
    requests) and nothing more is sent.

    Added in version 0.1.0.
    """

    media_type = "text/event-stream"
    """Server-sent events."""

    def __init__(
        self,
        watch: Watch[Any],
        *,
        serialize: TransitionSerializer = transition_payload,
        heartbeat: float | None = 15.0,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if heartbeat is not None and not heartbeat > 0:
            raise ValueError(
                f"heartbeat must be a positive number of seconds or None, got {heartbeat!r}"
            )
        self.watch = watch
        self.serialize = serialize
        self.heartbeat = heartbeat
        self.status_code = status_code
        self.background = None
        self.disconnected = False
        sse_headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        sse_headers.update(headers or {})
        self.init_headers(sse_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        lock = anyio.Lock()
        final = b""
        async with anyio.create_task_group() as tasks:

            def gone() -> None:
                self.disconnected = True
                tasks.cancel_scope.cancel()

            async def write(chunk: bytes) -> None:
                async with lock:
                    try:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    except OSError:
                        # ASGI servers of spec 2.4 may raise this when the client has gone.
                        gone()
                        await anyio.lowlevel.checkpoint()

            async def listen() -> None:
                # Read the request's messages until the disconnection, whichever ASGI server
                # runs us: the watch must stop the moment nobody listens, even if it is
                # waiting for a change and has nothing to send.
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone()

            async def beat(every: float) -> None:
                while True:
                    await anyio.sleep(every)
                    await write(b": keep-alive\n\n")

            tasks.start_soon(listen)
            if self.heartbeat is not None:
                tasks.start_soon(beat, self.heartbeat)
            final = await self._run(write)
            tasks.cancel_scope.cancel()
        if not self.disconnected:
            await send({"type": "http.response.body", "body": final, "more_body": False})

    async def _run(self, write: Callable[[bytes], Awaitable[None]]) -> bytes:
        """Run the watch, writing each transition; return the closing event."""
        count = 0
        try:
            async with self.watch as watch:
                async for transition in watch:
                    await write(_event("transition", self.serialize(transition)))
                    count += 1
        except D360Error as exc:
            logger.warning(
                "a watch streamed as server-sent events failed: %s",
                exc,
                extra={"d360_error": type(exc).__name__, "d360_status": exc.status},
            )
            return _event("error", {"error": type(exc).__name__, "message": public_error(exc)})
        return _event("end", {"transitions": count})


def watch_events(
    source: Watch[Any] | Iterable[Target[Any]],
    request: Request | None = None,
    *,
    serialize: TransitionSerializer = transition_payload,
    heartbeat: float | None = 15.0,
    headers: Mapping[str, str] | None = None,
) -> WatchEventStream:
    """Stream a watch to the client as server-sent events.

    Args:
        source: a watch that has not been entered yet (``client.watch(...)``, with any
            policy or options), or targets to watch with the application's client (then
            ``request`` is needed to find it).
        request: the current request; only needed when ``source`` is targets.
        serialize: builds each transition's JSON object
            ([transition_payload][d360_async.contrib.fastapi.transition_payload] by default).
        heartbeat: seconds between keep-alive comments, or ``None`` for none.
        headers: extra response headers.

    In the browser:

    ```javascript
    const events = new EventSource("/exports/events");
    events.addEventListener("transition", (e) => show(JSON.parse(e.data)));
    events.addEventListener("end", () => events.close());
    ```

    Close the ``EventSource`` on ``end``: otherwise the browser reconnects and the watch starts
    again.

    Added in version 0.1.0.
    """
    if isinstance(source, Watch):
        watch = source
    else:
        if request is None:
            raise TypeError("watch_events(targets, ...) needs the request to find the client")
        watch = get_client(request).watch(source)
    return WatchEventStream(watch, serialize=serialize, heartbeat=heartbeat, headers=headers)
