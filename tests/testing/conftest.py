"""Shared fixtures for the fake server's tests: a hand-driven clock, the server, a session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from d360_async.testing import FakeDocument360, ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeDocument360]:
    """A fake with the rate limit off, so shape and lifecycle tests are not throttled."""
    async with FakeDocument360(clock=clock, rate_limit=None) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client
