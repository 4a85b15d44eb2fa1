"""200 callers through a real client against FakeDocument360's tight window (20 per 2 s).

Issue 4's end-to-end check: over real sockets and the whole client (transport, limiter,
retries), the fake server must see no 429 once the limiter has had an answer, whatever shape
the rate-limit headers take (a reset sent as an epoch or a delay; ``Limit`` and ``Reset``
always or only once the budget is spent), and none either when the server sends no headers
and the limit is configured. Every caller must be served.

Each case needs about 20 s of real time (200 requests at 10 per second), so the four header
shapes run at the same time, each against its own server with its own budget.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import attrs
import pytest

from d360_async import Client, RateLimitConfig
from d360_async.testing import FakeDocument360, FakeRateLimit

LIMIT, WINDOW = 20, 2.0
CALLERS = 200
TOKEN = "test-api-token"
FASTEST = CALLERS / LIMIT * WINDOW
"""Seconds the server's budget needs for every caller: ten windows (the last one partly)."""
SLOWEST = 1.3 * FASTEST
"""A generous bound: a limiter that lost a second per window would need 30 s."""


@attrs.frozen
class Outcome:
    name: str
    served: int
    rate_limited: int
    throttled_seen: int
    requests: int
    elapsed: float


async def run_case(name: str, rate_limit: FakeRateLimit, callers: int = CALLERS) -> Outcome:
    """``callers`` concurrent ``client.exports.get`` calls through one client."""
    async with FakeDocument360(
        api_token=TOKEN, rate_limit=rate_limit, latency=(0.002, 0.01)
    ) as fake:
        ids = fake.seed("v3.export", 10, pending=0.0, running=1e6)
        config = RateLimitConfig(rate=LIMIT, period=WINDOW)
        async with Client(api_token=TOKEN, base_url=fake.url, rate_limit=config) as client:
            started = time.monotonic()
            results = await asyncio.gather(
                *(client.exports.get(fake.project_id, ids[i % len(ids)]) for i in range(callers))
            )
            elapsed = time.monotonic() - started
            throttled = sum(stats.throttled for stats in client.rate_limit_stats())
        return Outcome(
            name=name,
            served=sum(1 for export in results if export.id is not None),
            rate_limited=fake.stats.rate_limited,
            throttled_seen=throttled,
            requests=fake.stats.requests,
            elapsed=elapsed,
        )


def _headers_sent(
    reset_format: Literal["epoch", "delay"], send: Literal["always", "when_exhausted"]
) -> FakeRateLimit:
    return FakeRateLimit(
        limit=LIMIT, window=WINDOW, reset_format=reset_format, send_limit_and_reset=send
    )


@pytest.mark.timeout(90)
async def test_no_429_with_every_shape_of_headers() -> None:
    shapes = [
        ("epoch-always", _headers_sent("epoch", "always")),
        ("delay-always", _headers_sent("delay", "always")),
        ("epoch-when-exhausted", _headers_sent("epoch", "when_exhausted")),
        ("delay-when-exhausted", _headers_sent("delay", "when_exhausted")),
    ]
    outcomes = await asyncio.gather(*(run_case(name, limit) for name, limit in shapes))
    for outcome in outcomes:
        assert outcome.served == CALLERS, outcome
        # The limiter admits one request before any answer (a burst of 1), so a 429 could
        # only follow an answer: there must be none at all.
        assert outcome.rate_limited == 0, outcome
        assert outcome.throttled_seen == 0, outcome
        assert outcome.requests == CALLERS, outcome
        assert outcome.elapsed < SLOWEST, outcome  # and most of the budget was used


@pytest.mark.timeout(90)
async def test_no_429_without_headers_when_the_limit_is_configured() -> None:
    outcome = await run_case(
        "headers-off", FakeRateLimit(limit=LIMIT, window=WINDOW, headers=False)
    )
    assert outcome.served == CALLERS, outcome
    assert outcome.rate_limited == 0, outcome
    assert outcome.requests == CALLERS, outcome
    assert outcome.elapsed < SLOWEST, outcome  # 5 % of the budget is kept back when blind
