"""Cancellation at random points of a watch, a download and a paginated iteration.

Hypothesis picks the moment; each example runs on a fresh event loop against a fresh
FakeDocument360 with a few milliseconds of latency, cancels the task doing the work at that
moment, and then checks that cancellation left nothing behind:

* no task of ours outlives it (``asyncio.all_tasks()`` minus the fake server's own);
* no connection stays checked out of the pool, no rate-limit ticket stays in flight, and once
  the client is closed no socket to the fake is left open (``psutil``);
* no temporary file is left beside a download's destination, which is either absent or whole;
* the fake receives no request after the cancellation returned.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from d360_async import Client, PollPolicy, RateLimitConfig
from d360_async.testing import FakeDocument360, FakeLifecycle

# Each example is a fresh event loop and server, cancelled at a random real moment: five per
# scenario in the default run (a new draw each run); D360_CANCEL_EXAMPLES=50 for a longer hunt.
CANCEL = settings(
    max_examples=int(os.environ.get("D360_CANCEL_EXAMPLES", "5")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
LATENCY = (0.002, 0.008)
SETTLE = 0.12  # longer than any poll interval, backoff or latency in these scenarios


def _ours(task: asyncio.Task[Any]) -> bool:
    """A task of the client side: not the fake server's request handlers."""
    code = getattr(task.get_coro(), "cr_code", None)
    filename = code.co_filename if code is not None else ""
    return "aiohttp/web" not in filename and "d360_async/testing" not in filename


def _client_tasks() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done() and _ours(t)}


def _sockets_to(port: int) -> int:
    """Established TCP connections of this process whose far end is ``port`` (client side)."""
    return sum(
        1
        for conn in psutil.Process().net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED
    )


async def _cancel_at(delay: float, work: Callable[[], Awaitable[Any]]) -> bool:
    """Run ``work`` in a task and cancel it after ``delay`` s; True if it was cancelled."""
    task = asyncio.ensure_future(work())
    done, _ = await asyncio.wait({task}, timeout=delay)
    if done:
        task.result()  # finished first: fine, but it must not have failed
        return False
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return True
    return False


async def _after_cancellation(fake: FakeDocument360, client: Client) -> None:
    """The checks shared by every scenario; ``client`` is closed at the end."""
    for _ in range(20):  # let bytes already written before the cancellation be received
        await asyncio.sleep(0)
    requests = fake.stats.requests
    await asyncio.sleep(SETTLE)
    assert fake.stats.requests == requests, "a request reached the fake after cancellation"
    assert _client_tasks() == set(), f"leaked tasks: {_client_tasks()}"
    session = await client._transport.session()
    connector = session.connector
    assert connector is not None
    assert not connector._acquired, "a connection is still checked out of the pool"
    for stats in client.rate_limit_stats():
        assert stats.in_flight == 0, f"a rate-limit ticket was never completed: {stats}"
        assert stats.queued == 0
    port = int(fake.url.rsplit(":", 1)[1])
    await client.aclose()
    await asyncio.sleep(0.01)
    assert _sockets_to(port) == 0, "a socket to the fake is still open"


def _client(fake: FakeDocument360) -> Client:
    return Client(
        api_token=fake.api_token,
        base_url=fake.url,
        rate_limit=RateLimitConfig(rate=2000.0, period=1.0),
    )


def _run(scenario: Awaitable[None]) -> None:
    asyncio.run(scenario)
    gc.collect()  # an unclosed session, response or file would warn now: warnings are errors


# -- a watch -------------------------------------------------------------------------------------


async def _watch_scenario(cancel_at: float) -> None:
    lifecycle = FakeLifecycle(pending=(0.05, 0.2), running=(0.05, 0.3), failure_ratio=0.2)
    async with FakeDocument360(rate_limit=None, latency=LATENCY, lifecycle=lifecycle) as fake:
        client = _client(fake)
        ids = fake.seed("v3.export", 40)
        targets = [client.exports.target(fake.project_id, export_id) for export_id in ids]
        seen: list[Any] = []

        async def consume() -> None:
            policy = PollPolicy(interval=0.02, max_interval=0.1)
            async with client.watch(targets, policy=policy, max_concurrency=8) as watch:
                async for transition in watch:
                    seen.append(transition)

        try:
            cancelled = await _cancel_at(cancel_at, consume)
            if not cancelled:
                assert sum(t.final for t in seen) == len(ids)
            await _after_cancellation(fake, client)
        finally:
            await client.aclose()


@CANCEL
@given(cancel_at=st.floats(0.0, 0.6))
def test_cancelling_a_watch(cancel_at: float) -> None:
    _run(_watch_scenario(cancel_at))


# -- a download ----------------------------------------------------------------------------------


async def _download_scenario(cancel_at: float, dest: Path) -> tuple[bool, bytes]:
    """Cancel a download; return whether it was cancelled, and the bytes it should write."""
    async with FakeDocument360(rate_limit=None, latency=LATENCY, download_size=512 * 1024) as fake:
        client = _client(fake)
        (export_id,) = fake.seed("v3.export", 1, pending=0.0, running=0.0, failure_ratio=0.0)

        async def download() -> None:
            await client.exports.download(fake.project_id, export_id, dest, chunk_size=2048)

        try:
            cancelled = await _cancel_at(cancel_at, download)
            await _after_cancellation(fake, client)
        finally:
            await client.aclose()
        return cancelled, fake.download_bytes(export_id)


@CANCEL
@given(cancel_at=st.floats(0.0, 0.15))
def test_cancelling_a_download(cancel_at: float, tmp_path: Path) -> None:
    workdir = tmp_path / "downloads"
    workdir.mkdir(exist_ok=True)
    for leftover in workdir.iterdir():  # tmp_path is shared by the examples
        leftover.unlink()
    dest = workdir / "export.zip"
    cancelled = False
    content = b""

    async def scenario() -> None:
        nonlocal cancelled, content
        cancelled, content = await _download_scenario(cancel_at, dest)

    _run(scenario())
    left = sorted(p.name for p in workdir.iterdir())
    if cancelled:
        assert left in ([], ["export.zip"]), f"left behind: {left}"
    else:
        assert left == ["export.zip"], f"left behind: {left}"
    if left:
        assert dest.read_bytes() == content, "a partial file"


# -- a paginated iteration -------------------------------------------------------------------------


async def _pagination_scenario(cancel_at: float) -> None:
    async with FakeDocument360(rate_limit=None, latency=LATENCY) as fake:
        client = _client(fake)
        (reference,) = fake.seed("v3.api_reference", 1, log_history=120)
        logs: list[Any] = []

        async def iterate() -> None:
            async for log in client.api_references.logs(fake.project_id, reference, page_size=5):
                logs.append(log)

        try:
            cancelled = await _cancel_at(cancel_at, iterate)
            if not cancelled:
                assert len(logs) == 121
            await _after_cancellation(fake, client)
        finally:
            await client.aclose()


@CANCEL
@given(cancel_at=st.floats(0.0, 0.3))
def test_cancelling_a_paginated_iteration(cancel_at: float) -> None:
    _run(_pagination_scenario(cancel_at))
