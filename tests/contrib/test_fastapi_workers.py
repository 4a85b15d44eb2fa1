"""The example service under ``uvicorn --workers 4`` with the observation hub, in Chromium.

The "Done when" of issue 17 part 3: a real uvicorn with four worker processes
(``app_from_env``, ``D360_REDIS_URL`` set, so each worker opens a ``RedisRateLimiter`` and an
``ObservationHub``), a real ``redis-server``, ``FakeDocument360`` in the test process, and
two pages in two browser contexts (two connection pools) following the same exports.  The
second page is reopened until its event stream is served by another worker than the first
page's (``X-Worker``).  Both must show "Completed" for every export, and the fake must have
served one stream of polls per export: never two polls of one export closer than the
policy's interval allows (two workers polling on their own would be).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from benchmarks._harness import redis_server
from d360_async import PollPolicy, TargetKind
from d360_async.testing import FakeDocument360, FakeLifecycle, FakeRateLimit

from .support import EXAMPLE
from .test_fastapi_browser import CHROMIUM, PAGE_LIMIT, DevTools, Page, chromium

# Real OS processes over real seconds: not in the default run (`make test-slow`, run by .ci/run).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.redis,
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed"),
]

WORKERS = 4
EXPORTS = 3
INTERVAL = PollPolicy().interval  # the example's watches use the default policy
ROOT = EXAMPLE.parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def uvicorn_workers(env: dict[str, str]) -> AsyncIterator[str]:
    """``uvicorn --workers 4 --factory docs.examples.fastapi_app:app_from_env``; its URL."""
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "docs.examples.fastapi_app:app_from_env",
        "--workers",
        str(WORKERS),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        cwd=ROOT,
        env={**os.environ, **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        pids: set[str] = set()
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            # Ready once every worker has answered (each request may reach any of them).
            while len(pids) < WORKERS:
                if process.returncode is not None or time.monotonic() > deadline:
                    err = b""
                    if process.stderr is not None and process.returncode is not None:
                        err = await process.stderr.read()
                    raise RuntimeError(f"uvicorn workers did not start: {err.decode()[-2000:]}")
                try:
                    async with http.get(url + "/", headers={"Connection": "close"}) as response:
                        pids.add(response.headers["x-worker"])
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
        yield url
    finally:
        if process.returncode is None:
            process.terminate()  # uvicorn's manager stops its workers, lifespans included
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def open_page(devtools: DevTools, url: str) -> tuple[Page, str, str]:
    """A tab in a new browser context at ``url``; returns it, its context, and the worker
    that serves its event stream."""
    context = (await devtools.send("Target.createBrowserContext"))["browserContextId"]
    created = await devtools.send(
        "Target.createTarget", {"url": "about:blank", "browserContextId": context}
    )
    attached = await devtools.send(
        "Target.attachToTarget", {"targetId": created["targetId"], "flatten": True}
    )
    page = Page(devtools, attached["sessionId"])
    for domain in ("Runtime", "Page", "Network"):
        await devtools.send(f"{domain}.enable", session=page.session)
    await devtools.send("Page.navigate", {"url": url}, session=page.session)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for event in devtools.events:
            if (
                event.get("sessionId") == page.session
                and event["method"] == "Network.responseReceived"
                and "/exports/stream" in event["params"]["response"]["url"]
            ):
                headers = {k.lower(): v for k, v in event["params"]["response"]["headers"].items()}
                return page, context, headers["x-worker"]
        await asyncio.sleep(0.05)
    raise AssertionError("the page never opened its event stream")


async def completed(page: Page) -> list[str]:
    statuses: list[str] = await page.wait_for(
        f"""(() => {{
            const cells = [...document.querySelectorAll('#exports td.status')];
            const text = cells.map((td) => td.textContent);
            const done = cells.length === {EXPORTS}
                && text.every((t) => t === 'Completed')
                && document.getElementById('summary').textContent.includes('finished');
            return done && text;
        }})()""",
        limit=PAGE_LIMIT,
    )
    return statuses


@pytest.mark.timeout(180)
async def test_two_workers_two_pages_one_poll_stream_per_export(tmp_path: Path) -> None:
    lifecycle = FakeLifecycle(pending=(3.0, 4.0), running=(5.0, 6.0), failure_ratio=0.0)
    fake = FakeDocument360(lifecycle=lifecycle, rate_limit=FakeRateLimit(limit=6000, window=60))
    with redis_server() as redis_url:
        async with fake:
            env = {
                "D360_API_TOKEN": fake.api_token,
                "D360_PROJECT_ID": fake.project_id,
                "D360_BASE_URL": fake.url,
                "D360_REDIS_URL": redis_url,
            }
            async with uvicorn_workers(env) as url, chromium(tmp_path) as first_tab:
                devtools = first_tab.devtools
                ids = fake.seed(TargetKind.V3_EXPORT, EXPORTS)
                follow = url + "/?" + "&".join(f"ids={i}" for i in ids)
                a, _, worker_a = await open_page(devtools, follow)
                for _ in range(30):
                    b, context_b, worker_b = await open_page(devtools, follow)
                    if worker_b != worker_a:
                        break
                    # Same worker: a fresh context opens a fresh connection, maybe elsewhere.
                    await devtools.send(
                        "Target.disposeBrowserContext", {"browserContextId": context_b}
                    )
                assert worker_b != worker_a, "every stream went to one worker"
                statuses = [await completed(a), await completed(b)]
                shown = [
                    await p.evaluate(
                        "[...document.querySelectorAll('#exports tr')].map((tr) => tr.dataset.id)"
                    )
                    for p in (a, b)
                ]
                assert a.problems() == []
                assert b.problems() == []
            ops = {op.id: op for op in fake.operations(TargetKind.V3_EXPORT)}
    assert statuses == [["Completed"] * EXPORTS] * 2
    assert shown == [ids, ids]
    for export_id in ids:
        op = ops[export_id]
        assert op.first_terminal_served_at is not None
        gaps = [b - a for a, b in zip(op.poll_times, op.poll_times[1:], strict=False)]
        # One stream of polls: the default policy's interval, less its 10 % jitter.
        assert min(gaps) >= 0.85 * INTERVAL, (export_id, op.poll_times)
        lifetime = op.finished_at - op.started_at
        assert op.polls <= lifetime / (0.9 * INTERVAL) + 3, (export_id, op.polls, lifetime)
    assert fake.stats.rate_limited == 0
