"""Soak: 2,000 operations through one long-lived watch under faults; nothing may grow.

The run lasts ``D360_SOAK_SECONDS`` (default 15). It is marked ``slow``: not in the default
run; ``make test-slow`` (which .ci/run runs after ``make test``) runs it, and a developer may
run it for 60 s or more.  A feeder starts operations on the fake at an even pace
and adds them to a ``keep_open`` watch, which removes each one once its final transition is
in, as a long-running service would.  Every half second the test samples this process's RSS,
its sockets to the fake and the live objects of the library; after a warm-up (the first third)
none of them may keep growing:

* RSS ends within a generous ``RSS_SLACK`` of what it was after warm-up (the fake lives in the
  same process and keeps a small record per operation, which is counted in the slack);
* sockets to the fake never exceed the connection pool's bound, nor what warm-up needed;
* live targets, scheduler states and transitions are back to what they were before, and no
  rate-limit ticket is left in flight.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
from collections import Counter
from typing import Any

import psutil
import pytest

from d360_async import (
    Client,
    ConnectionLimits,
    D360Error,
    Phase,
    PollPolicy,
    RateLimitConfig,
    RetryPolicy,
    Timeouts,
    Transition,
    TransitionKind,
)
from d360_async._core._watch._scheduler import TargetState
from d360_async._resources._resource_target import ResourceTarget
from d360_async.testing import FakeDocument360, FakeLifecycle, FakeRateLimit

SECONDS = float(os.environ.get("D360_SOAK_SECONDS", "15"))
OPERATIONS = 2_000
RSS_SLACK = 40 * 1024 * 1024
FAULTS = {
    "http_500": 0.02,
    "http_503": 0.01,
    "abort": 0.02,
    "slow": 0.01,
    "malformed_json": 0.02,
    "html_502": 0.02,
    "truncated": 0.02,
    "unknown_status": 0.02,
    "extra_fields": 0.02,
    "missing_fields": 0.02,
}
POOL = ConnectionLimits(max_connections=32, max_connections_per_host=16)


def _sockets_to(port: int) -> int:
    return sum(
        1
        for conn in psutil.Process().net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED
    )


def _live(kinds: tuple[type, ...]) -> Counter[str]:
    gc.collect()
    return Counter(type(o).__name__ for o in gc.get_objects() if isinstance(o, kinds))


@pytest.mark.slow
@pytest.mark.timeout(SECONDS * 3 + 60)
async def test_soak() -> None:
    process = psutil.Process()
    tracked = (ResourceTarget, TargetState, Transition)
    before = _live(tracked)  # what earlier tests may have left: not ours to judge
    lifecycle = FakeLifecycle(pending=(0.1, 0.6), running=(0.2, 1.2), failure_ratio=0.2)
    async with FakeDocument360(
        rate_limit=FakeRateLimit(limit=4000, window=2.0),
        lifecycle=lifecycle,
        latency=(0.0, 0.003),
        record_times=False,
        seed=3,
    ) as fake:
        for kind, rate in FAULTS.items():
            fake.faults.set(kind, rate, delay=0.6, retry_after=0)  # type: ignore[arg-type]
        port = int(fake.url.rsplit(":", 1)[1])
        async with Client(
            api_token=fake.api_token,
            v2_api_token=fake.v2_api_token,
            base_url=fake.url,
            rate_limit=RateLimitConfig(rate=4000.0, period=2.0),
            retry=RetryPolicy(backoff_base=0.02, backoff_cap=0.2),
            timeouts=Timeouts(read=0.3, total=2.0),
            limits=POOL,
        ) as client:
            samples: list[tuple[float, int, int]] = []  # (time, rss, sockets)
            finals: dict[str, Transition[Any]] = {}
            ids: dict[str, str] = {}
            loop = asyncio.get_running_loop()
            started = loop.time()
            policy = PollPolicy(interval=0.1, max_interval=0.6, watch_timeout=SECONDS * 3 + 30)
            async with client.watch(policy=policy, keep_open=True, max_concurrency=16) as watch:

                async def feed() -> None:
                    pace = SECONDS * 0.9 / OPERATIONS
                    for index in range(OPERATIONS):
                        if index % 4 == 3:
                            (op_id,) = fake.seed("v2.delete_file", 1)
                            target: Any = client.v2.delete_file_target(op_id)
                        else:
                            (op_id,) = fake.seed("v3.export", 1)
                            target = client.exports.target(fake.project_id, op_id)
                        ids[target.key] = op_id
                        watch.add(target)
                        due = started + (index + 1) * pace
                        await asyncio.sleep(max(0.0, due - loop.time()))

                async def sample() -> None:
                    while True:
                        rss = process.memory_info().rss
                        samples.append((loop.time() - started, rss, _sockets_to(port)))
                        await asyncio.sleep(0.5)

                feeder = asyncio.create_task(feed())
                sampler = asyncio.create_task(sample())
                try:
                    async for transition in watch:
                        if transition.final:
                            finals[transition.key] = transition
                            watch.remove(transition.key)
                            if len(finals) == OPERATIONS:
                                break
                    await feeder
                finally:
                    sampler.cancel()
                    feeder.cancel()
                    await asyncio.gather(sampler, feeder, return_exceptions=True)
                assert watch.live == 0
            elapsed = loop.time() - started
            in_flight = sum(s.in_flight for s in client.rate_limit_stats())
        truth = {op_id: fake.operation(op_id) for op_id in ids.values()}
        stats = fake.stats
        await asyncio.sleep(0.05)
        sockets_after = _sockets_to(port)

    # Every operation ended right (or with a typed error), and nothing kept running.
    errors = Counter[str]()
    for key, final in finals.items():
        if final.kind is TransitionKind.ERROR:
            assert isinstance(final.error, D360Error)
            errors[type(final.error).__name__] += 1
            continue
        op = truth[ids[key]]
        assert final.phase is (Phase.SUCCEEDED if op.outcome == "succeeded" else Phase.FAILED)
    assert sum(errors.values()) <= 5, errors
    assert in_flight == 0
    assert sockets_after == 0, "a socket to the fake outlived the client"
    del finals, final, transition  # the test's own references
    after = _live(tracked)
    assert after - before == Counter(), f"objects outlived the watch: {after - before}"

    # Flat after warm-up.
    warm = [s for s in samples if s[0] >= elapsed / 3]
    assert len(warm) >= 4, "too few samples"
    rss_warm = statistics.median(s[1] for s in warm[:3])
    rss_end = statistics.median(s[1] for s in warm[-3:])
    growth = rss_end - rss_warm
    sockets = [s[2] for s in samples]
    assert max(s[2] for s in warm) <= POOL.max_connections_per_host
    assert growth <= RSS_SLACK, f"RSS grew {growth / 2**20:.1f} MiB after warm-up"
    print(
        f"\nsoak: {OPERATIONS} ops in {elapsed:.1f}s, {stats.requests} requests "
        f"({stats.requests / OPERATIONS:.2f}/op), faults={sum(stats.faults.values())}, "
        f"429s={stats.rate_limited}, errors={dict(errors)}, "
        f"RSS {rss_warm / 2**20:.1f} -> {rss_end / 2**20:.1f} MiB, "
        f"sockets max {max(sockets)} (after warm-up {max(s[2] for s in warm)})"
    )
