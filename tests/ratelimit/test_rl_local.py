"""The in-process limiter on virtual time: order, priority, pauses, cancellation, stats."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import TYPE_CHECKING

import pytest

from d360_async._limiters import (
    LimiterStats,
    LocalRateLimiter,
    Priority,
    RateLimitConfig,
    RateLimiter,
    RateLimitKey,
    RateLimitState,
    Ticket,
)

if TYPE_CHECKING:
    from d360_async.testing import ManualClock

KEY = RateLimitKey("apihub.document360.io", "fp-1a2b3c", "project-1")
OTHER = RateLimitKey("apihub.document360.io", "fp-1a2b3c", "project-2")
RATE = 0.97  # 60 per minute less the 3 % safety margin
GAP = 1 / RATE


def make(clock: ManualClock, **config: object) -> LocalRateLimiter:
    return LocalRateLimiter(
        RateLimitConfig(**config),  # type: ignore[arg-type]
        clock=clock,
    )


def stats_of(limiter: LocalRateLimiter, key: RateLimitKey = KEY) -> LimiterStats:
    (found,) = [s for s in limiter.stats() if s.key == key]
    return found


class Recorder:
    """Starts acquirers in a known order and records who got in when."""

    def __init__(self, limiter: LocalRateLimiter, clock: ManualClock) -> None:
        self.limiter = limiter
        self.clock = clock
        self.admitted: list[tuple[str, float]] = []
        self.tickets: dict[str, Ticket] = {}
        self.tasks: dict[str, asyncio.Task[Ticket]] = {}

    async def start(self, name: str, priority: Priority = Priority.DIRECT) -> None:
        async def run() -> Ticket:
            ticket = await self.limiter.acquire(KEY, priority=priority)
            self.admitted.append((name, self.clock.now))
            self.tickets[name] = ticket
            return ticket

        self.tasks[name] = asyncio.create_task(run())
        await self.clock.settle()

    @property
    def order(self) -> list[str]:
        return [name for name, _ in self.admitted]

    def times(self) -> list[float]:
        return [at for _, at in self.admitted]


def test_it_is_a_rate_limiter() -> None:
    assert isinstance(LocalRateLimiter(), RateLimiter)


async def test_admits_at_once_when_a_token_is_there(clock: ManualClock) -> None:
    limiter = make(clock)
    ticket = await limiter.acquire(KEY)
    assert ticket.key == KEY
    assert ticket.admitted_at == clock.now
    assert ticket.waited == 0.0
    assert ticket.priority is Priority.DIRECT
    stats = stats_of(limiter)
    assert (stats.requests, stats.waits, stats.in_flight, stats.queued) == (1, 0, 1, 0)
    await limiter.complete(ticket, status=200, state=RateLimitState(remaining=59))
    stats = stats_of(limiter)
    assert stats.in_flight == 0
    assert stats.remaining == 59
    assert clock.pending == 0


async def test_try_acquire_admits_only_what_acquire_would_admit_at_once(clock: ManualClock) -> None:
    limiter = make(clock)
    first = limiter.try_acquire(KEY)
    assert first is not None
    assert (first.key, first.admitted_at, first.waited, first.seq) == (KEY, clock.now, 0.0, 1)
    # The next token is a pace away: nothing is taken, nobody is queued, no timer is armed.
    assert limiter.try_acquire(KEY) is None
    stats = stats_of(limiter)
    assert (stats.requests, stats.waits, stats.in_flight, stats.queued) == (1, 0, 1, 0)
    assert clock.pending == 0
    clock.advance(GAP)
    second = limiter.try_acquire(KEY, Priority.POLL)
    assert second is not None
    assert (second.seq, second.priority) == (2, Priority.POLL)
    await limiter.aclose()
    assert limiter.try_acquire(KEY) is None  # closed: acquire would raise


async def test_waiters_are_served_first_come_first_served(clock: ManualClock) -> None:
    limiter = make(clock)
    rec = Recorder(limiter, clock)
    start = clock.now
    for name in "abcde":
        await rec.start(name)
    await clock.run_for(10)
    assert rec.order == list("abcde")
    assert rec.times() == pytest.approx([start + i * GAP for i in range(5)])
    stats = stats_of(limiter)
    assert stats.waits == 4
    assert stats.total_wait == pytest.approx(sum(i * GAP for i in range(5)))
    assert rec.tickets["c"].waited == pytest.approx(2 * GAP)


async def test_direct_calls_go_ahead_of_polls(clock: ManualClock) -> None:
    limiter = make(clock)
    rec = Recorder(limiter, clock)
    await rec.start("first")
    await rec.start("poll-1", Priority.POLL)
    await rec.start("poll-2", Priority.POLL)
    await rec.start("direct-1", Priority.DIRECT)
    await rec.start("direct-2", Priority.DIRECT)
    await clock.run_for(10)
    assert rec.order == ["first", "direct-1", "direct-2", "poll-1", "poll-2"]
    assert rec.tickets["poll-1"].priority is Priority.POLL


async def test_a_poll_does_not_jump_queued_polls_but_a_direct_call_may_take_a_free_token(
    clock: ManualClock,
) -> None:
    limiter = make(clock, burst=2)
    rec = Recorder(limiter, clock)
    await rec.start("a")
    await rec.start("b")
    await rec.start("poll", Priority.POLL)
    assert rec.order == ["a", "b"]
    assert limiter.has_capacity(KEY, Priority.POLL) is False


async def test_a_429_pauses_the_whole_key_then_releases_paced(clock: ManualClock) -> None:
    limiter = make(clock, wait_margin=0.0, adaptive=False)
    first = await limiter.acquire(KEY)
    rec = Recorder(limiter, clock)
    for name in ("q1", "q2", "q3"):
        await rec.start(name)
    await limiter.complete(first, status=429, state=RateLimitState(retry_after=30.0))
    paused_at = clock.now
    await clock.run_for(10)
    await rec.start("late")  # arrives during the pause: waits like the others
    await clock.run_for(19.9)
    assert rec.admitted == []
    stats = stats_of(limiter)
    assert stats.throttled == 1
    assert stats.paused_for == pytest.approx(0.1)
    assert stats.rate == 0.0
    await clock.run_for(20)
    assert rec.order == ["q1", "q2", "q3", "late"]
    times = rec.times()
    assert times[0] == pytest.approx(paused_at + 30.0)
    # One at the end of the pause, then one per refill: no thundering herd.
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([GAP] * 3)


async def test_429s_echoing_the_first_do_not_stack(clock: ManualClock) -> None:
    limiter = make(clock, burst=3)
    tickets = [await limiter.acquire(KEY) for _ in range(3)]
    for ticket in tickets:
        await limiter.complete(ticket, status=429, state=None)
    stats = stats_of(limiter)
    assert stats.throttled == 3
    assert stats.paused_for == pytest.approx(1.0)  # one backoff step, not three
    assert stats.budget == pytest.approx(limiter.budget(OTHER) / 2)


async def test_cancelling_waiters_keeps_the_queue_consistent(clock: ManualClock) -> None:
    limiter = make(clock)
    rec = Recorder(limiter, clock)
    start = clock.now
    for name in "abcde":
        await rec.start(name)
    rec.tasks["b"].cancel()
    rec.tasks["c"].cancel()
    await clock.settle()
    assert stats_of(limiter).queued == 2
    await clock.run_for(10)
    assert rec.order == ["a", "d", "e"]
    # The cancelled waiters' turns were not lost: d and e took the next two tokens.
    assert rec.times() == pytest.approx([start, start + GAP, start + 2 * GAP])
    assert rec.tasks["b"].cancelled()
    assert clock.pending == 0
    assert stats_of(limiter).requests == 3


async def test_cancelling_the_head_hands_its_token_to_the_next(clock: ManualClock) -> None:
    limiter = make(clock)
    await limiter.acquire(KEY)
    rec = Recorder(limiter, clock)
    start = clock.now
    await rec.start("head")
    await rec.start("next")
    rec.tasks["head"].cancel()
    await clock.run_for(GAP)
    assert rec.admitted == [("next", pytest.approx(start + GAP))]


async def test_cancelled_after_admission_gives_the_token_back(clock: ManualClock) -> None:
    limiter = make(clock)
    await limiter.acquire(KEY)
    rec = Recorder(limiter, clock)
    await rec.start("unlucky")
    await rec.start("next")
    deadline = clock.next_deadline()
    assert deadline is not None
    clock.now = deadline
    clock.fire_due()  # admits "unlucky": its future is resolved...
    rec.tasks["unlucky"].cancel()  # ...but its task is cancelled before it resumes
    await clock.settle()
    assert rec.tasks["unlucky"].cancelled()
    assert rec.admitted == [("next", deadline)]
    stats = stats_of(limiter)
    assert stats.requests == 2
    assert stats.in_flight == 2


async def test_cancelling_every_waiter_leaves_nothing_running(clock: ManualClock) -> None:
    limiter = make(clock)
    await limiter.acquire(KEY)
    rec = Recorder(limiter, clock)
    for name in "abc":
        await rec.start(name)
    for task in rec.tasks.values():
        task.cancel()
    await clock.run_for(60)
    assert clock.pending == 0
    assert stats_of(limiter).queued == 0
    # ...and the key still works.
    ticket = await limiter.acquire(KEY)
    assert ticket.waited == 0.0


async def test_timeouts_around_acquire_are_safe(clock: ManualClock) -> None:
    limiter = make(clock)
    await limiter.acquire(KEY)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await limiter.acquire(KEY)
    assert stats_of(limiter).queued == 0
    await clock.run_for(GAP)
    assert limiter.has_capacity(KEY)


async def test_status_none_counts_as_spent(clock: ManualClock) -> None:
    limiter = make(clock)
    ticket = await limiter.acquire(KEY)
    await limiter.complete(ticket, status=None, state=None)
    assert limiter.next_available(KEY) == pytest.approx(GAP)


async def test_complete_exactly_once(clock: ManualClock) -> None:
    limiter = make(clock)
    ticket = await limiter.acquire(KEY)
    await limiter.complete(ticket, status=200, state=None)
    assert ticket.completed
    with pytest.raises(RuntimeError, match="twice"):
        await limiter.complete(ticket, status=200, state=None)
    with pytest.raises(ValueError, match="not issued"):
        await limiter.complete(Ticket(OTHER, clock.now), status=200, state=None)


async def test_calibration_shows_in_stats(clock: ManualClock) -> None:
    limiter = make(clock, wait_margin=0.0)
    ticket = await limiter.acquire(KEY)
    await limiter.complete(
        ticket, status=200, state=RateLimitState(limit=100, remaining=40, reset_after=20.0)
    )
    stats = stats_of(limiter)
    assert stats.limit == 100
    assert stats.remaining == 40
    assert stats.reset_after == pytest.approx(20.0)
    # 40 credits spread evenly until the earliest the window can end (a reset sent in whole
    # seconds may be up to a second early).
    assert stats.rate == pytest.approx(40 / 19)
    assert stats.budget == pytest.approx(100 / 60)  # the announced limit, in full
    assert limiter.budget(KEY) == stats.budget


async def test_headers_can_be_ignored_but_retry_after_is_honoured(clock: ManualClock) -> None:
    limiter = make(clock, use_headers=False, wait_margin=0.0)
    ticket = await limiter.acquire(KEY)
    await limiter.complete(ticket, status=200, state=RateLimitState(limit=5, remaining=0))
    stats = stats_of(limiter)
    assert (stats.limit, stats.remaining) == (None, None)
    ticket = await clock.run(limiter.acquire(KEY, priority=Priority.POLL))
    await limiter.complete(
        ticket, status=429, state=RateLimitState(remaining=0, reset_after=99, retry_after=12)
    )
    assert stats_of(limiter).paused_for == pytest.approx(12.0)


async def test_queries_for_the_watch(clock: ManualClock) -> None:
    limiter = make(clock)
    assert limiter.has_capacity(KEY)
    assert limiter.next_available(KEY) == 0.0
    assert limiter.budget(KEY) == pytest.approx(RATE)
    await limiter.acquire(KEY)
    assert not limiter.has_capacity(KEY)
    assert limiter.next_available(KEY) == pytest.approx(GAP)
    rec = Recorder(limiter, clock)
    await rec.start("poll", Priority.POLL)
    await rec.start("direct", Priority.DIRECT)
    # A direct call waits behind the queued direct call only; a poll behind both.
    assert limiter.next_available(KEY, Priority.DIRECT) == pytest.approx(2 * GAP)
    assert limiter.next_available(KEY, Priority.POLL) == pytest.approx(3 * GAP)
    await clock.run_for(2 * GAP)
    assert rec.order == ["direct", "poll"]
    assert limiter.next_available(OTHER, Priority.POLL) == 0.0


async def test_keys_are_independent(clock: ManualClock) -> None:
    limiter = make(clock)
    await limiter.acquire(KEY)
    ticket = await limiter.acquire(OTHER)
    assert ticket.waited == 0.0
    assert {s.key for s in limiter.stats()} == {KEY, OTHER}


async def test_aclose_fails_waiters_and_stops_timers(clock: ManualClock) -> None:
    limiter = make(clock)
    held = await limiter.acquire(KEY)
    rec = Recorder(limiter, clock)
    await rec.start("waiting")
    await limiter.aclose()
    await limiter.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await rec.tasks["waiting"]
    assert clock.pending == 0
    with pytest.raises(RuntimeError, match="closed"):
        await limiter.acquire(KEY)
    await limiter.complete(held, status=200, state=None)  # settling after close is fine
    assert not limiter.has_capacity(KEY)
    assert "closed" in repr(limiter)


async def test_async_context_manager_closes(clock: ManualClock) -> None:
    async with make(clock) as limiter:
        await limiter.acquire(KEY)
    assert limiter.closed


async def test_repr(clock: ManualClock) -> None:
    limiter = make(clock, rate=100)
    await limiter.acquire(KEY)
    assert repr(limiter) == "LocalRateLimiter(rate=100/60s, keys=1, in_flight=1, queued=0)"


def test_config_defaults_and_validation() -> None:
    config = RateLimitConfig()
    assert (config.rate, config.period, config.effective_burst) == (60.0, 60.0, 1)
    # By default a margin only for resets sent as epochs, at their one-second resolution.
    assert (config.effective_wait_margin, config.effective_epoch_margin) == (0.0, 1.0)
    explicit = RateLimitConfig(wait_margin=0.25)
    assert (explicit.effective_wait_margin, explicit.effective_epoch_margin) == (0.25, 0.0)
    for bad in ({"rate": 0}, {"period": -1}, {"burst": 0}, {"safety_margin": 1.5}):
        with pytest.raises(ValueError):  # noqa: PT011
            RateLimitConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wait_margin"):
        RateLimitConfig(wait_margin=-0.1)


async def test_on_the_real_event_loop() -> None:
    """The default timer is the loop's: three requests at 100/s take about 20 ms."""
    limiter = LocalRateLimiter(RateLimitConfig(rate=100, period=1.0))
    started = time.monotonic()
    tickets = await asyncio.gather(*(limiter.acquire(KEY) for _ in range(3)))
    elapsed = time.monotonic() - started
    assert sorted(t.waited for t in tickets)[0] == 0.0
    assert elapsed >= 2 / 95 - 0.002
    assert elapsed < 0.5
    await limiter.aclose()


