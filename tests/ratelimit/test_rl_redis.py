"""The Redis limiter against a real redis-server (started by the fixture in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
import redis
import redis.asyncio

from d360_async._limiters import (
    Priority,
    RateLimitConfig,
    RateLimiter,
    RateLimitKey,
    RateLimitState,
    RedisRateLimiter,
    RedisTicket,
    Ticket,
    TokenBucket,
)
from d360_async._limiters._redis import SCRIPT, _token_bucket, parse_reply, script_args

if TYPE_CHECKING:
    from conftest import RedisServer

KEY = RateLimitKey("apihub.document360.io", "fp-9f8e7d", "project-1")
FAST = RateLimitConfig(rate=200, period=1.0, burst=10, wait_margin=0.0)


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    connection = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        yield connection
    finally:
        await connection.aclose()


def limiter_for(
    client: redis.asyncio.Redis, prefix: str, config: RateLimitConfig = FAST, **kwargs: float
) -> RedisRateLimiter:
    return RedisRateLimiter(client, config=config, prefix=prefix, **kwargs)


# -- the script is the bucket ---------------------------------------------------------------


class Parity:
    """One key driven through the script (explicit times) and a TokenBucket side by side."""

    def __init__(self, sync: redis.Redis, config: RateLimitConfig, name: str) -> None:
        self.sync = sync
        self.config = config
        self.keys = [f"{name}:bucket", f"{name}:inflight"]
        self.now = 1000.0
        self.bucket = _token_bucket(config, self.now)
        self.call("peek")  # both start full at the same time

    def call(
        self,
        op: str,
        *,
        member: str = "",
        status: int | None = None,
        state: RateLimitState | None = None,
        admitted_at: float | None = None,
        backlog_since: float | None = None,
    ) -> float:
        args = script_args(
            op,
            self.config,
            key_ttl=60,
            in_flight_timeout=600,
            member=member,
            status=status,
            state=state,
            admitted_at=admitted_at,
            backlog_since=backlog_since,
            now=self.now,
        )
        reply = parse_reply(self.sync.eval(SCRIPT, 2, *self.keys, *args))  # type: ignore[arg-type]
        _assert_same(reply.snapshot, self.bucket)
        return reply.result


def _random_state(rng: random.Random, *, long_resets: bool) -> RateLimitState | None:
    """Random headers; ``long_resets`` adds resets longer than the period, which refute it."""
    return rng.choice(
        [
            None,
            RateLimitState(remaining=rng.randint(0, 20)),
            RateLimitState(limit=20, remaining=rng.randint(0, 20), reset_after=rng.uniform(0, 2)),
            RateLimitState(
                remaining=rng.randint(0, 20),
                reset_after=rng.uniform(0, 2),
                reset_is_epoch=rng.random() < 0.5,
            ),
            RateLimitState(limit=rng.choice([20, 30]), remaining=rng.randint(0, 30)),
            RateLimitState(
                remaining=rng.randint(0, 20), reset_after=rng.uniform(0, 6 if long_resets else 2)
            ),
            RateLimitState(retry_after=rng.uniform(0, 3)),
            RateLimitState(retry_after=rng.uniform(0, 3), retry_is_date=True),
        ]
    )


def test_script_and_python_bucket_agree(redis_server: RedisServer, prefix: str) -> None:
    """Random operations with explicit times: Redis and TokenBucket end in the same state."""
    rng = random.Random(20240601)
    sync = redis.Redis.from_url(redis_server.url)
    try:
        for run in range(40):
            # Half the runs with an explicit margin, half with the default (epoch) one.
            config = RateLimitConfig(
                rate=20, period=2.0, burst=3, wait_margin=0.05 if run % 2 else None
            )
            twin = Parity(sync, config, f"{prefix}:{run}")
            bucket = twin.bucket
            members: set[str] = set()
            for serial in range(40):
                twin.now += rng.choice([0.0, 0.01, 0.1, 0.5, 1.5])
                now = twin.now
                op = rng.choice(["acquire", "acquire", "complete", "complete", "refund", "peek"])
                if op == "acquire":
                    member = f"m{serial}"
                    since = rng.choice([None, now - rng.uniform(0, 3)])
                    if since is not None:
                        bucket.advance(min(since, now))
                        bucket.advance(now, backlogged=True)
                    wait = bucket.try_take(now)
                    if wait == 0.0:
                        members.add(member)
                    got = twin.call("acquire", member=member, backlog_since=since)
                    assert got == pytest.approx(wait, abs=1e-9)
                elif op == "complete" and members:
                    member = rng.choice(sorted(members))
                    members.discard(member)
                    status = rng.choice([200, 200, 429, 503, None])
                    state = _random_state(rng, long_resets=run % 4 == 0)
                    admitted = now - rng.uniform(0, 0.5)
                    bucket.record(
                        status, state, in_flight=len(members), now=now, admitted_at=admitted
                    )
                    twin.call(
                        "complete", member=member, status=status, state=state, admitted_at=admitted
                    )
                elif op == "refund" and members:
                    member = members.pop()
                    bucket.refund(now)
                    twin.call("refund", member=member)
                else:
                    bucket.advance(now)
                    twin.call("peek")
    finally:
        sync.close()


def _assert_same(remote: object, bucket: TokenBucket) -> None:
    local = bucket.snapshot()
    for field in (
        "tokens",
        "updated",
        "paused_until",
        "reset_at",
        "spread_rate",
        "remaining",
        "factor",
        "throttled_at",
        "calibrated_at",
        "anchor",
    ):
        expected = getattr(local, field)
        got = getattr(remote, field)
        if expected is None:
            assert got is None, field
        else:
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-9), field
    assert remote.learned_limit == local.learned_limit  # type: ignore[attr-defined]
    assert remote.consecutive == local.consecutive  # type: ignore[attr-defined]
    assert remote.period_refuted == local.period_refuted  # type: ignore[attr-defined]


# -- sharing --------------------------------------------------------------------------------


async def test_it_is_a_rate_limiter(client: redis.asyncio.Redis, prefix: str) -> None:
    limiter = limiter_for(client, prefix)
    assert isinstance(limiter, RateLimiter)
    await limiter.aclose()


async def test_two_limiters_share_one_budget_atomically(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    first, second = limiter_for(client, prefix), limiter_for(client, prefix)
    started = time.monotonic()
    tickets = await asyncio.gather(
        *(limiter.acquire(KEY) for limiter in (first, second) for _ in range(10))
    )
    elapsed = time.monotonic() - started
    # One bucket of 10 for both: the other 10 wait for refills at 181/s (about 55 ms).
    immediate = [t for t in tickets if t.admitted_at - started < 0.004]
    assert len(immediate) <= 10
    assert elapsed >= 9 / 181
    assert all(isinstance(t, RedisTicket) for t in tickets)
    assert len({t.member for t in tickets if isinstance(t, RedisTicket)}) == 20
    in_flight_key = first.redis_keys(KEY)[1]
    assert await client.zcard(in_flight_key) == 20
    for index, ticket in enumerate(tickets):
        owner = first if index < 10 else second
        await owner.complete(ticket, status=200, state=None)
    assert await client.zcard(in_flight_key) == 0
    assert sum(s.requests for s in first.stats() + second.stats()) == 20
    await first.aclose()
    await second.aclose()


async def test_a_429_pauses_every_process(client: redis.asyncio.Redis, prefix: str) -> None:
    first, second = limiter_for(client, prefix), limiter_for(client, prefix)
    ticket = await first.acquire(KEY)
    await first.complete(ticket, status=429, state=RateLimitState(retry_after=0.08))
    started = time.monotonic()
    other = await second.acquire(KEY)
    assert time.monotonic() - started >= 0.07
    assert other.waited >= 0.07
    assert first.stats()[0].throttled == 1
    await second.complete(other, status=200, state=None)
    await first.aclose()
    await second.aclose()


async def test_calibration_is_shared(client: redis.asyncio.Redis, prefix: str) -> None:
    first, second = limiter_for(client, prefix), limiter_for(client, prefix)
    ticket = await first.acquire(KEY)
    await first.complete(
        ticket, status=200, state=RateLimitState(limit=500, remaining=0, reset_after=0.06)
    )
    started = time.monotonic()
    other = await second.acquire(KEY)
    assert time.monotonic() - started >= 0.05
    (stats,) = second.stats()
    assert stats.limit == 500
    assert stats.budget == pytest.approx((500 - 9) / 1.0)
    await second.complete(other, status=200, state=None)
    await first.aclose()
    await second.aclose()


async def test_keys_expire_and_hold_no_token(client: redis.asyncio.Redis, prefix: str) -> None:
    limiter = limiter_for(client, prefix, key_ttl=30.0, in_flight_timeout=20.0)
    ticket = await limiter.acquire(KEY)
    bucket_key, flight_key = limiter.redis_keys(KEY)
    assert bucket_key == f"{prefix}:{{{KEY}}}:bucket"
    assert 0 < await client.pttl(bucket_key) <= 30_000
    assert 0 < await client.pttl(flight_key) <= 30_000
    await limiter.complete(ticket, status=429, state=RateLimitState(retry_after=100.0))
    assert 99_000 < await client.pttl(bucket_key) <= 101_000  # kept while the pause lasts
    names = {name.decode() async for name in client.scan_iter(match=f"{prefix}:*")}
    assert bucket_key in names
    assert names <= {bucket_key, flight_key}
    assert all("fp-9f8e7d" in name for name in names)
    await limiter.aclose()


async def test_priority_is_honoured_locally(client: redis.asyncio.Redis, prefix: str) -> None:
    limiter = limiter_for(client, prefix, config=RateLimitConfig(rate=40, period=1.0))
    held = await limiter.acquire(KEY)
    order: list[str] = []

    async def take(name: str, priority: Priority) -> None:
        ticket = await limiter.acquire(KEY, priority=priority)
        order.append(name)
        await limiter.complete(ticket, status=200, state=None)

    poll = asyncio.create_task(take("poll", Priority.POLL))
    await asyncio.sleep(0)
    direct = asyncio.create_task(take("direct", Priority.DIRECT))
    await asyncio.gather(poll, direct)
    assert order == ["direct", "poll"]
    assert limiter.budget(KEY) == pytest.approx(38.8)  # 40 per second less the 3 % margin
    await limiter.complete(held, status=200, state=None)
    await limiter.aclose()


async def test_cancelled_waiters_leave_the_queue_consistent(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    limiter = limiter_for(client, prefix, config=RateLimitConfig(rate=60, period=1.0))
    held = await limiter.acquire(KEY)
    waiters = [asyncio.create_task(limiter.acquire(KEY)) for _ in range(3)]
    await asyncio.sleep(0)
    waiters[0].cancel()
    waiters[1].cancel()
    ticket = await waiters[2]
    assert waiters[0].cancelled()
    assert waiters[1].cancelled()
    assert not limiter.has_capacity(KEY)
    assert limiter.next_available(KEY) > 0
    for done in (held, ticket):
        await limiter.complete(done, status=200, state=None)
    (stats,) = limiter.stats()
    assert (stats.requests, stats.in_flight, stats.queued) == (2, 0, 0)
    await limiter.aclose()


async def test_complete_exactly_once(client: redis.asyncio.Redis, prefix: str) -> None:
    limiter = limiter_for(client, prefix)
    ticket = await limiter.acquire(KEY)
    await limiter.complete(ticket, status=200, state=None)
    with pytest.raises(RuntimeError, match="twice"):
        await limiter.complete(ticket, status=200, state=None)
    with pytest.raises(ValueError, match="not issued"):
        await limiter.complete(Ticket(KEY, 0.0), status=200, state=None)
    await limiter.aclose()


async def test_decoded_responses_client(redis_server: RedisServer, prefix: str) -> None:
    connection = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    limiter = limiter_for(connection, prefix)
    ticket = await limiter.acquire(KEY)
    await limiter.complete(ticket, status=200, state=RateLimitState(remaining=7))
    assert limiter.stats()[0].remaining == 7
    await limiter.aclose()
    assert await connection.ping()  # borrowed: still open
    await connection.aclose()


async def test_owned_client_from_url(redis_server: RedisServer, prefix: str) -> None:
    limiter = RedisRateLimiter.from_url(redis_server.url, config=FAST, prefix=prefix)
    assert "127.0.0.1" in repr(limiter)
    ticket = await limiter.acquire(KEY)
    await limiter.complete(ticket, status=200, state=None)
    await limiter.aclose()
    await limiter.aclose()
    assert "closed" in repr(limiter)
    with pytest.raises(RuntimeError, match="closed"):
        await limiter.acquire(KEY)


# -- losing Redis ---------------------------------------------------------------------------


async def test_falls_back_once_and_returns(
    private_redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = private_redis_server
    limiter = RedisRateLimiter(
        server.url,
        config=FAST,
        prefix=prefix,
        probe_interval=0.05,
        operation_timeout=0.5,
    )
    caplog.set_level(logging.INFO, logger="d360_async.ratelimit")
    before = await limiter.acquire(KEY)
    assert isinstance(before, RedisTicket)

    server.stop()
    during = [await limiter.acquire(KEY) for _ in range(5)]
    assert limiter.degraded
    assert not any(isinstance(t, RedisTicket) for t in during)
    await limiter.complete(before, status=200, state=RateLimitState(remaining=50))  # no raise
    for ticket in during:
        await limiter.complete(ticket, status=200, state=None)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unreachable" in warnings[0].getMessage()
    assert "degraded" in repr(limiter)
    assert sum(s.requests for s in limiter.stats()) == 6

    server.start()
    deadline = time.monotonic() + 5.0
    while limiter.degraded and time.monotonic() < deadline:
        ticket = await limiter.acquire(KEY)
        await limiter.complete(ticket, status=200, state=None)
        await asyncio.sleep(0.01)
    assert not limiter.degraded
    after = await limiter.acquire(KEY)
    assert isinstance(after, RedisTicket)
    await limiter.complete(after, status=200, state=None)
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1
    assert "again" in infos[0].getMessage()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    await limiter.aclose()


async def test_queued_waiters_move_to_the_fallback(
    private_redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RedisRateLimiter(
        private_redis_server.url,
        config=RateLimitConfig(rate=40, period=1.0),
        prefix=prefix,
        operation_timeout=0.5,
    )
    held = await limiter.acquire(KEY)
    waiters = [asyncio.create_task(limiter.acquire(KEY)) for _ in range(3)]
    await asyncio.sleep(0.005)
    private_redis_server.stop()
    tickets = await asyncio.wait_for(asyncio.gather(*waiters), timeout=2.0)
    assert len(tickets) == 3
    assert limiter.degraded
    # The local limiter continued from what Redis last said: still paced at 38.8/s.
    times = sorted(t.admitted_at for t in tickets)
    assert times[-1] - times[0] >= 1.5 / 38
    for ticket in [held, *tickets]:
        await limiter.complete(ticket, status=200, state=None)
    await limiter.aclose()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


async def test_unreachable_from_the_start(prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    with refusing_port() as port:
        limiter = RedisRateLimiter(
            f"redis://127.0.0.1:{port}/0", config=FAST, prefix=prefix, operation_timeout=0.5
        )
        ticket = await limiter.acquire(KEY)
        await limiter.complete(ticket, status=429, state=RateLimitState(retry_after=0.01))
        assert limiter.degraded
        assert limiter.stats()[0].throttled == 1
        assert limiter.next_available(KEY) > 0
        await limiter.aclose()
    assert "unreachable" in caplog.text


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A local port that refuses connections while the block runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port
