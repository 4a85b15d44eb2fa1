"""The one Clock: `SystemClock`, `ManualClock` and the deprecated bare-function form."""

from __future__ import annotations

import asyncio
import math
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from d360_async import (
    Client,
    Clock,
    LocalRateLimiter,
    Phase,
    PollPolicy,
    RateLimitKey,
    SystemClock,
)
from d360_async.testing import FakeDocument360, ManualClock

KEY = RateLimitKey("fake.example", "fp", "p")


def test_both_clocks_are_clocks() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(ManualClock(), Clock)
    assert not isinstance(time.monotonic, Clock)


async def test_the_system_clock_reads_and_waits_for_real() -> None:
    clock = SystemClock()
    assert abs(clock.time() - time.time()) < 1.0
    before = clock.monotonic()
    await clock.sleep(0.01)
    assert clock.monotonic() - before >= 0.009
    fired = asyncio.Event()
    clock.call_later(0.0, fired.set)
    await asyncio.wait_for(fired.wait(), 1.0)
    forever = asyncio.ensure_future(clock.sleep(math.inf))
    await asyncio.sleep(0.01)
    assert not forever.done()
    forever.cancel()
    with pytest.raises(asyncio.CancelledError):
        await forever


def test_manual_readings_and_wall_time() -> None:
    clock = ManualClock(start=5.0, wall=datetime(2031, 2, 3, tzinfo=UTC).timestamp())
    assert clock.now == clock.monotonic() == clock() == 5.0
    clock.advance(2.5)
    assert clock.monotonic() == 7.5
    assert clock.utcnow() == datetime(2031, 2, 3, 0, 0, 2, 500000, tzinfo=UTC)
    assert clock.time() == datetime(2031, 2, 3, tzinfo=UTC).timestamp() + 2.5
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1.0)
    with pytest.raises(ValueError, match="finite"):
        ManualClock(start=math.nan)


def test_advance_fires_each_timer_at_its_own_deadline_in_order() -> None:
    clock = ManualClock(start=0.0)
    fired: list[tuple[str, float]] = []
    clock.call_later(3.0, lambda: fired.append(("c", clock.now)))
    clock.call_later(1.0, lambda: fired.append(("a", clock.now)))
    cancelled = clock.call_later(2.0, lambda: fired.append(("x", clock.now)))
    # A timer armed by a callback inside the window fires in the same advance.
    clock.call_later(1.5, lambda: clock.call_later(0.25, lambda: fired.append(("b", clock.now))))
    cancelled.cancel()
    assert clock.pending == 4 - 1
    clock.advance(2.9)
    assert fired == [("a", 1.0), ("b", 1.75)]
    assert clock.next_deadline() == 3.0
    clock.advance(0.1)
    assert fired[-1] == ("c", 3.0)
    assert clock.pending == 0
    assert clock.next_deadline() is None


async def test_sleepers_wake_in_deadline_order_and_run_for_lets_them_run() -> None:
    clock = ManualClock(start=0.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float, then: float = 0.0) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now))
        if then:
            await clock.sleep(then)
            woke.append((name + "+", clock.now))

    tasks = [
        asyncio.ensure_future(sleeper("late", 5.0)),
        asyncio.ensure_future(sleeper("early", 1.0, then=1.0)),
    ]
    await clock.run_for(4.0)
    # "early" woke at 1 s, ran, slept again and woke at 2 s, all within the 4 s.
    assert woke == [("early", 1.0), ("early+", 2.0)]
    assert clock.now == 4.0
    await clock.run_for(1.0)
    assert woke[-1] == ("late", 5.0)
    await asyncio.gather(*tasks)


async def test_a_plain_advance_wakes_but_does_not_run_the_sleeper() -> None:
    clock = ManualClock(start=0.0)
    task = asyncio.ensure_future(clock.sleep(1.0))
    await clock.settle()
    clock.advance(10.0)
    assert not task.done()  # woken, not yet resumed
    await clock.settle()
    assert task.done()


async def test_sleep_zero_yields_and_infinity_waits_until_cancelled() -> None:
    clock = ManualClock()
    await clock.sleep(0)
    await clock.sleep(-1)
    forever = asyncio.ensure_future(clock.sleep(math.inf))
    clock.advance(1e9)
    await clock.settle()
    assert not forever.done()
    forever.cancel()
    with pytest.raises(asyncio.CancelledError):
        await forever
    assert clock.pending == 0


async def test_run_jumps_from_timer_to_timer_and_returns_the_result() -> None:
    clock = ManualClock(start=0.0)

    async def work() -> float:
        for _ in range(100):
            await clock.sleep(60.0)
        return clock.now

    started = time.monotonic()
    assert await clock.run(work()) == 6000.0
    assert await clock.run(work) == 12000.0  # a function returning the awaitable works too
    assert time.monotonic() - started < 1.0


async def test_run_fails_a_deadlock_and_a_block_past_its_horizon() -> None:
    clock = ManualClock()
    with pytest.raises(AssertionError, match="deadlock"):
        await clock.run(asyncio.Event().wait())
    with pytest.raises(AssertionError, match="still running after 100 virtual seconds"):
        await clock.run(clock.sleep(1000.0), horizon=100.0)
    assert clock.pending == 0, "the failed block was cancelled and cleaned up"


async def test_autoadvance_drives_a_client_against_the_fake_over_sockets() -> None:
    """The documented example (docs/testing.md): 31 minutes of an export, no real waiting."""
    clock = ManualClock()
    async with FakeDocument360(clock=clock, rate_limit=None) as fake:
        [export_id] = fake.seed("v3.export", pending=60, running=1800, failure_ratio=0.0)
        async with Client(api_token=fake.api_token, base_url=fake.url, clock=clock) as client:
            target = client.exports.target(fake.project_id, export_id)
            every_minute = PollPolicy(interval=60.0, max_interval=60.0)
            started = time.monotonic()
            final = await clock.run(client.wait(target, policy=every_minute))  # 31 minutes
            assert time.monotonic() - started < 2.0
    assert final.phase is Phase.SUCCEEDED
    assert clock.now >= 1000.0 + 1860.0
    # The watch stamps transitions with the clock's wall time.
    assert final.observed_at <= clock.utcnow()
    assert final.observed_at.year == 2030


def test_the_documented_example_is_the_one_tested() -> None:
    page = (Path(__file__).parents[2] / "docs" / "testing.md").read_text()
    block = re.search(
        r"```python\n(from d360_async import Client, Phase, PollPolicy.*?)```", page, re.S
    )
    assert block is not None
    source = Path(__file__).read_text()
    for line in block.group(1).splitlines():
        if line.strip() and not line.startswith(("from ", "async def", "    async def")):
            assert line.strip() in source, f"the docs example drifted: {line!r}"


async def test_a_bare_function_still_works_but_is_deprecated() -> None:
    now = [100.0]
    with pytest.warns(DeprecationWarning, match="LocalRateLimiter"):
        limiter = LocalRateLimiter(clock=lambda: now[0])
    ticket = await limiter.acquire(KEY)
    assert ticket.admitted_at == 100.0
    await limiter.aclose()
    with pytest.warns(DeprecationWarning, match="FakeDocument360"):
        fake = FakeDocument360(clock=lambda: now[0])
    now[0] = 160.0
    assert fake.now() == 160.0
    assert fake.epoch() == pytest.approx(time.time(), abs=60.0 + 1.0)
    with pytest.raises(TypeError, match="Clock"):
        Client(api_token="t", clock=42)  # type: ignore[arg-type]
