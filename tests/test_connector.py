"""The session's read timeout (`Timeouts.read`) through the lazy-timer protocol, against a
real aiohttp server on 127.0.0.1: silence fails the read, a steady trickle does not, and a
connection kept alive between requests carries no stale timeout into the next one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from d360_async._core._config import Timeouts
from d360_async._core._errors import TimeoutError as D360TimeoutError
from d360_async._core._retry import RetryPolicy
from d360_async._limiters import LocalRateLimiter, RateLimitConfig
from d360_async._transport._connector import (
    LazyReadTimeoutProtocol,
    lazy_timeout_supported,
    tcp_connector,
)
from d360_async._transport._transport import Transport

READ = 0.5  # seconds of silence that fail a read


async def _quick(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _silent(request: web.Request) -> web.StreamResponse:
    """Headers at once, then nothing for longer than the read timeout."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = 20
    await response.prepare(request)
    await asyncio.sleep(READ * 3)
    return response


async def _trickle(request: web.Request) -> web.StreamResponse:
    """A body that takes twice the read timeout to arrive, never silent for a fifth of it."""
    chunks = 10
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = 2 + chunks
    await response.prepare(request)
    await response.write(b'"')
    for _ in range(chunks):
        await asyncio.sleep(READ / 5)
        await response.write(b"x")
    await response.write(b'"')
    return response


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/quick", _quick)
    app.router.add_get("/silent", _silent)
    app.router.add_get("/trickle", _trickle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _transport(url: str) -> Transport:
    return Transport(
        base_url=url,
        limiter=LocalRateLimiter(RateLimitConfig(rate=1000, period=1)),
        retry=RetryPolicy(max_attempts=1),
        timeouts=Timeouts(connect=5.0, read=READ, total=10.0),
    )


def test_aiohttp_still_has_what_the_protocol_replaces() -> None:
    # If aiohttp renames its read-timeout methods, the session silently falls back to its
    # own connector: this says so instead.
    assert lazy_timeout_supported()


async def test_the_client_session_uses_the_lazy_protocol(server: str) -> None:
    transport = _transport(server)
    try:
        session = await transport.session()
        connector = session.connector
        assert connector is not None
        assert isinstance(connector._factory(), LazyReadTimeoutProtocol)
    finally:
        await transport.aclose()


async def test_silence_longer_than_read_times_out(server: str) -> None:
    transport = _transport(server)
    started = time.monotonic()
    try:
        with pytest.raises(D360TimeoutError) as info:
            await transport.request("GET", "/silent", auth=None)
    finally:
        await transport.aclose()
    elapsed = time.monotonic() - started
    assert info.value.cause_type in {"SocketTimeoutError", "ServerTimeoutError"}
    # The read timeout fired, not the total one (10 s) nor the end of the server's sleep.
    assert READ <= elapsed < READ * 3


async def test_a_steady_trickle_longer_than_read_is_not_cut(server: str) -> None:
    transport = _transport(server)
    try:
        response = await transport.request("GET", "/trickle", auth=None)
    finally:
        await transport.aclose()
    assert response.json() == "x" * 10


async def test_a_kept_alive_connection_idle_past_read_serves_the_next_request(
    server: str,
) -> None:
    transport = _transport(server)
    try:
        first = await transport.request("GET", "/quick", auth=None)
        # The connection's timer was armed for the first response; it fires while the
        # connection is idle in the pool and must neither fail it nor the next request.
        await asyncio.sleep(READ * 1.5)
        second = await transport.request("GET", "/quick", auth=None)
        # ... and after the next one, a silence still times out on the same pool.
        with pytest.raises(D360TimeoutError):
            await transport.request("GET", "/silent", auth=None)
    finally:
        await transport.aclose()
    assert first.json() == second.json() == {"ok": True}


async def test_a_shorter_timeout_after_a_longer_one_on_one_connection(server: str) -> None:
    # A connection read under a long timeout (a download's), then reused under a short one:
    # the timer armed for the long deadline must not delay the short one.
    connector = tcp_connector(limit=1)  # one connection: the second request reuses it
    async with aiohttp.ClientSession(connector=connector) as session:
        long = aiohttp.ClientTimeout(total=None, sock_read=30.0)
        async with session.get(f"{server}/quick", timeout=long) as response:
            await response.read()
        short = aiohttp.ClientTimeout(total=None, sock_read=READ)
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            async with session.get(f"{server}/silent", timeout=short) as response:
                await response.read()
        elapsed = time.monotonic() - started
    assert READ <= elapsed < READ * 3
