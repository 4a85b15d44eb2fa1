"""The observation hub against a real redis-server and the fake server, in one test process.

Each "process" here is one Client with its own ObservationHub (its own instance id), as a
worker would have; the four-OS-process check with ``kill -9`` is ``test_hub_processes``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import redis.asyncio as redis_asyncio

from d360_async import (
    Client,
    ObservationHub,
    PollPolicy,
    RateLimitConfig,
    TargetKind,
    Transition,
    TransitionKind,
)
from d360_async._core._phase import Phase
from d360_async.testing import FakeDocument360, FakeLifecycle, FakeRateLimit

if TYPE_CHECKING:
    from conftest import RedisServer

pytestmark = pytest.mark.redis

POLICY = PollPolicy(interval=0.3, max_interval=1.0)
# For operations held running until the test finishes them: a finish is seen within 0.2 s.
BRISK = PollPolicy(interval=0.1, max_interval=0.2)
HELD = 1e6  # a running phase that lasts until fake.finish()
BUDGET = RateLimitConfig(rate=5000.0, period=1.0)  # what the fake below announces
ORDER = [Phase.PENDING, Phase.RUNNING]


def _prefix() -> str:
    return f"hub-test-{secrets.token_hex(4)}"


async def eventually(condition: Callable[[], bool], within: float) -> None:
    """Wait until ``condition()`` holds, checking every 20 ms; fail after ``within`` s."""
    for _ in range(int(within / 0.02) + 1):
        if condition():
            return
        await anyio.sleep(0.02)
    raise AssertionError(f"not within {within} s")


def check_story(seq: list[Transition[Any]]) -> None:
    """Every change once, in order, ending terminal."""
    assert all(t.kind is TransitionKind.CHANGED for t in seq), seq
    raws = [t.raw_status for t in seq]
    assert len(raws) == len(set(raws)), f"a change twice: {raws}"
    phases = [t.phase for t in seq]
    assert phases[:-1] == [p for p in ORDER if p in phases[:-1]], phases
    assert phases[-1].is_terminal
    assert seq[-1].final


async def _fake(
    n: int, running: tuple[float, float] = (1.0, 2.0), pending: tuple[float, float] = (0.3, 0.8)
) -> Any:
    lifecycle = FakeLifecycle(pending=pending, running=running, failure_ratio=0.1)
    limit = FakeRateLimit(limit=int(BUDGET.rate), window=BUDGET.period)
    return FakeDocument360(rate_limit=limit, lifecycle=lifecycle)


class Worker:
    """One client + hub, watching the given exports and recording what it got."""

    def __init__(
        self, fake: Any, url: str, prefix: str, policy: PollPolicy = POLICY, **hub_args: Any
    ) -> None:
        self.fake = fake
        self.policy = policy
        self.hub = ObservationHub(url, prefix=prefix, **hub_args)
        # The fake's budget from the start: at the default (60 a minute) the watch waits a
        # second before its second poll, though the first answer announced more.
        self.client = Client(
            api_token=fake.api_token, base_url=fake.url, hub=self.hub, rate_limit=BUDGET
        )
        self.seen: dict[str, list[Transition[Any]]] = {}
        self.stats: Any = None

    async def watch(self, ids: list[str], *, until_done: bool = True) -> None:
        targets = [self.client.exports.target(self.fake.project_id, i) for i in ids]
        async with self.client.watch(targets, policy=self.policy, max_concurrency=32) as w:
            async for t in w:
                self.seen.setdefault(t.key, []).append(t)
            self.stats = w.stats()


async def start(
    stack: AsyncExitStack, fake: Any, url: str, prefix: str, n: int, **hub_args: Any
) -> list[Worker]:
    """``n`` workers, their hubs and clients open on ``stack``."""
    workers = [Worker(fake, url, prefix, **hub_args) for _ in range(n)]
    for w in workers:
        await stack.enter_async_context(w.hub)
        await stack.enter_async_context(w.client)
    return workers


async def test_two_processes_poll_each_export_once(redis_server: RedisServer) -> None:
    async with AsyncExitStack() as stack:
        fake = await stack.enter_async_context(
            await _fake(60, pending=(0.1, 0.3), running=(0.3, 0.7))
        )
        ids = fake.seed(TargetKind.V3_EXPORT, 60)
        prefix = _prefix()
        workers = await start(stack, fake, redis_server.url, prefix, 2)
        async with anyio.create_task_group() as tg:
            for w in workers:
                tg.start_soon(w.watch, ids)
        polls = sum(op.polls for op in fake.operations(TargetKind.V3_EXPORT))
        seen = [w.stats.polls + w.stats.shared for w in workers]
        assert polls <= 1.1 * min(seen), (polls, seen)
        assert sum(w.stats.polls for w in workers) == polls
        for w in workers:
            assert len(w.seen) == 60
            for seq in w.seen.values():
                check_story(seq)
        for key, seq in workers[0].seen.items():
            assert [t.raw_status for t in seq] == [t.raw_status for t in workers[1].seen[key]]
        stats = [w.hub.stats() for w in workers]
        assert sum(s.published for s in stats) > 0
        # What one wrote, the other read (every entry was for an export it watched).
        assert stats[0].received == stats[1].published
        assert stats[1].received == stats[0].published
        assert not any(s.degraded for s in stats)
        for w in workers:
            assert w.hub.stats().topics == 0  # everything left


async def test_keys_expire_and_the_stream_is_trimmed(redis_server: RedisServer) -> None:
    async with AsyncExitStack() as stack:
        fake = await stack.enter_async_context(
            await _fake(150, pending=(0.05, 0.15), running=(0.2, 0.4))
        )
        ids = fake.seed(TargetKind.V3_EXPORT, 150)
        prefix = _prefix()
        # A short lease TTL (3 x the operation timeout), so its expiry is waited for briefly.
        w = Worker(
            fake,
            redis_server.url,
            prefix,
            policy=BRISK,
            stream_maxlen=20,
            key_ttl=30.0,
            lease_ttl=0.75,
            operation_timeout=0.25,
        )
        await stack.enter_async_context(w.hub)
        await stack.enter_async_context(w.client)
        redis = redis_asyncio.Redis.from_url(redis_server.url)
        stack.push_async_callback(redis.aclose)
        async with anyio.create_task_group() as tg:
            tg.start_soon(w.watch, ids)
            # As soon as the first leases are taken (their first renewal is lease_ttl / 3
            # later), and while it runs: every lease carries a TTL no longer than lease_ttl.
            keys = []
            for _ in range(500):
                keys = [k async for k in redis.scan_iter(match=f"{prefix}:lease:*")]
                if keys:
                    break
                await anyio.sleep(0.005)
            assert keys
            for key in keys:
                assert 0 < await redis.pttl(key) <= 750
        published = w.hub.stats().published
        # Approximate trimming keeps whole nodes (100 entries by default) beyond MAXLEN: more
        # were published than that, fewer kept.
        assert published > 20 + 100
        assert await redis.xlen(w.hub.stream_key) <= 20 + 100
        assert 0 < await redis.pttl(w.hub.stream_key) <= 30_000
        # Finished operations: leases left to expire (no poll after the end), within lease_ttl
        # of the end (a lease still renewed would outlive the wait).
        left = [k async for k in redis.scan_iter(match=f"{prefix}:lease:*")]
        assert left, "leases outlive the watch: they are left to expire, not deleted"
        for _ in range(50):  # 50 x 20 ms: lease_ttl (0.75 s) and some slack
            if not await redis.exists(*left):
                break
            await anyio.sleep(0.02)
        assert [k async for k in redis.scan_iter(match=f"{prefix}:lease:*")] == []


async def test_a_holder_that_leaves_hands_over_at_once(redis_server: RedisServer) -> None:
    async with AsyncExitStack() as stack:
        # Running until finished below, once the stayer holds every lease.
        fake = await stack.enter_async_context(
            await _fake(30, pending=(0.0, 0.05), running=(HELD, HELD))
        )
        ids = fake.seed(TargetKind.V3_EXPORT, 30)
        prefix = _prefix()
        stayer = Worker(fake, redis_server.url, prefix, policy=BRISK, lease_ttl=30.0)
        leaver = Worker(fake, redis_server.url, prefix, policy=BRISK, lease_ttl=30.0)
        for w in (leaver, stayer):
            await stack.enter_async_context(w.client)
        await stack.enter_async_context(stayer.hub)
        async with anyio.create_task_group() as tg:
            async with leaver.hub:
                tg.start_soon(leaver.watch, ids)
                # The leaver takes every lease first.
                await eventually(lambda: len(leaver.hub.held()) == 30, 5.0)
                tg.start_soon(stayer.watch, ids)
                await eventually(lambda: len(stayer.seen) == 30, 5.0)  # it reads what is shared
                assert len(leaver.hub.held()) == 30
                assert stayer.hub.held() == set()
                # The leaver's hub closes: leases given back, its watch polls locally from now.
            await eventually(lambda: len(stayer.hub.held()) == 30, 2.0)
            for export_id in ids:
                fake.finish(export_id)
        assert stayer.hub.stats().takeovers >= 1
        for seq in stayer.seen.values():
            check_story(seq)
        assert len(stayer.seen) == 30


async def test_loss_of_redis_falls_back_and_comes_back(
    private_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with AsyncExitStack() as stack:
        caplog.set_level(logging.INFO, logger="d360_async.watch.hub")
        # Running until finished below: half while Redis is away, half once it is back.
        fake = await stack.enter_async_context(
            await _fake(40, pending=(0.0, 0.05), running=(HELD, HELD))
        )
        ids = fake.seed(TargetKind.V3_EXPORT, 40)
        prefix = _prefix()
        args = {"lease_ttl": 0.9, "probe_interval": 0.2, "operation_timeout": 0.3}
        args |= {"policy": BRISK}
        workers = await start(stack, fake, private_redis_server.url, prefix, 2, **args)
        async with anyio.create_task_group() as tg:
            for w in workers:
                tg.start_soon(w.watch, ids)
            await eventually(lambda: all(len(w.seen) == 40 for w in workers), 5.0)
            private_redis_server.stop()
            await eventually(lambda: all(w.hub.degraded for w in workers), 5.0)
            for export_id in ids[:20]:
                fake.finish(export_id)
            # Each falls back to polling alone, and sees those ends without Redis.
            await eventually(lambda: all(_ended(w, ids[:20]) for w in workers), 5.0)
            private_redis_server.start()
            await eventually(lambda: not any(w.hub.degraded for w in workers), 5.0)
            for export_id in ids[20:]:
                fake.finish(export_id)
        for w in workers:
            assert len(w.seen) == 40
            for seq in w.seen.values():
                check_story(seq)
            assert w.hub.stats().outages == 1
        records = [r for r in caplog.records if r.name == "d360_async.watch.hub"]
        lost = [r for r in records if r.levelno == logging.WARNING]
        back = [r for r in records if r.levelno == logging.INFO and "answers again" in r.message]
        assert len(lost) == 2  # once per process
        assert len(back) == 2
        assert all("unreachable" in r.getMessage() for r in lost)


def _ended(worker: Worker, ids: list[str]) -> bool:
    """Whether ``worker`` has seen the end of every export in ``ids``."""
    finals = {key for key, seq in worker.seen.items() if seq[-1].final}
    targets = {worker.client.exports.target(worker.fake.project_id, i).key for i in ids}
    return targets <= finals


def test_bad_settings_are_refused_with_a_clear_error() -> None:
    url = "redis://127.0.0.1:1/0"  # never connected to: nothing here needs a server
    with pytest.raises(ValueError, match="lease_ttl"):
        ObservationHub(url, lease_ttl=0)
    with pytest.raises(ValueError, match="3 x operation_timeout"):
        ObservationHub(url, lease_ttl=1.0, operation_timeout=1.0)
    with pytest.raises(ValueError, match="stream_maxlen"):
        ObservationHub(url, stream_maxlen=0)
    with pytest.raises(ValueError, match="block"):
        ObservationHub(url, block=float("inf"))


async def test_a_hub_serves_one_client_and_never_shows_a_password() -> None:
    hub = ObservationHub("redis://:hunter2@127.0.0.1:1/0")
    async with Client(api_token="t", base_url="http://127.0.0.1:1", hub=hub):
        with pytest.raises(RuntimeError, match="another client"):
            Client(api_token="t", base_url="http://127.0.0.1:1", hub=hub)
    assert "hunter2" not in repr(hub)
    assert not hub.degraded
    assert hub.stats().topics == 0
    assert hub.lease_key(("v3.export", "k")).endswith(":lease:v3.export:k")
