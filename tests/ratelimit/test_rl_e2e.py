"""200 callers through a real client against FakeDocument360's tight window (20 per 2 s).

Issue 4's end-to-end check: over real sockets and the whole client (transport, limiter,
retries), the fake server must see no 429 once the limiter has had an answer, whatever shape
the rate-limit headers take (a reset sent as an epoch or a delay; ``Limit`` and ``Reset``
always or only once the budget is spent), and none either when the server sends no headers
and the limit is configured. Every caller must be served.

Each case spans about 20 s (200 requests at 10 per second) on a
[ManualClock][d360_async.testing.ManualClock] shared by the server and the client (its limiter,
its retries, the server's latency): it runs in well under a second of real time. One smaller
case runs on the real clock, so the real timers and sockets are covered too.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import attrs

from d360_async import Client, Clock, RateLimitConfig, RateLimited, RetryPolicy, SystemClock
from d360_async.testing import FakeDocument360, FakeRateLimit, ManualClock

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


async def run_case(
    name: str,
    rate_limit: FakeRateLimit,
    clock: Clock,
    callers: int = CALLERS,
    *,
    limit: int = LIMIT,
    window: float = WINDOW,
) -> Outcome:
    """``callers`` concurrent ``client.exports.get`` calls through one client, server and
    client on ``clock``."""
    async with FakeDocument360(
        api_token=TOKEN, rate_limit=rate_limit, latency=(0.002, 0.01), clock=clock
    ) as fake:
        ids = fake.seed("v3.export", 10, pending=0.0, running=1e6)
        config = RateLimitConfig(rate=limit, period=window)
        async with Client(
            api_token=TOKEN, base_url=fake.url, rate_limit=config, clock=clock
        ) as client:
            started = clock.monotonic()
            results = await asyncio.gather(
                *(client.exports.get(fake.project_id, ids[i % len(ids)]) for i in range(callers))
            )
            elapsed = clock.monotonic() - started
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


async def test_no_429_with_every_shape_of_headers() -> None:
    shapes = [
        ("epoch-always", _headers_sent("epoch", "always")),
        ("delay-always", _headers_sent("delay", "always")),
        ("epoch-when-exhausted", _headers_sent("epoch", "when_exhausted")),
        ("delay-when-exhausted", _headers_sent("delay", "when_exhausted")),
    ]
    clock = ManualClock()
    outcomes = await clock.run(
        asyncio.gather(*(run_case(name, limit, clock) for name, limit in shapes))
    )
    for outcome in outcomes:
        assert outcome.served == CALLERS, outcome
        # The limiter admits one request before any answer (a burst of 1), so a 429 could
        # only follow an answer: there must be none at all.
        assert outcome.rate_limited == 0, outcome
        assert outcome.throttled_seen == 0, outcome
        assert outcome.requests == CALLERS, outcome
        assert outcome.elapsed < SLOWEST, outcome  # and most of the budget was used


async def test_no_429_without_headers_when_the_limit_is_configured() -> None:
    clock = ManualClock()
    outcome = await clock.run(
        run_case("headers-off", FakeRateLimit(limit=LIMIT, window=WINDOW, headers=False), clock)
    )
    assert outcome.served == CALLERS, outcome
    assert outcome.rate_limited == 0, outcome
    assert outcome.requests == CALLERS, outcome
    assert outcome.elapsed < SLOWEST, outcome  # 5 % of the budget is kept back when blind


async def test_no_429_on_the_real_clock() -> None:
    """The same pipeline on real timers and sockets: 30 callers at 20 per second (1.5 s)."""
    callers, limit, window = 30, 20, 1.0
    outcome = await run_case(
        "real-clock",
        FakeRateLimit(limit=limit, window=window, reset_format="delay"),
        SystemClock(),
        callers,
        limit=limit,
        window=window,
    )
    assert outcome.served == callers, outcome
    assert outcome.rate_limited == 0, outcome
    assert outcome.requests == callers, outcome
    assert outcome.elapsed < 1.3 * callers / limit * window, outcome


async def test_a_long_queue_behind_a_learning_pace_is_served_not_refused() -> None:
    """40 callers at once on a default client (the prior is 60 per minute) against 100 per
    10 s that says only `Remaining`, with a retry cap of half a second: the queue ahead is
    long and the pace is still learning, but nothing the server said holds the budget back,
    so every caller waits its turn. (The refusal read the queue: callers were told "exhausted
    for 20 s" while the budget came back within seconds.)"""
    clock = ManualClock()
    async with FakeDocument360(
        api_token=TOKEN,
        rate_limit=FakeRateLimit(limit=100, window=10.0, dialect="remaining_only"),
        latency=(0.002, 0.01),
        clock=clock,
    ) as fake:
        ids = fake.seed("v3.export", 10, pending=0.0, running=1e6)
        async with Client(
            api_token=TOKEN,
            base_url=fake.url,
            clock=clock,
            retry=RetryPolicy(max_retry_after=0.5),
        ) as client:
            results = await clock.run(
                asyncio.gather(
                    *(client.exports.get(fake.project_id, ids[i % len(ids)]) for i in range(40)),
                    return_exceptions=True,
                )
            )
        refused = [r for r in results if isinstance(r, RateLimited)]
        assert not refused, refused[:1]
        assert all(not isinstance(r, BaseException) for r in results)
        assert fake.stats.rate_limited == 0


async def test_a_budget_the_server_paused_past_the_cap_is_refused_at_once() -> None:
    """The other side of the same rule: 1 per 10 minutes, spent by the first call, its reset
    announced: the next call is refused locally (never sent), naming when the budget is
    back, instead of hanging for ten minutes."""
    clock = ManualClock()
    async with FakeDocument360(
        api_token=TOKEN,
        rate_limit=FakeRateLimit(limit=1, window=600.0, reset_format="delay"),
        clock=clock,
    ) as fake:
        (export_id,) = fake.seed("v3.export", 1, pending=0.0, running=1e6)
        async with Client(
            api_token=TOKEN, base_url=fake.url, clock=clock, retry=RetryPolicy(max_retry_after=60)
        ) as client:

            async def calls() -> RateLimited:
                await client.exports.get(fake.project_id, export_id)
                try:
                    await client.exports.get(fake.project_id, export_id)
                except RateLimited as exc:
                    return exc
                raise AssertionError("the second call was not refused")

            refused = await clock.run(calls())
        assert fake.stats.requests == 1  # refused locally
        assert refused.retry_at is not None
        assert refused.retry_at - clock.time() > 500.0


async def test_a_watch_is_not_held_at_the_priors_pace_once_the_server_shows_more() -> None:
    """A default client (the prior is 60 a minute, one request a second) watching three
    finished exports on a server that announces 3,000 a minute: the first answer shows the
    budget, and the other two are polled at once, not a second later (the watch waited out
    the prior's pace before it asked the limiter, which the first answer could not shorten)."""
    clock = ManualClock()
    async with FakeDocument360(
        api_token=TOKEN,
        rate_limit=FakeRateLimit(limit=3000, window=60.0),
        latency=(0.002, 0.01),
        clock=clock,
    ) as fake:
        ids = fake.seed("v3.export", 3, pending=0.0, running=0.0)
        async with Client(api_token=TOKEN, base_url=fake.url, clock=clock) as client:
            targets = [client.exports.target(fake.project_id, i) for i in ids]

            async def run() -> list[float]:
                seen: list[float] = []
                async with client.watch(targets) as w:
                    async for transition in w:
                        if transition.final:
                            seen.append(clock.monotonic())
                return seen

            start = clock.monotonic()
            finals = await clock.run(run())
        assert len(finals) == 3
        assert max(finals) - start < 0.5
