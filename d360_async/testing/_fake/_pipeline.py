"""The request path through the fake server: one `Pipeline.dispatch` per request, O(1) work.

```python
count -> simulated latency -> authenticate (401) -> rate limit (429)
      -> pick a fault -> handler builds a Reply -> apply body faults -> send
```

Only an unfaulted answer (or a ``slow`` one that is delivered) records an operation's poll and
the first time its terminal status was served. Latency and ``slow`` faults wait on the server's
clock; [stop][d360_async.testing.FakeDocument360.stop] wakes every waiter at once, and a woken
request is dropped instead of answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from ._auth import authenticate, unauthorized
from ._bodies import HTML_502, MALFORMED_JSON
from ._body_faults import mutate
from ._downloads import Downloads
from ._faults import Fault
from ._ratelimit import rate_headers
from ._replies import JSON_TYPE, BadBody, Family, Handler, Reply, Route, bad_request, error
from ._state import FakeState

__all__ = ["Pipeline"]

_log = logging.getLogger("d360_async.testing")


class Pipeline:
    """Serves the routes of every family over one state (module docstring)."""

    __slots__ = ("_sleepers", "downloads", "routes", "state", "stopping")

    def __init__(self, state: FakeState, downloads: Downloads, routes: Iterable[Route]) -> None:
        self.state = state
        self.downloads = downloads
        self.routes = list(routes)
        self.stopping = False
        self._sleepers: set[asyncio.Future[None]] = set()

    def build_app(self) -> web.Application:
        app = web.Application()
        for method, path, route, family, handler in self.routes:
            app.router.add_route(method, path, self._endpoint(route, family, handler))
        return app

    def wake_all(self) -> None:
        """Wake every request held by latency or a ``slow`` fault (they are then dropped)."""
        self.stopping = True
        for sleeper in list(self._sleepers):
            if not sleeper.done():
                sleeper.set_result(None)

    def _endpoint(
        self, route: str, family: Family, handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            return await self.dispatch(request, route, family, handler)

        return endpoint

    async def dispatch(
        self, request: web.Request, route: str, family: Family, handler: Handler
    ) -> web.StreamResponse:
        state = self.state
        stats = state.stats
        stats.requests += 1
        stats.by_route[route] += 1
        traceparent = request.headers.get("traceparent")
        if traceparent is not None:
            stats.trace_context[route, traceparent.split("-")[1] if "-" in traceparent else ""] += 1
        if state.record_times:
            stats.request_times.append(state.now())
        low, high = state.latency
        if high > 0:
            await self._sleep(low if low == high else state.latency_rng.uniform(low, high))
            if self.stopping:
                return self._drop(request, route)
        now = state.now()
        headers: dict[str, str] = {}

        if family == "download":
            stats.downloads += 1
            if "Authorization" in request.headers or "api_token" in request.headers:
                stats.downloads_with_credentials += 1
        elif family != "token":
            key = authenticate(state, request, family, now)
            if key is None:
                stats.auth_failures += 1
                return self._send(route, unauthorized(state, request, family), headers)
            limiter = state.sd_limiter if family == "sd" else state.limiter
            if limiter is not None:
                limiter.record = state.record_times
                epoch = state.epoch(now)
                decision = limiter.admit(key, now, epoch)
                rate_headers(limiter.config, decision, epoch, headers)
                if not decision.allowed:
                    stats.rate_limited += 1
                    headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
                    return self._send(route, error(state, family, 429), headers)
                if state.record_times:
                    stats.admitted_times.append(now)

        fault = state.faults.pick(route)
        if fault is not None:
            stats.faults[fault.kind] += 1
            early = await self._early_fault(request, route, family, fault, headers)
            if early is not None:
                return early
            if fault.kind == "slow":
                fault = None  # delivered in full after the delay: an ordinary answer
                now = state.now()

        try:
            reply = await handler(request, now)
        except BadBody as exc:
            reply = bad_request(state, family, str(exc))

        if fault is None:
            for op, terminal in reply.served:
                op.served(now, terminal, record=state.record_times)
            if route == "download" and reply.status == 200:
                stats.downloads_served += 1
            return self._send(route, reply, headers)
        kind = fault.kind
        if kind == "truncated":
            return await self._send_truncated(request, route, reply, headers)
        if kind == "malformed_json":
            reply.status, reply.body, reply.content_type = 200, MALFORMED_JSON, JSON_TYPE
        elif reply.payload is not None and reply.body is None:
            mutate(reply.payload, kind, reply.status_paths)
        return self._send(route, reply, headers)

    async def _early_fault(
        self,
        request: web.Request,
        route: str,
        family: Family,
        fault: Fault,
        headers: dict[str, str],
    ) -> web.StreamResponse | None:
        """Faults answered before the handler runs; ``None`` lets the request go on."""
        kind = fault.kind
        if kind == "slow":
            await self._sleep(fault.delay)
            transport = request.transport
            if self.stopping or transport is None or transport.is_closing():
                return self._drop(request, route)
            return None
        if kind == "abort":
            return self._drop(request, route)
        if kind == "http_500":
            return self._send(route, error(self.state, family, 500), headers)
        if kind == "http_503":
            headers["Retry-After"] = str(fault.retry_after)
            return self._send(route, error(self.state, family, 503), headers)
        if kind == "html_502":
            reply = Reply(502, body=HTML_502, content_type="text/html; charset=utf-8")
            return self._send(route, reply, headers)
        if kind == "expired_link":
            refused = self.downloads.refused(self.state.now(), expired=True)
            return self._send(route, refused, headers)
        return None

    def _drop(self, request: web.Request, route: str) -> web.Response:
        """Close the connection without answering (counted as status 0)."""
        self._count(route, 0)
        transport = request.transport
        if transport is not None:
            transport.close()
        # Writing this response to the closed transport fails, which aiohttp's server takes
        # for a client that went away: no error is logged.
        return web.Response()

    def _send(self, route: str, reply: Reply, headers: dict[str, str]) -> web.Response:
        body = reply.encode()
        headers["Date"] = email.utils.formatdate(self.state.epoch(), usegmt=True)
        if reply.headers:
            headers.update(reply.headers)
        if body:
            headers["Content-Type"] = reply.content_type
        self._count(route, reply.status)
        return web.Response(status=reply.status, body=body or None, headers=headers)

    async def _send_truncated(
        self, request: web.Request, route: str, reply: Reply, headers: dict[str, str]
    ) -> web.StreamResponse:
        body = reply.encode()
        headers["Date"] = email.utils.formatdate(self.state.epoch(), usegmt=True)
        if reply.headers:
            headers.update(reply.headers)
        headers["Content-Type"] = reply.content_type
        self._count(route, reply.status)
        response = web.StreamResponse(status=reply.status, headers=headers)
        response.content_length = max(len(body), 16)  # promise more than will arrive
        with contextlib.suppress(ConnectionError):
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
        transport = request.transport
        if transport is not None:
            transport.close()  # flushes what was written, then closes mid-body
        return response

    def _count(self, route: str, status: int) -> None:
        stats = self.state.stats
        stats.by_status[status] += 1
        stats.by_route_status[route, status] += 1
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("fake Document360: %s -> %d", route, status)

    async def _sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds of the server's clock, or until `wake_all`."""
        if delay <= 0:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        handle = self.state.clock.call_later(delay, functools.partial(_wake, waiter))
        self._sleepers.add(waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._sleepers.discard(waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