async def test_a_late_timer_costs_no_tokens_and_leaves_no_burst(clock: ManualClock) -> None:
    limiter = make(clock)
    await limiter.acquire(KEY)
    rec = Recorder(limiter, clock)
    for name in "abcde":
        await rec.start(name)
    start = clock.now
    # The event loop was busy: the timer due after one gap fires three gaps late.
    clock.now = start + 3 * GAP
    clock.fire_due()
    await clock.settle()
    assert rec.order == ["a", "b", "c"]  # every token that accrued meanwhile is used...
    await clock.run_for(2 * GAP)
    assert rec.order == list("abcde")  # ...and the cadence goes on from there
    assert rec.times()[3:] == pytest.approx([start + 4 * GAP, start + 5 * GAP])
    # Once nobody waits the bucket is back to its capacity: no burst later.
    await clock.run_for(100)
    assert limiter.has_capacity(KEY)
    await limiter.acquire(KEY)
    assert not limiter.has_capacity(KEY)


def test_a_limiter_survives_its_event_loop() -> None:
    """A timer left on a finished loop must not strand waiters on the next one."""
    limiter = LocalRateLimiter(RateLimitConfig(rate=100, period=1.0))

    async def leave_a_waiter() -> None:
        await limiter.acquire(KEY)
        asyncio.get_running_loop().create_task(limiter.acquire(KEY))
        await asyncio.sleep(0)  # queued, timer armed; asyncio.run then cancels it

    async def acquire_twice() -> float:
        started = time.monotonic()
        await limiter.acquire(KEY)
        await asyncio.wait_for(limiter.acquire(KEY), timeout=1.0)
        return time.monotonic() - started

    asyncio.run(leave_a_waiter())
    assert asyncio.run(acquire_twice()) < 0.5
