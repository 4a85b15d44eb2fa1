"""``--redis-url``: the budget shared through a real ``redis-server`` (no fakeredis)."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cli_support import RunCli

from d360_async.testing import FakeDocument360

pytestmark = pytest.mark.redis

QUICK = {"pending": (0.05, 0.2), "running": (0.1, 0.4), "failure_ratio": 0.0}


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def redis_url(tmp_path: Path) -> AsyncIterator[str]:
    """A throwaway ``redis-server`` on 127.0.0.1, stopped after the test."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    import redis.asyncio as redis_asyncio

    port = _unused_port()
    server = await asyncio.create_subprocess_exec(
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(tmp_path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis_asyncio.Redis.from_url(url)
    try:
        for _ in range(500):
            try:
                if await client.ping():
                    break
            except (OSError, redis_asyncio.ConnectionError):
                await asyncio.sleep(0.01)
        else:  # pragma: no cover - a broken machine
            pytest.fail("redis-server did not start")
        yield url
    finally:
        await client.aclose()
        server.terminate()
        await server.wait()


async def test_watch_shares_its_budget_through_redis(
    fake_d360: FakeDocument360, run_cli: RunCli, redis_url: str
) -> None:
    import redis.asyncio as redis_asyncio

    ids = fake_d360.seed("v3.export", 4, **QUICK)
    result = await run_cli(
        "watch", "exports", *ids, "--project", fake_d360.project_id, "--base-url",
        fake_d360.url, "--json", "--redis-url", redis_url, "--rate-limit", "40/s",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert result.lines[-1]["succeeded"] == 4
    assert fake_d360.stats.rate_limited == 0
    client = redis_asyncio.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match="d360-async:ratelimit*")]
    finally:
        await client.aclose()
    assert keys  # the budget really lived in Redis
    assert all(fake_d360.api_token.encode() not in key for key in keys)
    result.assert_no_secret()


async def test_an_invalid_redis_url_is_a_usage_error(run_cli: RunCli) -> None:
    result = await run_cli(
        "status", "v2-deletes", "abc", "--base-url", "http://127.0.0.1:9", "--redis-url", "nope"
    )
    assert result.code == 2
    result.assert_one_error_line("--redis-url")
