"""Helpers of the FastAPI tests: the example app, a quick fake, a real uvicorn server."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import uvicorn

from d360_async import PollPolicy
from d360_async.testing import FakeDocument360, FakeLifecycle

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "fastapi_app.py"

# Exports that finish within a few tenths of a second, and a budget that never binds, so the
# tests spend their time on what they check rather than on waiting.
QUICK = FakeLifecycle(pending=(0.02, 0.08), running=(0.05, 0.2))
QUICK_POLICY = PollPolicy(interval=0.05, max_interval=0.2, adaptive=False)
BUDGET = 6000  # requests per minute, on both sides


def load_example() -> ModuleType:
    """Import ``docs/examples/fastapi_app.py`` (not a package) as ``fastapi_app``."""
    name = "fastapi_app"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def example_app(example: ModuleType, fake: FakeDocument360, **options: Any) -> Any:
    """The example service in front of ``fake``."""
    return example.create_app(
        api_token=fake.api_token,
        base_url=fake.url,
        project_id=fake.project_id,
        policy=options.pop("policy", QUICK_POLICY),
        rate_limit=BUDGET,
        **options,
    )


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yield its URL.

    A thread of its own keeps uvicorn's event loop (and the client the app's lifespan opens)
    apart from the test's, as in production, and keeps uvicorn away from signal handlers. The
    test's loop keeps running meanwhile (it may host the fake server the app talks to).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="on",
        http="h11",
        ws="none",  # no websockets import, so none of its deprecation warnings
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    try:
        for _ in range(1000):
            if server.started or not thread.is_alive():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 10)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"
