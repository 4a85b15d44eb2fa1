"""The Redis limiter against a real redis-server (started by the fixture in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
)
from d360_async._limiters._redis import SCRIPT, parse_reply

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


# -- the script is the log ------------------------------------------------------------------


def script_call(
    sync: redis.Redis, keys: list[str], asked_from: int, event: str, epoch: str = ""
) -> list[object]:
    reply = sync.eval(SCRIPT, 2, *keys, str(asked_from), event, "3", "60000", "fresh", epoch)  # type: ignore[arg-type]
    assert isinstance(reply, list)
    return reply


def test_the_script_appends_stamps_and_reads_in_one_step(
    redis_server: RedisServer, prefix: str
) -> None:
    sync = redis.Redis.from_url(redis_server.url)
    keys = [f"{prefix}:log", f"{prefix}:meta"]
    first = parse_reply(script_call(sync, keys, 0, "A"))
    assert (first.epoch, first.base, first.mine) == ("fresh", 0, 0)
    assert len(first.lines) == 1
    stamp, event = first.lines[0].decode().split(" ", 1)  # type: ignore[union-attr]
    assert (float(stamp), event) == (first.now, "A")
    assert abs(first.now - time.time()) < 5  # Redis TIME, in seconds
    # Reading from where the caller stands returns only what it has not seen.
    second = parse_reply(script_call(sync, keys, 1, "F e:0", epoch="fresh"))
    assert second.mine == 1
    assert [line.decode().split(" ", 1)[1] for line in second.lines] == ["F e:0"]  # type: ignore[union-attr]
    # Trimmed at twice the kept size (3 here): the base moves, indices do not.
    for _ in range(6):
        last = parse_reply(script_call(sync, keys, 0, "A", epoch="fresh"))
    assert last.base == 4  # at 7 lines (more than 2 x 3), cut to the last 3
    assert last.mine == 7
    assert len(last.lines) == 4  # a caller behind the base gets what is left
    # Another epoch than the caller knows (the key expired and came back): read from the start.
    sync.delete(*keys)
    fresh = parse_reply(script_call(sync, keys, 8, "A", epoch="old"))
    assert (fresh.base, fresh.mine, len(fresh.lines)) == (0, 0, 1)
    assert 0 < sync.pttl(keys[0]) <= 60_000
    sync.close()


@pytest.mark.parametrize(
    "raw",
    [None, [], ["e", "0", "1.0", "-1"], ["e", "x", "1.0", "-1", []], ["e", "0", "nan", "-1", []]],
)
def test_a_reply_the_script_never_gives_is_refused(raw: object) -> None:
    with pytest.raises(ValueError, match=r"unexpected|invalid literal"):
        parse_reply(raw)


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
    assert len({t.take for t in tickets if isinstance(t, RedisTicket)}) == 20
    assert sorted(t.seq for t in tickets) == list(range(1, 21))  # one count for both
    for index, ticket in enumerate(tickets):
        owner = first if index < 10 else second
        await owner.complete(ticket, status=200, state=None)
    assert sum(s.requests for s in first.stats() + second.stats()) == 20
    assert sum(s.in_flight for s in first.stats() + second.stats()) == 0
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
    assert stats.budget == pytest.approx(500.0)  # what the server announced, per its window
    await second.complete(other, status=200, state=None)
    await first.aclose()
    await second.aclose()


async def test_keys_expire_and_hold_no_token(client: redis.asyncio.Redis, prefix: str) -> None:
    limiter = limiter_for(client, prefix, key_ttl=30.0, in_flight_timeout=20.0)
    ticket = await limiter.acquire(KEY)
    log_key, meta_key = limiter.redis_keys(KEY)
    assert log_key == f"{prefix}:{{{KEY}}}:log"
    await limiter.complete(ticket, status=429, state=RateLimitState(retry_after=100.0))
    assert 0 < await client.pttl(log_key) <= 30_000
    assert 0 < await client.pttl(meta_key) <= 30_000
    names = {name.decode() async for name in client.scan_iter(match=f"{prefix}:*")}
    assert names == {log_key, meta_key}
    assert all("fp-9f8e7d" in name for name in names)
    lines = [line.decode() for line in await client.lrange(log_key, 0, -1)]
    assert [line.split(" ")[1] for line in lines] == ["A", "R"]
    assert not any("token" in line for line in lines)
    await limiter.aclose()


async def test_a_process_that_joins_later_reads_the_history_and_agrees(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    first = limiter_for(client, prefix)
    for _ in range(5):
        ticket = await first.acquire(KEY)
        await first.complete(ticket, status=200, state=RateLimitState(limit=50, remaining=40))
    late = limiter_for(client, prefix)
    ticket = await late.acquire(KEY)
    assert ticket.seq == 6  # the sixth admission on the key, in both replicas
    (stats,) = late.stats()
    assert stats.limit == 50  # learned from the other process's answers
    await late.complete(ticket, status=200, state=None)
    await first.aclose()
    await late.aclose()


async def test_a_foreign_line_in_the_log_is_skipped(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    limiter = limiter_for(client, prefix)
    ticket = await limiter.acquire(KEY)
    await client.rpush(limiter.redis_keys(KEY)[0], "not an event at all")
    await limiter.complete(ticket, status=200, state=None)
    again = await limiter.acquire(KEY)
    assert again.seq == 2
    assert not limiter.degraded
    await limiter.complete(again, status=200, state=None)
    await limiter.aclose()


async def test_a_dead_process_admission_stops_counting(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    config = RateLimitConfig(rate=1000, period=1.0, burst=10)
    dead = limiter_for(client, prefix, config=config, in_flight_timeout=0.2)
    await dead.acquire(KEY)  # never completed: its process "died"
    alive = limiter_for(client, prefix, config=config, in_flight_timeout=0.2)
    ticket = await alive.acquire(KEY)
    await alive.complete(ticket, status=200, state=RateLimitState(limit=10, remaining=8))
    assert alive._lanes[KEY].replica.unanswered == 1  # the dead one's, still counted
    await asyncio.sleep(0.25)
    ticket = await alive.acquire(KEY)
    assert alive._lanes[KEY].replica.unanswered == 1  # only this one now
    await alive.complete(ticket, status=200, state=None)
    await dead.aclose()
    await alive.aclose()


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
