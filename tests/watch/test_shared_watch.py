"""Watches sharing one registry poll each target once, and keep their own semantics.

On the virtual clock of ``test_watch`` (milliseconds of real time), then the "Done when" of
issue 17 part 1 against the real fake server: two watches over the same 500 exports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import attrs
from test_watch import FAST, SimLimiter, SimTarget, Snap, by_key, clock, raws

from d360_async import TargetKind
from d360_async._core._phase import Phase
from d360_async._watch import (
    PollPolicy,
    PollRegistry,
    Transition,
    TransitionKind,
    Watch,
    load_checkpoint,
    watch,
)
from d360_async.testing import ManualClock

__all__ = ["clock"]  # the fixture

T = TypeVar("T")


async def _drain(w: Watch[Snap], out: list[Transition[Snap]]) -> None:
    async for t in w:
        out.append(t)


async def _run(clock: ManualClock, main: Callable[[], Awaitable[T]]) -> T:
    """``clock.run`` with a heartbeat: with two watches on one virtual clock, the clock's
    deadlock check can fire in the instant both watches are being left (every task waits for
    a cancellation to be delivered, nobody sleeps).  A real hang still fails, on the horizon."""

    async def wrapped() -> T:
        async with anyio.create_task_group() as tg:

            async def tick() -> None:
                while True:
                    await clock.sleep(25.0)

            tg.start_soon(tick)
            try:
                return await main()
            finally:
                tg.cancel_scope.cancel()
        raise AssertionError("unreachable")

    return await clock.run(wrapped, horizon=5_000.0)


def _targets(clock: ManualClock, limiter: SimLimiter, n: int) -> list[SimTarget]:
    return [SimTarget(f"op{i}", clock, limiter) for i in range(n)]


async def test_two_watches_poll_once_and_each_sees_every_change(clock: ManualClock) -> None:
    limiter = SimLimiter(clock, rate=50.0, burst=5)
    targets = _targets(clock, limiter, 20)
    registry = PollRegistry()
    first: list[Transition[Snap]] = []
    second: list[Transition[Snap]] = []

    async def main() -> tuple[Any, Any]:
        async with (
            watch(targets, policy=FAST, clock=clock, shared=registry) as w1,
            watch(targets, policy=FAST, clock=clock, shared=registry) as w2,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_drain, w1, first)
            tg.start_soon(_drain, w2, second)
        return w1.stats(), w2.stats()

    s1, s2 = await _run(clock, main)
    polls = sum(len(t.poll_times) for t in targets)
    assert polls == s1.polls + s2.polls == len(limiter.admitted)
    assert s2.polls == 0
    assert s2.shared == s1.polls
    for events in (by_key(first), by_key(second)):
        assert set(events) == {t.key for t in targets}
        for seq in events.values():
            assert raws(seq) == ["Queued", "InProgress", "Completed"]
            assert seq[0].previous is None
            assert seq[-1].final
    assert len(registry) == 0  # everything left the registry


async def test_the_most_demanding_policy_sets_the_pace(clock: ManualClock) -> None:
    limiter = SimLimiter(clock, rate=100.0, burst=5)
    target = SimTarget("op", clock, limiter, ((0.0, "Queued"), (30.0, "Completed")))
    slow = PollPolicy(interval=10.0, max_interval=10.0, adaptive=False, jitter=0.0)
    quick = PollPolicy(interval=1.0, max_interval=1.0, adaptive=False, jitter=0.0)
    registry = PollRegistry()
    got: dict[str, list[Transition[Snap]]] = {"slow": [], "quick": []}

    async def main() -> None:
        async with (
            watch([target], policy=slow, clock=clock, shared=registry) as w1,
            watch([target], policy=quick, clock=clock, shared=registry) as w2,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_drain, w1, got["slow"])
            tg.start_soon(_drain, w2, got["quick"])

    await _run(clock, main)
    # About one poll a second for 30 s (the quick pace), not three (the slow one) nor 33.
    assert 28 <= len(target.poll_times) <= 33
    for seq in got.values():
        assert raws(seq) == ["Queued", "Completed"]
        # Detected within the quick pace in both watches, not within the slow one's.
        assert (seq[-1].observed_at - seq[0].observed_at).total_seconds() <= 31.5


async def test_until_ends_one_watch_and_the_other_takes_the_polling_over(
    clock: ManualClock,
) -> None:
    limiter = SimLimiter(clock, rate=50.0, burst=5)
    targets = _targets(clock, limiter, 5)
    registry = PollRegistry()
    stop_running = attrs.evolve(FAST, until=lambda t: t.phase is Phase.RUNNING)
    early: list[Transition[Snap]] = []
    full: list[Transition[Snap]] = []

    async def main() -> None:
        async with (
            watch(targets, policy=stop_running, clock=clock, shared=registry) as w1,
            watch(targets, policy=FAST, clock=clock, shared=registry) as w2,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_drain, w1, early)
            tg.start_soon(_drain, w2, full)

    await _run(clock, main)
    for seq in by_key(early).values():
        assert raws(seq) == ["Queued", "InProgress"]
        assert seq[-1].final
    for seq in by_key(full).values():
        assert raws(seq) == ["Queued", "InProgress", "Completed"]
    for target in targets:
        gaps = [b - a for a, b in zip(target.poll_times, target.poll_times[1:], strict=False)]
        assert min(gaps) >= 0.8, "two watches polled the same target at once"


async def test_removing_a_target_from_the_polling_watch_leaves_it_watched(
    clock: ManualClock,
) -> None:
    limiter = SimLimiter(clock, rate=50.0, burst=5)
    target = SimTarget("op", clock, limiter)
    registry = PollRegistry()
    first: list[Transition[Snap]] = []
    second: list[Transition[Snap]] = []

    async def main() -> None:
        async with (
            watch([target], policy=FAST, clock=clock, shared=registry, keep_open=True) as w1,
            watch([target], policy=FAST, clock=clock, shared=registry) as w2,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_drain, w2, second)
            async for t in w1:
                first.append(t)
                if t.raw_status == "InProgress":
                    assert w1.remove(target)
                    break
            assert registry.owner(("sim.op", "op")) is not None

    await _run(clock, main)
    assert raws(first) == ["Queued", "InProgress"]
    assert raws(second) == ["Queued", "InProgress", "Completed"]


async def test_a_late_watch_gets_its_own_first_sight_and_deadline(clock: ManualClock) -> None:
    limiter = SimLimiter(clock, rate=50.0, burst=5)
    target = SimTarget("op", clock, limiter)
    registry = PollRegistry()
    first: list[Transition[Snap]] = []
    late: list[Transition[Snap]] = []
    short = attrs.evolve(FAST, target_timeout=2.0)

    async def main() -> str:
        async with (
            watch([target], policy=FAST, clock=clock, shared=registry) as w1,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_drain, w1, first)
            await clock.sleep(4.0)  # InProgress since t=3
            async with watch([target], policy=short, clock=clock, shared=registry) as w2:
                await _drain(w2, late)
                return w2.checkpoint()
        raise AssertionError("unreachable")

    checkpoint = await _run(clock, main)
    assert raws(first) == ["Queued", "InProgress", "Completed"]
    # Its own first sight (previous None), then its own deadline, 2 s after it joined.
    assert late[0].kind is TransitionKind.CHANGED
    assert late[0].previous is None
    assert late[0].raw_status == "InProgress"
    assert late[-1].kind is TransitionKind.TIMED_OUT
    (entry,) = load_checkpoint(checkpoint)
    assert entry.done
    assert entry.last_raw == "InProgress"
    assert len(target.poll_times) <= 12  # one pace: ~1 poll/s for 10 s


async def test_the_polling_watch_closing_hands_over(clock: ManualClock) -> None:
    limiter = SimLimiter(clock, rate=50.0, burst=5)
    target = SimTarget("op", clock, limiter)
    registry = PollRegistry()
    second: list[Transition[Snap]] = []

    async def main() -> None:
        async with (
            watch([target], policy=FAST, clock=clock, shared=registry) as w2,
            anyio.create_task_group() as tg,
        ):
            async with watch(
                [target], policy=attrs.evolve(FAST, interval=0.5), clock=clock, shared=registry
            ) as w1:
                # w1 is more demanding, so it polls; w2 is parked.
                async for t in w1:
                    if t.raw_status == "Queued":
                        break
            tg.start_soon(_drain, w2, second)

    await _run(clock, main)
    assert raws(second) == ["Queued", "InProgress", "Completed"]


async def test_a_slow_consumer_does_not_hold_the_polling_watch_up(clock: ManualClock) -> None:
    limiter = SimLimiter(clock, rate=100.0, burst=5)
    targets = _targets(clock, limiter, 30)
    registry = PollRegistry()
    quick: list[Transition[Snap]] = []

    async def main() -> list[Transition[Snap]]:
        async with (
            watch(targets, policy=FAST, clock=clock, shared=registry) as w1,
            watch(targets, policy=FAST, clock=clock, shared=registry, buffer=0) as w2,
        ):
            await _drain(w1, quick)  # nobody reads w2 meanwhile
            return [t async for t in w2]

    slow = await _run(clock, main)
    assert all(raws(seq) == ["Queued", "InProgress", "Completed"] for seq in by_key(quick).values())
    assert all(raws(seq) == ["Queued", "InProgress", "Completed"] for seq in by_key(slow).values())
    assert len(by_key(slow)) == 30


# -- the "Done when": two watches over the same 500 exports, against the fake ------------------


async def _two_watches(
    n: int, *, share: bool
) -> tuple[int, list[dict[str, list[Transition[Any]]]], Any]:
    from d360_async import Client, RateLimitConfig
    from d360_async.testing import FakeDocument360, FakeLifecycle, FakeRateLimit

    lifecycle = FakeLifecycle(pending=(0.2, 0.6), running=(0.4, 1.0), failure_ratio=0.1)
    fake = FakeDocument360(rate_limit=FakeRateLimit(limit=20000, window=10.0), lifecycle=lifecycle)
    # The client starts at the fake's budget: at the default (60 a minute) the watch waits a
    # second before its second poll, though the first answer announced more.
    budget = RateLimitConfig(rate=20000, period=10.0)
    seen: list[dict[str, list[Transition[Any]]]] = [{}, {}]
    async with fake:
        ids = fake.seed(TargetKind.V3_EXPORT, n)
        async with Client(api_token=fake.api_token, base_url=fake.url, rate_limit=budget) as client:
            targets = [client.exports.target(fake.project_id, i) for i in ids]
            policy = PollPolicy(interval=0.2, max_interval=0.8)
            registry = client._registry if share else None
            stats = []
            async with (
                watch(targets, policy=policy, max_concurrency=32, shared=registry) as w1,
                watch(targets, policy=policy, max_concurrency=32, shared=registry) as w2,
            ):

                async def drain(w: Watch[Any], out: dict[str, list[Transition[Any]]]) -> None:
                    async for t in w:
                        out.setdefault(t.key, []).append(t)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(drain, w1, seen[0])
                    tg.start_soon(drain, w2, seen[1])
                stats = [w1.stats(), w2.stats()]
            await asyncio.sleep(0.05)
        polls = sum(op.polls for op in fake.operations(TargetKind.V3_EXPORT))
        truth = {op.id: op for op in fake.operations(TargetKind.V3_EXPORT)}
    assert stats[0].polls + stats[1].polls == polls
    for events in seen:
        assert len(events) == n
        for key, seq in events.items():
            kinds = [(t.kind, t.raw_status) for t in seq]
            assert len(kinds) == len(set(kinds)), f"a change twice: {kinds}"
            assert all(t.kind is TransitionKind.CHANGED for t in seq)
            phases = [t.phase for t in seq]
            assert (
                phases
                == sorted(
                    phases, key=[Phase.PENDING, Phase.RUNNING, Phase.SUCCEEDED, Phase.FAILED].index
                )
                or phases[-1].is_terminal
            )
            assert seq[-1].final
            assert seq[-1].phase.is_terminal
            outcome = truth[key.rsplit("/", 1)[1]].outcome
            assert seq[-1].phase is (Phase.SUCCEEDED if outcome == "succeeded" else Phase.FAILED)
    return polls, seen, stats


async def test_two_watches_over_500_exports_cost_the_polls_of_one() -> None:
    polls, seen, stats = await _two_watches(500, share=True)
    # Each watch used every poll: its own plus those the other made for it.
    per_watch = [s.polls + s.shared for s in stats]
    assert polls <= 1.05 * min(per_watch), (polls, per_watch)
    # And both saw the same story for every export, in the same order.
    for key, seq in seen[0].items():
        assert [t.raw_status for t in seq] == [t.raw_status for t in seen[1][key]]


async def test_without_sharing_the_server_sees_both_watches() -> None:
    """The control: the same two watches without the client's registry poll twice."""
    polls, _, stats = await _two_watches(100, share=False)
    assert all(s.shared == 0 for s in stats)
    assert polls >= 1.6 * min(s.polls for s in stats), (polls, stats)
