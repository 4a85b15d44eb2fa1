"""Fixtures of the FastAPI tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import ModuleType

import pytest

from d360_async.testing import FakeDocument360, FakeRateLimit

from .support import BUDGET, QUICK, load_example


@pytest.fixture(scope="session")
def example() -> ModuleType:
    return load_example()


@pytest.fixture
async def fake() -> AsyncIterator[FakeDocument360]:
    async with FakeDocument360(
        lifecycle=QUICK, rate_limit=FakeRateLimit(limit=BUDGET, window=60.0)
    ) as server:
        yield server
