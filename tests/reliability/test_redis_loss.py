"""Losing Redis mid-watch: the shared limiter falls back to local limiting and comes back.

A real ``redis-server`` backs a :class:`~d360_async.RedisRateLimiter`; a client using it
watches sixty exports on FakeDocument360 under the fake's rate limit (which binds: the watch
would poll twice as fast).  Part-way, Redis is stopped; 0.6 s later it is started again (empty:
no persistence).  Meanwhile:

* requests keep flowing, paced by the limiter's local fallback (one WARNING, not one per
  request), with no 429 storm;
* once Redis answers again the limiter says so (one INFO) and its buckets live in Redis again;
* every operation still ends at its true terminal status.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from d360_async import Client, Phase, PollPolicy, RateLimitConfig, RedisRateLimiter
from d360_async.testing import FakeDocument360, FakeLifecycle, FakeRateLimit

pytestmark = pytest.mark.redis

LIMIT, WINDOW = 300, 2.0
LIFECYCLE = FakeLifecycle(pending=(0.1, 0.3), running=(0.3, 0.8), failure_ratio=0.2)
OUTAGE = 0.4  # from 0.25 s in: every export is still pending or running when Redis goes


def _limiter(url: str) -> RedisRateLimiter:
    return RedisRateLimiter(
        url,
        config=RateLimitConfig(rate=LIMIT, period=WINDOW),
        prefix="reliability",
        probe_interval=0.2,
        operation_timeout=0.25,
    )


async def test_redis_outage_mid_watch(redis_process: Any, caplog: pytest.LogCaptureFixture) -> None:
    # Two clients, as two processes would, share one budget (one token, one project) through
    # Redis; each watches half of the exports.  When Redis goes, each limits on its own.
    caplog.set_level(logging.DEBUG, logger="d360_async.ratelimit")
    limiters = [_limiter(redis_process.url), _limiter(redis_process.url)]
    degraded_seen: list[float] = []
    finals: dict[str, Any] = {}
    async with FakeDocument360(
        rate_limit=FakeRateLimit(limit=LIMIT, window=WINDOW), lifecycle=LIFECYCLE
    ) as fake:
        ids = fake.seed("v3.export", 60)
        clients = [
            Client(api_token=fake.api_token, base_url=fake.url, rate_limiter=limiter)
            for limiter in limiters
        ]

        async def outage() -> int:
            await asyncio.sleep(0.25)
            before = fake.stats.requests
            await asyncio.to_thread(redis_process.stop)
            await asyncio.sleep(OUTAGE)
            during = fake.stats.requests - before
            await asyncio.to_thread(redis_process.start)
            return during

        async def watch_degradation() -> None:
            while True:
                if any(limiter.degraded for limiter in limiters):
                    degraded_seen.append(asyncio.get_running_loop().time())
                await asyncio.sleep(0.02)

        async def follow(client: Client, share: list[str]) -> None:
            targets = [client.exports.target(fake.project_id, export_id) for export_id in share]
            policy = PollPolicy(interval=0.2, max_interval=1.0, watch_timeout=60.0)
            async with client.watch(targets, policy=policy, max_concurrency=16) as watch:
                async for transition in watch:
                    if transition.final:
                        finals[transition.key] = transition

        probe_task = asyncio.create_task(watch_degradation())
        try:
            during, *_ = await asyncio.gather(
                outage(), follow(clients[0], ids[::2]), follow(clients[1], ids[1::2])
            )
            # Let a probe find Redis again, then show that the budget lives there again.
            for _ in range(100):
                if not any(limiter.degraded for limiter in limiters):
                    break
                await asyncio.sleep(0.05)
            assert not any(limiter.degraded for limiter in limiters), "never back to Redis"
            await clients[0].exports.get(fake.project_id, ids[0])
            rate_key = clients[0].exports.target(fake.project_id, ids[0]).rate_key
            async with redis_asyncio.Redis.from_url(redis_process.url) as check:
                stored = await check.exists(*limiters[0].redis_keys(rate_key))
        finally:
            probe_task.cancel()
            await asyncio.gather(probe_task, return_exceptions=True)
            for client in clients:
                await client.aclose()
            for limiter in limiters:
                await limiter.aclose()
        stats = fake.stats

    assert degraded_seen, "the outage was noticed"
    assert during > 0, "requests kept flowing while Redis was down"
    assert stored >= 1, "after the outage the bucket is kept in Redis again"
    messages = [r.getMessage() for r in caplog.records if r.name == "d360_async.ratelimit"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(limiters), messages  # one per limiter, not one per request
    assert all("unreachable" in r.getMessage() for r in warnings)
    back = [m for m in messages if "shared again" in m]
    assert len(back) == len(limiters), messages
    assert stats.rate_limited <= 5, f"{stats.rate_limited} 429s: a storm"
    assert len(finals) == len(ids)
    for transition in finals.values():
        truth = fake.operation(str(transition.snapshot.id))
        expected = Phase.SUCCEEDED if truth.outcome == "succeeded" else Phase.FAILED
        assert transition.phase is expected
    print(
        f"\nredis loss: {stats.requests} requests, {during} during the {OUTAGE:g} s outage, "
        f"{stats.rate_limited} 429s, degraded for ~{len(degraded_seen) * 0.02:.1f} s"
    )
