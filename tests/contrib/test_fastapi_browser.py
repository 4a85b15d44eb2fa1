"""The example service's page in headless Chromium, against uvicorn and ``FakeDocument360``.

The browser is driven through the DevTools protocol over a websocket (aiohttp's client, so no
extra dependency): it loads the page, starts exports the way a person would (fill in the
workspaces, click the button), and the test reads the page until every export shows
"Completed". The page's own ``EventSource`` does the rest, so this checks the whole chain:
HTML, JavaScript, ``POST /exports``, the server-sent events, the watch and the client.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest

from d360_async.testing import FakeDocument360

from .support import example_app, serve

CHROMIUM = (
    os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="headless Chromium is not installed (Debian: apt-get install chromium; "
        ".ci/run installs it)",
    ),
]

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",  # Chromium picks a free port and writes it down
)
STARTUP_LIMIT = 30.0  # seconds for Chromium to open its DevTools port
PAGE_LIMIT = 30.0  # seconds for the page to show every export finished


class DevTools:
    """A minimal DevTools protocol client: commands by id, events kept for inspection."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            future = self._pending.pop(data.get("id", -1), None)
            if future is None:
                self.events.append(data)
            elif "error" in data:
                future.set_exception(RuntimeError(f"DevTools error: {data['error']}"))
            else:
                future.set_result(data.get("result", {}))
        for future in self._pending.values():
            future.set_exception(ConnectionError("the DevTools connection closed"))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"id": next(self._ids), "method": method}
        message["params"] = params or {}
        if session is not None:
            message["sessionId"] = session
        future = asyncio.get_running_loop().create_future()
        self._pending[message["id"]] = future
        await self._ws.send_str(json.dumps(message))
        return await asyncio.wait_for(future, 10)

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


class Page:
    """One browser tab, attached through a flat DevTools session."""

    def __init__(self, devtools: DevTools, session: str) -> None:
        self.devtools = devtools
        self.session = session

    async def evaluate(self, expression: str) -> Any:
        result = await self.devtools.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self.session,
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, limit: float) -> Any:
        """Evaluate ``expression`` every 50 ms until it is truthy; return its value."""
        deadline = time.monotonic() + limit
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never satisfied {expression!r}")
            await asyncio.sleep(0.05)

    def problems(self) -> list[str]:
        """Uncaught exceptions and console errors the page reported."""
        found = []
        for event in self.devtools.events:
            if event.get("sessionId") != self.session:
                continue
            if event["method"] == "Runtime.exceptionThrown":
                found.append(json.dumps(event["params"]["exceptionDetails"])[:500])
            elif (
                event["method"] == "Runtime.consoleAPICalled" and event["params"]["type"] == "error"
            ):
                found.append(json.dumps(event["params"]["args"])[:500])
        return found


async def devtools_port(profile: Path, process: asyncio.subprocess.Process) -> str:
    """Wait for Chromium to write ``DevToolsActivePort``; return the browser's websocket path."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + STARTUP_LIMIT
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"chromium exited with status {process.returncode}")
        if marker.exists():
            lines = marker.read_text().split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        await asyncio.sleep(0.05)
    raise RuntimeError("chromium did not open its DevTools port")


@asynccontextmanager
async def chromium(tmp_path: Path) -> AsyncIterator[Page]:
    """A headless Chromium with one blank tab, closed (and waited for) on the way out."""
    assert CHROMIUM is not None
    profile = tmp_path / "profile"
    log = (tmp_path / "chromium.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        url = await devtools_port(profile, process)
        async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
            devtools = DevTools(ws)
            try:
                created = await devtools.send("Target.createTarget", {"url": "about:blank"})
                attached = await devtools.send(
                    "Target.attachToTarget", {"targetId": created["targetId"], "flatten": True}
                )
                page = Page(devtools, attached["sessionId"])
                await devtools.send("Runtime.enable", session=page.session)
                await devtools.send("Page.enable", session=page.session)
                yield page
                await devtools.send("Browser.close")
            finally:
                await devtools.close()
    finally:
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        finally:
            log.close()


async def test_the_page_shows_every_export_completed(
    example: ModuleType, fake: FakeDocument360, tmp_path: Path
) -> None:
    workspaces = ["ws-handbook", "ws-api", "ws-release-notes"]
    async with serve(example_app(example, fake)) as url, chromium(tmp_path) as page:
        await page.devtools.send("Page.navigate", {"url": f"{url}/"}, session=page.session)
        await page.wait_for(
            "document.readyState === 'complete' && !!document.getElementById('go')", limit=10
        )
        await page.evaluate(
            f"document.getElementById('workspaces').value = {json.dumps(', '.join(workspaces))};"
            "document.getElementById('go').click(); true"
        )
        statuses = await page.wait_for(
            f"""(() => {{
                const cells = [...document.querySelectorAll('#exports td.status')];
                const text = cells.map((td) => td.textContent);
                const done = cells.length === {len(workspaces)}
                    && text.every((t) => t === 'Completed')
                    && document.getElementById('summary').textContent.includes('finished');
                return done && text;
            }})()""",
            limit=PAGE_LIMIT,
        )
        shown_ids = await page.evaluate(
            "[...document.querySelectorAll('#exports tr')].map((tr) => tr.dataset.id)"
        )
        assert page.problems() == []

    assert statuses == ["Completed"] * len(workspaces)
    exports = fake.operations("v3.export")
    assert sorted(shown_ids) == sorted(op.id for op in exports)
    assert all(op.first_terminal_served_at is not None for op in exports)
    assert fake.stats.rate_limited == 0
