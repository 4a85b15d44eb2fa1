"""The watch end to end against simulated targets on a virtual clock.

Nothing here waits on the real clock: `ManualClock.run` jumps to the next timer whenever
every task is blocked, so a watch over minutes of virtual time runs in milliseconds.  Targets
(:class:`SimTarget`) follow a scripted lifecycle on that clock and pass their ticket back to
the limiter the way the transport does; :class:`SimLimiter` is a real token bucket on the same
clock that records every admission.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import attrs
import pytest

from d360_async._core._errors import (
    AuthenticationError,
    ConnectError,
    CredentialsUnavailable,
    D360Error,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    TimeoutError,
    ValidationError,
    WatchError,
)
from d360_async._core._phase import Phase
from d360_async._core._ratelimit._headers import RateLimitState
from d360_async._core._ratelimit._protocol import (
    LimiterStats,
    Priority,
    RateLimitKey,
    Ticket,
)
from d360_async._core._target_protocol import Observation, Target
from d360_async._watch import (
    PollPolicy,
    Transition,
    TransitionKind,
    Watch,
    load_checkpoint,
    wait,
    watch,
)
from d360_async._watch._watch import ADMIT_CHUNK
from d360_async.testing import ManualClock

T = TypeVar("T")

EPOCH = datetime(2030, 1, 1, tzinfo=UTC)
KEY = RateLimitKey(host="sim.example", token_fingerprint="abc", project_id="p1")
OTHER_KEY = RateLimitKey(host="sim.example", token_fingerprint="abc", project_id="p2")

PHASES = {
    "Queued": Phase.PENDING,
    "InProgress": Phase.RUNNING,
    "Processing": Phase.RUNNING,
    "Completed": Phase.SUCCEEDED,
    "Failed": Phase.FAILED,
    "Cancelled": Phase.CANCELLED,
    "Weird": Phase.UNKNOWN,
}

NORMAL = ((0.0, "Queued"), (3.0, "InProgress"), (10.0, "Completed"))


# -- a limiter and targets on that clock ----------------------------------------------------------


class SimLimiter:
    """A token bucket on the virtual clock that records what it admitted and settled."""

    def __init__(self, clock: ManualClock, *, rate: float, burst: int = 1) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = clock.now
        self.lock = anyio.Lock()
        self.admitted: list[float] = []
        self.priorities: list[Priority] = []
        self.outstanding = 0
        self.unanswered = 0

    def _refill(self) -> None:
        now = self.clock.now
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    async def acquire(self, key: RateLimitKey, *, priority: Priority = Priority.DIRECT) -> Ticket:
        async with self.lock:
            while True:
                self._refill()
                if self.tokens >= 1.0 - 1e-9:
                    self.tokens -= 1.0
                    break
                await self.clock.sleep((1.0 - self.tokens) / self.rate)
        self.admitted.append(self.clock.now)
        self.priorities.append(priority)
        self.outstanding += 1
        return Ticket(key=key, admitted_at=self.clock.now)

    async def complete(
        self, ticket: Ticket, *, status: int | None, state: RateLimitState | None
    ) -> None:
        assert not ticket.completed, "a ticket was completed twice"
        ticket.completed = True  # as the RateLimiter protocol says
        self.outstanding -= 1
        if status is None:
            self.unanswered += 1

    def stats(self) -> list[LimiterStats]:
        return []

    def has_capacity(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> bool:
        return self.next_available(key, priority) == 0.0

    def next_available(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> float:
        self._refill()
        return max(0.0, (1.0 - self.tokens) / self.rate)

    def paused_for(self, key: RateLimitKey) -> float:
        return 0.0

    def budget(self, key: RateLimitKey) -> float:
        return self.rate

    async def aclose(self) -> None:
        pass

    def check_rate(self) -> None:
        """No window ever admitted more than the bucket allows."""
        times = self.admitted
        for i in range(len(times) - self.burst):
            span = times[i + self.burst] - times[i]
            assert span >= 1.0 / self.rate - 1e-6, f"admitted too fast around t={times[i]}"


@attrs.frozen
class Snap:
    key: str
    raw: str
    at: float


class Probe:
    """Counters shared by a set of targets: concurrency and tasks seen during polls."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.max_tasks = 0


class SimTarget:
    """One operation following ``script`` (``(seconds after creation, raw status)`` steps)."""

    def __init__(
        self,
        key: str,
        clock: ManualClock,
        limiter: SimLimiter,
        script: Sequence[tuple[float, str]] = NORMAL,
        *,
        kind: str = "sim.op",
        rate_key: RateLimitKey = KEY,
        latency: float = 0.1,
        faults: Mapping[int, Exception] | None = None,
        fail_always: Exception | None = None,
        created_at: float | None = None,
        probe: Probe | None = None,
        warnings: tuple[str, ...] = (),
    ) -> None:
        self.key = key
        self.kind = kind
        self.rate_key = rate_key
        self.limiter = limiter
        self.clock = clock
        self.script = tuple(script)
        self.latency = latency
        self.faults = dict(faults or {})
        self.fail_always = fail_always
        self.created_at = clock.now if created_at is None else created_at
        self.probe = probe or Probe()
        self.warnings = warnings
        self.poll_times: list[float] = []
        self.cancelled = 0

    def __repr__(self) -> str:
        return f"SimTarget({self.key!r})"

    def raw_at(self, t: float) -> str:
        raw = self.script[0][1]
        for offset, step in self.script:
            if self.created_at + offset <= t:
                raw = step
        return raw

    def finished_at(self) -> float:
        return self.created_at + self.script[-1][0]

    async def poll(self, *, ticket: Ticket | None = None) -> Observation[Snap]:
        self.poll_times.append(self.clock.now)
        probe = self.probe
        probe.in_flight += 1
        probe.max_in_flight = max(probe.max_in_flight, probe.in_flight)
        probe.max_tasks = max(probe.max_tasks, len(asyncio.all_tasks()))
        if ticket is None:
            ticket = await self.limiter.acquire(self.rate_key, priority=Priority.POLL)
        status: int | None = None
        try:
            await self.clock.sleep(self.latency)
            fault = self.faults.get(len(self.poll_times), self.fail_always)
            if fault is not None:
                status = getattr(fault, "status", None) or 500
                raise fault
            raw = self.raw_at(self.clock.now)
            status = 200
            return Observation(
                phase=PHASES[raw],
                raw_status=raw,
                snapshot=Snap(self.key, raw, self.clock.now),
                warnings=self.warnings,
            )
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            probe.in_flight -= 1
            with anyio.CancelScope(shield=True):
                await self.limiter.complete(ticket, status=status, state=None)

    def to_spec(self) -> Mapping[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "created_at": self.created_at,
            "script": [list(step) for step in self.script],
        }


def resolver_for(
    clock: ManualClock, limiter: SimLimiter, built: list[SimTarget]
) -> Callable[[Mapping[str, Any]], Target[Snap]]:
    def resolve(spec: Mapping[str, Any]) -> Target[Snap]:
        target = SimTarget(
            spec["key"],
            clock,
            limiter,
            [(float(t), str(raw)) for t, raw in spec["script"]],
            kind=spec["kind"],
            created_at=float(spec["created_at"]),
        )
        built.append(target)
        return target

    return resolve


async def collect(w: Watch[Snap]) -> list[Transition[Snap]]:
    return [t async for t in w]


def by_key(transitions: Sequence[Transition[Snap]]) -> dict[str, list[Transition[Snap]]]:
    out: dict[str, list[Transition[Snap]]] = {}
    for t in transitions:
        out.setdefault(t.key, []).append(t)
    return out


def raws(transitions: Sequence[Transition[Snap]]) -> list[object]:
    return [t.raw_status for t in transitions if t.kind is TransitionKind.CHANGED]


# No poll timeout: these tests script slow polls of their own (the hostile-conditions tests at
# the end set one). A timeout would also wake the timer at a stale time, which the virtual
# clock's deadlock detection cannot tell from a hang when it coincides with the test leaving
# the watch in the same instant.
FAST = PollPolicy(interval=1.0, backoff=1.5, max_interval=5.0, jitter=0.1, poll_timeout=None)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=0.0, wall=EPOCH.timestamp())


@pytest.fixture
def limiter(clock: ManualClock) -> SimLimiter:
    return SimLimiter(clock, rate=20.0, burst=1)


def _our_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


# -- the basic contract ----------------------------------------------------------------------------


async def test_each_change_once_in_order_then_the_iterator_ends(
    clock: ManualClock, limiter: SimLimiter
) -> None:
    targets = [SimTarget(f"op{i}", clock, limiter) for i in range(5)]

    async def main() -> list[Transition[Snap]]:
        async with watch(targets, policy=FAST, clock=clock) as w:
            return await collect(w)

    transitions = await clock.run(main)
    grouped = by_key(transitions)
    assert sorted(grouped) == [f"op{i}" for i in range(5)]
    for events in grouped.values():
        assert raws(events) == ["Queued", "InProgress", "Completed"]
        assert [t.previous for t in events] == [None, Phase.PENDING, Phase.RUNNING]
        assert [t.final for t in events] == [False, False, True]
        assert all(t.kind is TransitionKind.CHANGED for t in events)
        polls = [t.polls for t in events]
        assert polls == sorted(polls)


async def test_transition_fields(clock: ManualClock, limiter: SimLimiter) -> None:
    target = SimTarget("op", clock, limiter, latency=0.5, warnings=("odd header",))

    async def main() -> list[Transition[Snap]]:
        async with watch([target], policy=FAST, clock=clock) as w:
            return await collect(w)

    first, *_, last = await clock.run(main)
    assert first.target is target
    assert first.key == "op"
    assert first.observed_at.tzinfo is UTC
    assert first.observed_at == EPOCH + timedelta(seconds=target.poll_times[0] + 0.5)
    assert first.snapshot == Snap("op", "Queued", target.poll_times[0] + 0.5)
    assert first.phase is Phase.PENDING
    assert first.raw_status == "Queued"
    assert first.warnings == ("odd header",)
    assert first.error is None
    assert first.polls == 1
    assert last.phase is Phase.SUCCEEDED
    assert last.polls == len(target.poll_times)


async def test_no_poll_after_the_end_and_detection_is_prompt(
    clock: ManualClock, limiter: SimLimiter
) -> None:
    targets = [SimTarget(f"op{i}", clock, limiter) for i in range(10)]

    async def main() -> list[Transition[Snap]]:
        async with watch(targets, policy=FAST, clock=clock) as w:
            return await collect(w)

    transitions = await clock.run(main)
    for target in targets:
        (final,) = [t for t in transitions if t.key == target.key and t.final]
        finished = target.finished_at()
        seen_at = [t + target.latency for t in target.poll_times]
        assert seen_at[-1] >= finished, "the last poll saw the end"
        assert all(t < finished for t in seen_at[:-1]), "and no poll came after it"
        # The last poll is the one that saw the end; with budget to spare it came quickly.
        assert (final.observed_at - EPOCH).total_seconds() - finished <= FAST.max_interval * 1.1 + 1


async def test_polls_go_through_the_limiter_at_poll_priority(clock: ManualClock) -> None:
    limiter = SimLimiter(clock, rate=2.0, burst=1)
    targets = [SimTarget(f"op{i}", clock, limiter) for i in range(40)]

    async def main() -> list[Transition[Snap]]:
        async with watch(targets, policy=FAST, clock=clock) as w:
            return await collect(w)

    transitions = await clock.run(main)
    assert sum(1 for t in transitions if t.final) == 40
    assert len(limiter.admitted) == sum(len(t.poll_times) for t in targets)
    assert set(limiter.priorities) == {Priority.POLL}
    limiter.check_rate()
    assert limiter.outstanding == 0, "every ticket was completed"
    assert limiter.unanswered == 0, "every ticket was spent on a poll"


async def test_one_scheduler_a_bounded_number_of_tasks(
    clock: ManualClock, limiter: SimLimiter
) -> None:
    probe = Probe()
    targets = [SimTarget(f"op{i}", clock, limiter, probe=probe) for i in range(300)]

    async def main() -> int:
        async with watch(targets, policy=FAST, clock=clock, max_concurrency=4) as w:
            return sum(1 for t in await collect(w) if t.final)

    # The budget is tight: many are first seen finished, so count the ends.
    assert await clock.run(main) == 300
    assert probe.max_in_flight <= 4
    # Test body + clock driver + one group runner + the timer + at most 4 polls.
    assert probe.max_tasks <= 2 + 1 + 1 + 4


async def test_entering_a_large_watch_lets_the_loop_run(
    clock: ManualClock, limiter: SimLimiter
) -> None:
    """Targets are admitted ADMIT_CHUNK at a time, with a yield to the event loop in between."""
    total = 3 * ADMIT_CHUNK + 10
    targets = [SimTarget(f"op{i}", clock, limiter) for i in range(total)]
    w = watch(targets, policy=PollPolicy(first_delay=1000.0), clock=clock)
    seen: list[int] = []
    entered = False

    async def spy() -> None:
        while not entered:
            seen.append(w.live)
            await anyio.lowlevel.checkpoint()

    async def main() -> int:
        nonlocal entered
        live = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(spy)
            await anyio.lowlevel.checkpoint()
            async with w:
                entered = True
                live = w.live
        return live

    assert await clock.run(main) == total
    assert seen[0] == 0
    assert any(0 < n < total for n in seen), "the loop never ran while targets were admitted"
    assert all(b - a <= ADMIT_CHUNK for a, b in itertools.pairwise(seen))


async def test_ten_thousand_targets_cost_little_memory(clock: ManualClock) -> None:
    """Per-target state (scheduler record, heap entry, watch entry) stays around 0.5 KiB."""
    import tracemalloc

    limiter = SimLimiter(clock, rate=100.0)
    targets = [SimTarget(f"op{i}", clock, limiter) for i in range(10_000)]

    async def main() -> float:
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            async with watch(targets, policy=FAST, clock=clock) as w:
                after = tracemalloc.take_snapshot()
                await anext(w)
        finally:
            tracemalloc.stop()
        grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        return grown / len(targets)

    assert await clock.run(main) < 1024


async def test_a_slow_consumer_slows_polling(clock: ManualClock, limiter: SimLimiter) -> None:
    busy = tuple((float(i), "InProgress" if i % 2 else "Processing") for i in range(1000))
    targets = [SimTarget(f"op{i}", clock, limiter, busy) for i in range(20)]

    async def main() -> tuple[int, int]:
        async with watch(targets, policy=FAST, clock=clock, buffer=3, max_concurrency=2) as w:
            await anext(w)
            before = sum(len(t.poll_times) for t in targets)
            await clock.sleep(300.0)  # the consumer is busy for five minutes
            after = sum(len(t.poll_times) for t in targets)
            return before, after

    before, after = await clock.run(main)
    # Every poll sees a change, so once the buffer and the slots are full, polling stops.
    assert after - before <= 3 + 2 + 1


class UnpacedLimiter:
    """A limiter that cannot say how long a ticket will take: its ``next_available`` always
    answers "now", and only ``acquire`` makes the caller wait."""

    def __init__(self, inner: SimLimiter) -> None:
        self.inner = inner

    async def acquire(self, key: RateLimitKey, *, priority: Priority = Priority.DIRECT) -> Ticket:
        return await self.inner.acquire(key, priority=priority)

    async def complete(
        self, ticket: Ticket, *, status: int | None, state: RateLimitState | None
    ) -> None:
        await self.inner.complete(ticket, status=status, state=state)

    def stats(self) -> list[LimiterStats]:
        return []

    def has_capacity(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> bool:
        return self.inner.has_capacity(key, priority)

    def next_available(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> float:
        return 0.0

    def paused_for(self, key: RateLimitKey) -> float:
        return 0.0

    def budget(self, key: RateLimitKey) -> float:
        return self.inner.budget(key)

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("paced", [True, False], ids=["paced-limiter", "plain-limiter"])
async def test_groups_do_not_hold_each_other_up(clock: ManualClock, paced: bool) -> None:
    """A budget that makes its polls wait must not take the concurrency from the others."""
    starved = SimLimiter(clock, rate=0.001)  # one poll per 1000 s
    starved.tokens = 0.0
    healthy = SimLimiter(clock, rate=10.0)
    slow_limiter: Any = starved if paced else UnpacedLimiter(starved)
    slow = [SimTarget(f"slow{i}", clock, slow_limiter, rate_key=OTHER_KEY) for i in range(3)]
    quick = [SimTarget(f"quick{i}", clock, healthy) for i in range(3)]

    async def main() -> float:
        async with watch([*slow, *quick], policy=FAST, clock=clock, max_concurrency=1) as w:
            finished = 0
            async for t in w:
                if t.final and t.key.startswith("quick"):
                    finished += 1
                    if finished == 3:
                        return clock.now
        raise AssertionError("unreachable")

    assert await clock.run(main) < 30.0


async def test_mixed_kinds_learn_and_spend_polls_on_the_quick_ones(clock: ManualClock) -> None:
    """A tight budget, quick tasks among slow exports: the quick ones are detected early."""
    limiter = SimLimiter(clock, rate=2.0)
    quick_script = ((0.0, "Queued"), (0.5, "InProgress"), (3.0, "Completed"))
    slow_script = ((0.0, "Queued"), (5.0, "InProgress"), (60.0, "Completed"))
    slow = [SimTarget(f"s{i:02}", clock, limiter, slow_script, kind="export") for i in range(40)]
    quick = [SimTarget(f"q{i:02}", clock, limiter, quick_script, kind="drive") for i in range(10)]

    async def main() -> dict[str, float]:
        done: dict[str, float] = {}
        async with watch([*slow, *quick], policy=FAST, clock=clock) as w:
            async for t in w:
                if t.final:
                    done[t.key] = clock.now
        return done

    done = await clock.run(main)
    quick_delays = sorted(done[t.key] - t.finished_at() for t in quick)
    # Plain earliest-due-first would reach the quick ones (added last) only after a first
    # round of the 40 exports at 2 polls/s (20 s); learning the quick kind gets there sooner.
    assert quick_delays[len(quick_delays) // 2] < 8.0, quick_delays


# -- dynamic membership ----------------------------------------------------------------------------


async def test_add_and_remove_while_iterating(clock: ManualClock, limiter: SimLimiter) -> None:
    first = SimTarget("first", clock, limiter)
    slow = SimTarget("slow", clock, limiter, latency=50.0)
    late = SimTarget("late", clock, limiter, created_at=0.0)

    async def main() -> list[Transition[Snap]]:
        seen: list[Transition[Snap]] = []
        async with watch([first, slow], policy=FAST, clock=clock) as w:
            assert w.add(first) is False, "same key twice is a no-op"
            async for t in w:
                seen.append(t)
                if t.key == "first" and t.phase is Phase.PENDING:
                    assert w.add(late) is True
                    await clock.sleep(1.0)  # let the slow target's poll start
                    assert w.remove(slow) is True
                    assert w.remove(slow) is False
                    assert w.remove("nobody") is False
        return seen

    seen = await clock.run(main)
    assert {t.key for t in seen} == {"first", "late"}
    assert raws(by_key(seen)["late"]) == ["Queued", "InProgress", "Completed"]
    assert slow.cancelled == 1, "removing a target cancels its poll in flight"
    assert limiter.outstanding == 0


async def test_removing_the_last_target_ends_a_waiting_iterator(
    clock: ManualClock, limiter: SimLimiter
) -> None:
    target = SimTarget("op", clock, limiter, ((0.0, "Queued"),))

    async def main() -> list[Transition[Snap]]:
        seen: list[Transition[Snap]] = []
        async with watch([target], policy=FAST, clock=clock) as w:

            async def remove_later() -> None:
                await clock.sleep(30.0)
                w.remove(target)

            async with anyio.create_task_group() as tg:
                tg.start_soon(remove_later)
                async for t in w:
                    seen.append(t)
        return seen

    seen = await clock.run(main)
    assert raws(seen) == ["Queued"]
    assert clock.now >= 30.0


async def test_keep_open_waits_for_work(clock: ManualClock, limiter: SimLimiter) -> None:
    target = SimTarget("later", clock, limiter, created_at=20.0)

    async def main() -> list[Transition[Snap]]:
        seen: list[Transition[Snap]] = []
        empty: list[SimTarget] = []
        async with watch(empty, policy=FAST, clock=clock, keep_open=True) as w:
            assert w.live == 0

            async def add_later() -> None:
                await clock.sleep(20.0)
                w.add(target)

            async with anyio.create_task_group() as tg:
                tg.start_soon(add_later)
                async for t in w:
                    seen.append(t)
                    if t.final:
                        break
        return seen

    seen = await clock.run(main)
    assert raws(seen) == ["Queued", "InProgress", "Completed"]


async def test_add_is_refused_outside_the_block_and_after_the_end(
    clock: ManualClock, limiter: SimLimiter
) -> None:
    w = watch([SimTarget("a", clock, limiter)], policy=FAST, clock=clock)
    with pytest.raises(RuntimeError, match="async with"):
        w.add(SimTarget("b", clock, limiter))
    with pytest.raises(RuntimeError):
        w.checkpoint()

    async def main() -> None:
        async with w:
            await collect(w)
            with pytest.raises(RuntimeError, match="ended"):
                w.add(SimTarget("c", clock, limiter))
        with pytest.raises(RuntimeError, match="async with"):
            await anext(w)
        with pytest.raises(RuntimeError, match="once"):
            await w.__aenter__()

    await clock.run(main)


async def test_each_target_can_have_its_own_policy(clock: ManualClock, limiter: SimLimiter) -> None:
    review = ((0.0, "Queued"), (2.0, "Weird"), (100.0, "Completed"))
    stop_at_review = PollPolicy(until=lambda t: t.phase is Phase.UNKNOWN)
    plain = SimTarget("plain", clock, limiter)
    special = SimTarget("special", clock, limiter, review)

    async def main() -> list[Transition[Snap]]:
        async with watch([plain], policy=FAST, clock=clock) as w:
            w.add(special, policy=stop_at_review)
            return await collect(w)

    grouped = by_key(await clock.run(main))
    assert raws(grouped["special"]) == ["Queued", "Weird"]
    assert raws(grouped["plain"]) == ["Queued", "InProgress", "Completed"]


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(NotFound("gone", status=404), id="404-after-seen"),
        pytest.param(AuthenticationError("bad token", status=401), id="401"),
        pytest.param(PermissionDenied("no", status=403), id="403"),
        pytest.param(ValidationError("bad", status=400), id="400"),
        pytest.param(MalformedResponse("html"), id="malformed"),
    ],
)
async def test_a_fatal_error_ends_only_its_target(
    clock: ManualClock, limiter: SimLimiter, error: D360Error
) -> None:
    broken = SimTarget("broken", clock, limiter, faults={2: error})
    healthy = SimTarget("healthy", clock, limiter)

    async def main() -> list[Transition[Snap]]:
        async with watch([broken, healthy], policy=FAST, clock=clock) as w:
            return await collect(w)

    grouped = by_key(await clock.run(main))
    *_, last = grouped["broken"]
    assert last.kind is TransitionKind.ERROR
    assert last.final
    assert last.error is error
    assert last.phase is Phase.PENDING
    assert last.previous is Phase.PENDING
    assert last.snapshot is not None
    assert last.snapshot.raw == "Queued"
    assert len(broken.poll_times) == 2
    assert raws(grouped["healthy"]) == ["Queued", "InProgress", "Completed"]


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ServerError("boom", status=503), id="5xx"),
        pytest.param(ConnectError("refused"), id="connect"),
        pytest.param(RateLimited("slow down", status=429), id="429"),
    ],
)
async def test_transient_errors_are_retried(
    clock: ManualClock, limiter: SimLimiter, error: D360Error
) -> None:
    target = SimTarget("op", clock, limiter, faults={2: error, 3: error, 4: error})

    async def main() -> list[Transition[Snap]]:
        async with watch([target], policy=FAST, clock=clock) as w:
            return await collect(w)

    transitions = await clock.run(main)
    assert all(t.kind is TransitionKind.CHANGED for t in transitions)
    assert raws(transitions) == ["Queued", "InProgress", "Completed"]


async def test_retry_at_of_a_429_is_honoured(clock: ManualClock, limiter: SimLimiter) -> None:
    retry_at = (EPOCH + timedelta(seconds=40)).timestamp()
    target = SimTarget(
        "op", clock, limiter, faults={1: RateLimited("wait", status=429, retry_at=retry_at)}
    )

    async def main() -> list[Transition[Snap]]:
        async with watch([target], policy=FAST, clock=clock) as w:
            return await collect(w)

    await clock.run(main)
    assert target.poll_times[1] >= 40.0


async def test_not_found_before_first_sight_gets_a_grace_period(
    clock: ManualClock, limiter: SimLimiter
) -> None:
    gone = NotFound("not yet", status=404)
    script = ((0.0, "Queued"), (10.0, "InProgress"), (20.0, "Completed"))
    appearing = SimTarget("appearing", clock, limiter, script, faults={1: gone, 2: gone})
    never = SimTarget("never", clock, limiter, fail_always=gone)
    policy = attrs.evolve(FAST, not_found_grace=8.0)

    async def main() -> list[Transition[Snap]]:
        async with watch([appearing, never], policy=policy, clock=clock) as w:
            return await collect(w)

    grouped = by_key(await clock.run(main))
    assert raws(grouped["appearing"]) == ["Queued", "InProgress", "Completed"]
    (error,) = grouped["never"]
    assert error.kind is TransitionKind.ERROR
    assert error.error is gone
    assert error.previous is None
    assert error.phase is Phase.UNKNOWN
    assert error.snapshot is None
    assert never.poll_times[-1] + never.latency >= 8.0  # answered after the grace
    assert len(never.poll_times) > 1


async def test_a_bug_in_one_target_is_reported_and_the_rest_go_on(
    clock: ManualClock, limiter: SimLimiter, caplog: pytest.LogCaptureFixture
) -> None:
    buggy = SimTarget("buggy", clock, limiter, faults={2: ZeroDivisionError("oops")})
    healthy = SimTarget("healthy", clock, limiter)

    async def main() -> list[Transition[Snap]]:
        async with watch([buggy, healthy], policy=FAST, clock=clock) as w:
            return await collect(w)

    with caplog.at_level(logging.ERROR, logger="d360_async.watch"):
        grouped = by_key(await clock.run(main))
    *_, last = grouped["buggy"]
    assert last.kind is TransitionKind.ERROR
    assert last.final
    assert isinstance(last.error, WatchError)
    assert isinstance(last.error.__cause__, ZeroDivisionError)
    assert "buggy" in str(last.error)
    assert any("buggy" in r.getMessage() for r in caplog.records)
    assert raws(grouped["healthy"]) == ["Queued", "InProgress", "Completed"]


async def test_a_poll_that_returns_nonsense_is_a_bug(
    clock: ManualClock, limiter: SimLimiter
) -> None:
    class Confused(SimTarget):
        async def poll(self, *, ticket: Ticket | None = None) -> Observation[Snap]:
            await super().poll(ticket=ticket)
            return "Completed"  # type: ignore[return-value]

    target = Confused("confused", clock, limiter)

    async def main() -> list[Transition[Snap]]:
        async with watch([target], policy=FAST, clock=clock) as w:
            return await collect(w)

    (only,) = await clock.run(main)
    assert only.kind is TransitionKind.ERROR
    assert isinstance(only.error, WatchError)
    assert isinstance(only.error.__cause__, TypeError)


# -- until, stalls, deadlines ----------------------------------------------------------------------


async def test_until_ends_a_target_early(clock: ManualClock, limiter: SimLimiter) -> None:
    target = SimTarget("op", clock, limiter)
    policy = attrs.evolve(FAST, until=lambda t: t.phase is Phase.RUNNING)

    async def main() -> list[Transition[Snap]]:
        async with watch([target], policy=policy, clock=clock) as w:
            return await collect(w)

    transitions = await clock.run(main)
    assert raws(transitions) == ["Queued", "InProgress"]
    assert transitions[-1].final
    assert transitions[-1].phase is Phase.RUNNING
    polls = len(target.poll_times)
    assert clock.now < 10.0
    assert polls == transitions[-1].polls


async def test_until_that_raises_is_a_bug(clock: ManualClock, limiter: SimLimiter) -> None:
    def until(t: Transition[Any]) -> bool:
        raise KeyError("oops")

    target = SimTarget("op", clock, limiter)

    async def main() -> list[Transition[Snap]]:
        async with watch([target], policy=attrs.evolve(FAST, until=until), clock=clock) as w:
            return await collect(w)

    first, error = await clock.run(main)
    assert first.kind is TransitionKind.CHANGED
    assert not first.final
    assert error.kind is TransitionKind.ERROR
    assert isinstance(error.error, WatchError)
    assert isinstance(error.error.__cause__, KeyError)


async def test_stall_is_reported_once_per_stall(clock: ManualClock, limiter: SimLimiter) -> None:
    script = ((0.0, "Queued"), (2.0, "InProgress"), (60.0, "Processing"), (200.0, "Completed"))
    target = SimTarget("op", clock, limiter, script)
    policy = attrs.evolve(FAST, stall_after=20.0)

    async def main() -> list[Transition[Snap]]:
        async with watch([target], policy=policy, clock=clock) as w:
            return await collect(w)

    transitions = await clock.run(main)
    kinds = [(t.kind, t.raw_status) for t in transitions]
    stalled, changed = TransitionKind.STALLED, TransitionKind.CHANGED
    assert kinds == [
        (changed, "Queued"),
        (changed, "InProgress"),
        (stalled, "InProgress"),
        (changed, "Processing"),
        (stalled, "Processing"),
        (changed, "Completed"),
    ]
    stall = transitions[2]
    assert not stall.final
    assert stall.phase is Phase.RUNNING
    assert (stall.observed_at - transitions[1].observed_at).total_seconds() >= 20.0


async def test_target_deadline_cuts_a_poll_short(clock: ManualClock, limiter: SimLimiter) -> None:
    stuck = SimTarget("stuck", clock, limiter, latency=100.0)
    fine = SimTarget("fine", clock, limiter)

    async def main() -> list[Transition[Snap]]:
        async with watch(
            [stuck, fine],
            policy=attrs.evolve(FAST, target_timeout=15.0, poll_timeout=None),
            clock=clock,
        ) as w:
            return await collect(w)

    grouped = by_key(await clock.run(main))
    (timed_out,) = grouped["stuck"]
    assert timed_out.kind is TransitionKind.TIMED_OUT
    assert timed_out.final
    assert timed_out.observed_at == EPOCH + timedelta(seconds=15.0)
    assert stuck.cancelled == 1
    assert raws(grouped["fine"]) == ["Queued", "InProgress", "Completed"]
    assert limiter.outstanding == 0


async def test_target_deadline_between_polls(clock: ManualClock, limiter: SimLimiter) -> None:
    never_ends = SimTarget("op", clock, limiter, ((0.0, "Queued"), (1.0, "InProgress")))

    async def main() -> list[Transition[Snap]]:
        async with watch(
            [never_ends], policy=attrs.evolve(FAST, target_timeout=30.0), clock=clock
        ) as w:
            return await collect(w)

    transitions = await clock.run(main)
    assert [t.kind for t in transitions][-1] is TransitionKind.TIMED_OUT
    assert transitions[-1].observed_at == EPOCH + timedelta(seconds=30.0)
    assert transitions[-1].phase is Phase.RUNNING
    assert all(t < 30.0 for t in never_ends.poll_times)


async def test_watch_deadline_ends_everything_even_when_kept_open(
    clock: ManualClock, limiter: SimLimiter
) -> None:
    slow = [SimTarget(f"op{i}", clock, limiter, ((0.0, "Queued"),)) for i in range(3)]
    done = SimTarget("done", clock, limiter, ((0.0, "Completed"),))

    async def main() -> list[Transition[Snap]]:
        policy = attrs.evolve(FAST, watch_timeout=50.0)
        async with watch([*slow, done], policy=policy, clock=clock, keep_open=True) as w:
            transitions = await collect(w)
            with pytest.raises(RuntimeError):
                w.add(SimTarget("late", clock, limiter))
            return transitions

    grouped = by_key(await clock.run(main))
    for target in slow:
        assert [t.kind for t in grouped[target.key]][-1] is TransitionKind.TIMED_OUT
    assert [t.kind for t in grouped["done"]] == [TransitionKind.CHANGED]
    assert clock.now == pytest.approx(50.0)


# -- checkpoints -----------------------------------------------------------------------------------


async def test_resume_repeats_nothing_and_catches_up(clock: ManualClock) -> None:
    limiter = SimLimiter(clock, rate=50.0)
    scripts = {
        "quick": ((0.0, "Queued"), (2.0, "Completed")),
        "mid": ((0.0, "Queued"), (5.0, "InProgress"), (30.0, "Processing"), (90.0, "Completed")),
        "long": ((0.0, "Queued"), (40.0, "InProgress"), (200.0, "Failed")),
    }
    first_run = [SimTarget(key, clock, limiter, script) for key, script in scripts.items()]

    async def before_crash() -> tuple[list[Transition[Snap]], str]:
        seen: list[Transition[Snap]] = []
        async with watch(first_run, policy=FAST, clock=clock) as w:
            async for t in w:
                seen.append(t)
                if t.key == "mid" and t.raw_status == "InProgress":
                    break
            return seen, w.checkpoint()

    seen, saved = await clock.run(before_crash)
    assert {e.key: e.done for e in load_checkpoint(saved)}["quick"] is True
    await clock.run(lambda: clock.sleep(100.0))  # nobody watches for a while

    rebuilt: list[SimTarget] = []

    async def after_restart() -> list[Transition[Snap]]:
        resolve = resolver_for(clock, limiter, rebuilt)
        async with watch([], policy=FAST, clock=clock, resume=saved, resolver=resolve) as w:
            return await collect(w)

    resumed = await clock.run(after_restart)
    assert sorted(t.key for t in rebuilt) == ["long", "mid"], "a done target is not rebuilt"
    combined = by_key(seen + resumed)
    assert raws(combined["quick"]) == ["Queued", "Completed"]
    # "Processing" happened while nobody watched: delivered once, after what came before.
    assert raws(combined["mid"]) == ["Queued", "InProgress", "Completed"]
    assert raws(combined["long"]) == ["Queued", "InProgress", "Failed"]
    mid_resumed = by_key(resumed)["mid"]
    assert mid_resumed[0].previous is Phase.RUNNING
    assert mid_resumed[0].polls > by_key(seen)["mid"][-1].polls, "the poll count goes on"


async def test_checkpoint_counts_only_what_the_consumer_received(
    clock: ManualClock, limiter: SimLimiter
) -> None:
    target = SimTarget("op", clock, limiter, ((0.0, "Queued"), (1.0, "Completed")))

    async def main() -> tuple[str, str]:
        async with watch([target], policy=FAST, clock=clock, buffer=10) as w:
            await clock.sleep(30.0)  # both transitions are buffered, none received
            unread = w.checkpoint()
            await anext(w)
            return unread, w.checkpoint()

    unread, after_one = await clock.run(main)
    (entry,) = load_checkpoint(unread)
    assert entry.last_phase is None
    assert not entry.done
    (entry,) = load_checkpoint(after_one)
    assert entry.last_raw == "Queued"
    assert entry.last_phase is Phase.PENDING
    assert not entry.done

    resumed = SimTarget("op", clock, limiter, target.script, created_at=0.0)

    async def restart() -> list[Transition[Snap]]:
        async with watch([resumed], policy=FAST, clock=clock, resume=after_one) as w:
            return await collect(w)

    transitions = await clock.run(restart)
    assert raws(transitions) == ["Completed"], "the buffered-but-unread one is delivered"
    assert transitions[0].previous is Phase.PENDING


async def test_resume_without_a_way_to_rebuild_targets_is_refused(
    clock: ManualClock, limiter: SimLimiter
) -> None:
    async def main() -> str:
        async with watch([SimTarget("op", clock, limiter)], policy=FAST, clock=clock) as w:
            await anext(w)
            return w.checkpoint()

    saved = await clock.run(main)
    with pytest.raises(ValueError, match="resolver"):
        watch([], resume=saved)
    with pytest.raises(ValueError, match="key"):
        watch([], resume=saved, resolver=lambda spec: SimTarget("other", clock, limiter))
    with pytest.raises(ValueError, match="version"):
        watch([], resume='{"version": 99, "targets": []}')


async def test_a_checkpoint_survives_the_watch(clock: ManualClock, limiter: SimLimiter) -> None:
    target = SimTarget("op", clock, limiter)

    async def main() -> Watch[Snap]:
        async with watch([target], policy=FAST, clock=clock) as w:
            await collect(w)
        return w

    w = await clock.run(main)
    (entry,) = load_checkpoint(w.checkpoint())
    assert entry.done
    assert entry.last_raw == "Completed"
    assert entry.polls == len(target.poll_times)


# -- leaving early leaks nothing -------------------------------------------------------------------


async def test_break_stops_every_poll_and_leaks_nothing(clock: ManualClock) -> None:
    limiter = SimLimiter(clock, rate=100.0, burst=5)
    targets = [SimTarget(f"op{i}", clock, limiter, latency=5.0) for i in range(50)]

    async def main() -> None:
        async with watch(targets, policy=FAST, clock=clock, max_concurrency=8) as w:
            async for t in w:
                if t.key == "op3":
                    break

    before = _our_tasks()
    await clock.run(main)
    assert _our_tasks() == before, "no task outlives the watch"
    assert sum(t.cancelled for t in targets) >= 1, "polls in flight were cancelled"
    assert limiter.outstanding == 0, "every ticket was settled"
    gc.collect()  # an unclosed stream would warn here, and warnings are errors


async def test_an_exception_in_the_body_propagates_as_itself(
    clock: ManualClock, limiter: SimLimiter
) -> None:
    targets = [SimTarget(f"op{i}", clock, limiter, latency=5.0) for i in range(5)]

    async def main() -> None:
        async with watch(targets, policy=FAST, clock=clock) as w:
            async for _ in w:
                raise LookupError("consumer failed")

    with pytest.raises(LookupError, match="consumer failed"):
        await clock.run(main)
    assert limiter.outstanding == 0


async def test_a_closed_limiter_stops_the_watch_with_its_error(clock: ManualClock) -> None:
    class Closed(SimLimiter):
        async def acquire(
            self, key: RateLimitKey, *, priority: Priority = Priority.DIRECT
        ) -> Ticket:
            raise RuntimeError("the limiter is closed")

    closed = Closed(clock, rate=1.0)
    targets = [SimTarget(f"op{i}", clock, closed) for i in range(3)]

    async def main() -> None:
        async with watch(targets, policy=FAST, clock=clock) as w:
            await collect(w)

    with pytest.raises(RuntimeError, match="closed"):
        await clock.run(main)


async def test_cancellation_from_outside_leaks_nothing(clock: ManualClock) -> None:
    limiter = SimLimiter(clock, rate=100.0, burst=5)
    targets = [SimTarget(f"op{i}", clock, limiter, latency=5.0) for i in range(20)]
    received: list[Transition[Snap]] = []

    async def consume() -> None:
        async with watch(targets, policy=FAST, clock=clock) as w:
            async for t in w:
                received.append(t)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await clock.sleep(12.0)
            tg.cancel_scope.cancel()

    before = _our_tasks()
    await clock.run(main)
    assert received
    assert len(received) < 60
    assert _our_tasks() == before
    assert limiter.outstanding == 0
    gc.collect()


# -- wait() ----------------------------------------------------------------------------------------


async def test_wait_returns_the_final_transition(clock: ManualClock, limiter: SimLimiter) -> None:
    target = SimTarget("op", clock, limiter)
    final = await clock.run(lambda: wait(target, policy=FAST, clock=clock))
    assert final.final
    assert final.phase is Phase.SUCCEEDED
    assert final.kind is TransitionKind.CHANGED


async def test_wait_returns_a_time_out_rather_than_raising(
    clock: ManualClock, limiter: SimLimiter
) -> None:
    target = SimTarget("op", clock, limiter, ((0.0, "Queued"),))
    final = await clock.run(lambda: wait(target, timeout=20.0, policy=FAST, clock=clock))
    assert final.kind is TransitionKind.TIMED_OUT
    assert final.phase is Phase.PENDING
    assert clock.now == pytest.approx(20.0)


async def test_wait_returns_an_error_rather_than_raising(
    clock: ManualClock, limiter: SimLimiter
) -> None:
    error = AuthenticationError("revoked", status=401)
    target = SimTarget("op", clock, limiter, fail_always=error)
    final = await clock.run(lambda: wait(target, policy=FAST, clock=clock))
    assert final.kind is TransitionKind.ERROR
    assert final.error is error


async def test_wait_on_the_real_clock_is_quick() -> None:
    """The default clock works too (a few real milliseconds)."""

    class Instant:
        key, kind, rate_key = "instant", "sim.op", KEY

        def __init__(self) -> None:
            self.limiter = _RealLimiter()

        async def poll(self, *, ticket: Ticket | None = None) -> Observation[str]:
            if ticket is not None:
                await self.limiter.complete(ticket, status=200, state=None)
            return Observation(phase=Phase.SUCCEEDED, raw_status="Completed", snapshot="ok")

        def to_spec(self) -> Mapping[str, Any]:
            return {}

    final = await wait(Instant(), timeout=5.0)
    assert final.snapshot == "ok"
    assert final.final
    assert abs((datetime.now(UTC) - final.observed_at).total_seconds()) < 5


class _RealLimiter:
    async def acquire(self, key: RateLimitKey, *, priority: Priority = Priority.DIRECT) -> Ticket:
        return Ticket(key=key, admitted_at=0.0)

    async def complete(
        self, ticket: Ticket, *, status: int | None, state: RateLimitState | None
    ) -> None:
        pass

    def stats(self) -> list[LimiterStats]:
        return []

    def has_capacity(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> bool:
        return True

    def next_available(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> float:
        return 0.0

    def paused_for(self, key: RateLimitKey) -> float:
        return 0.0

    def budget(self, key: RateLimitKey) -> float:
        return 1000.0

    async def aclose(self) -> None:
        pass


# -- arguments -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"max_concurrency": 0}, ValueError, id="no-concurrency"),
        pytest.param({"buffer": -1}, ValueError, id="negative-buffer"),
        pytest.param({"policy": {"interval": 1}}, TypeError, id="policy-not-a-policy"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        watch([], **kwargs)


def test_repr_is_informative(clock: ManualClock, limiter: SimLimiter) -> None:
    w = watch([SimTarget("a", clock, limiter)], clock=clock)
    assert "Watch" in repr(w)
    assert "new" in repr(w)


# -- end to end: the real client against FakeDocument360 ---------------------------------------
#
# Real sockets and the real clock (operations last a second or two), so these take seconds,
# not milliseconds.  The budget is tight: 1,000 exports share 1,000 requests per 2 s.


async def _watch_exports(
    n: int, *, stop_after: int | None = None
) -> tuple[dict[str, list[Transition[Any]]], Any, Any]:
    """The real client and fake over sockets, both on one ManualClock (seconds of lifecycles
    in milliseconds)."""
    from d360_async import Client
    from d360_async.testing import FakeDocument360, FakeLifecycle, FakeRateLimit

    clock = ManualClock()
    lifecycle = FakeLifecycle(pending=(0.5, 2.0), running=(1.0, 3.0), failure_ratio=0.1)
    fake = FakeDocument360(
        rate_limit=FakeRateLimit(limit=1000, window=2.0), lifecycle=lifecycle, clock=clock
    )
    grouped: dict[str, list[Transition[Any]]] = {}
    async with fake, clock.autoadvance():
        ids = fake.seed("v3.export", n)
        async with Client(api_token=fake.api_token, base_url=fake.url, clock=clock) as client:
            targets = [client.exports.target(fake.project_id, export_id) for export_id in ids]
            policy = PollPolicy(interval=0.2, max_interval=2.0)
            finished = 0
            async with client.watch(targets, policy=policy, max_concurrency=32) as w:
                async for t in w:
                    grouped.setdefault(t.key, []).append(t)
                    finished += t.final
                    if stop_after is not None and finished >= stop_after:
                        break
            requests_at_exit = fake.stats.requests
            (stats,) = client.rate_limit_stats()
            await clock.sleep(0.05)  # anything still running would send a request now
            assert fake.stats.requests == requests_at_exit, "a request was sent after the exit"
            assert stats.in_flight == 0
        truth = {op.id: op for op in fake.operations("v3.export")}
        return grouped, truth, fake.stats


async def test_end_to_end_thousand_exports_on_a_tight_budget() -> None:
    grouped, truth, stats = await _watch_exports(1000)
    assert stats.rate_limited == 0, "zero 429s"
    assert len(grouped) == 1000
    for events in grouped.values():
        seen = [(t.kind, t.raw_status) for t in events]
        assert len(seen) == len(set(seen)), f"duplicate transition: {seen}"
        assert all(t.kind is TransitionKind.CHANGED for t in events)
        previous: Phase | None = None
        for t in events:
            assert t.previous == previous
            previous = t.phase
        final = events[-1]
        assert final.final
        assert final.phase.is_terminal
        assert final.snapshot is not None
        export_id = final.snapshot.id
        assert final.raw_status == truth[str(export_id)].raw_status, "the true terminal status"


async def test_end_to_end_break_halfway_leaves_nothing_behind() -> None:
    before = _our_tasks()
    grouped, _, stats = await _watch_exports(1000, stop_after=500)
    assert sum(1 for events in grouped.values() if events[-1].final) == 500
    assert stats.rate_limited == 0
    assert _our_tasks() == before, "no task outlives the watch"
    gc.collect()  # an unclosed session, connector or stream would warn: warnings are errors


# -- hostile conditions: hung polls, outages, failing credentials ---------------------------------


async def test_a_hung_poll_times_out_alone_stalls_and_ends_at_its_deadline(
    clock: ManualClock, limiter: SimLimiter
) -> None:
    hung = SimTarget("hung", clock, limiter, latency=1_000.0)
    fine = SimTarget("fine", clock, limiter)
    policy = attrs.evolve(FAST, poll_timeout=4.0, stall_after=10.0, target_timeout=30.0)

    async def main() -> list[Transition[Snap]]:
        async with watch([hung, fine], policy=policy, clock=clock) as w:
            return await collect(w)

    grouped = by_key(await clock.run(main))
    kinds = [t.kind for t in grouped["hung"]]
    assert kinds == [TransitionKind.STALLED, TransitionKind.TIMED_OUT]
    stalled = grouped["hung"][0]
    assert isinstance(stalled.error, TimeoutError)
    assert "without an answer" in str(stalled.error)
    assert stalled.observed_at >= EPOCH + timedelta(seconds=10.0)
    assert grouped["hung"][1].observed_at == EPOCH + timedelta(seconds=30.0)
    # Each poll was cut at 4 s, and the target backed off between them on its own.
    gaps = [b - a for a, b in itertools.pairwise(hung.poll_times)]
    assert len(hung.poll_times) >= 3
    assert all(gap >= 4.0 for gap in gaps), gaps
    assert hung.cancelled == len(hung.poll_times)
    assert raws(grouped["fine"]) == ["Queued", "InProgress", "Completed"]
    assert limiter.outstanding == 0, "every cut poll's ticket was settled, once"


async def test_slow_polls_give_their_slots_back(clock: ManualClock, limiter: SimLimiter) -> None:
    hung = [SimTarget(f"hung{i}", clock, limiter, latency=1_000.0) for i in range(4)]
    healthy = [SimTarget(f"ok{i}", clock, limiter) for i in range(6)]
    policy = attrs.evolve(FAST, poll_timeout=None, slow_poll=1.0, target_timeout=60.0)

    async def main() -> list[Transition[Snap]]:
        async with watch([*hung, *healthy], policy=policy, clock=clock, max_concurrency=2) as w:
            return await collect(w)

    grouped = by_key(await clock.run(main))
    for target in healthy:
        completed = [t for t in grouped[target.key] if t.raw_status == "Completed"]
        assert completed, target
        # Seen within a few seconds of finishing although every slot was held by hung polls.
        delay = (completed[0].observed_at - EPOCH).total_seconds() - target.finished_at()
        assert delay <= 6.0, (target, delay)
    for target in hung:
        assert [t.kind for t in grouped[target.key]] == [TransitionKind.TIMED_OUT]
    assert limiter.outstanding == 0


class DownTarget(SimTarget):
    """A SimTarget whose server refuses connections between ``down`` and ``up``."""

    def __init__(self, *args: Any, down: float, up: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.down, self.up = down, up

    async def poll(self, *, ticket: Ticket | None = None) -> Observation[Snap]:
        if self.down <= self.clock.now < self.up:
            self.poll_times.append(self.clock.now)
            if ticket is not None:
                await self.limiter.complete(ticket, status=None, state=None)
            raise ConnectError("could not connect: ClientConnectorError")
        return await super().poll(ticket=ticket)


async def test_an_outage_opens_the_circuit_and_recovery_closes_it(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = SimLimiter(clock, rate=100.0, burst=5)
    script = ((0.0, "Queued"), (1.0, "InProgress"), (60.0, "Completed"))
    targets = [DownTarget(f"op{i}", clock, limiter, script, down=5.0, up=35.0) for i in range(30)]
    policy = PollPolicy(interval=0.5, max_interval=2.0, jitter=0.0, adaptive=False)

    async def main() -> tuple[list[Transition[Snap]], Any]:
        async with watch(targets, policy=policy, clock=clock) as w:
            return await collect(w), w.outages

    with caplog.at_level(logging.WARNING, logger="d360_async.watch"):
        transitions, outages = await clock.run(main)
    polls = sorted(t for target in targets for t in target.poll_times)
    during = [t for t in polls if 10.0 <= t < 35.0]
    assert len(during) <= 25 * 1.0 + 1, f"{len(during)} polls in 25 s of outage"
    after = [t for t in polls if 35.0 <= t < 37.0]
    polled_after = {
        target.key for target in targets if any(35.0 <= t < 37.0 for t in target.poll_times)
    }
    assert len(polled_after) == 30, f"only {len(polled_after)} polled within 2 s of recovery"
    assert len(after) >= 30
    (outage,) = outages
    assert outage.ended_at is not None
    assert 5.0 <= (outage.started_at - EPOCH).total_seconds() < 10.0
    assert 35.0 <= (outage.ended_at - EPOCH).total_seconds() < 37.0
    assert outage.probes >= 20
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("outage:") for m in messages) == 1
    assert sum(m.startswith("outage over") for m in messages) == 1
    assert all(t.kind is TransitionKind.CHANGED for t in transitions)
    assert sorted(raws(transitions)).count("Completed") == 30
    assert limiter.outstanding == 0


async def test_the_circuit_breaker_can_be_switched_off(clock: ManualClock) -> None:
    limiter = SimLimiter(clock, rate=100.0, burst=5)
    script = ((0.0, "Queued"), (20.0, "Completed"))
    targets = [DownTarget(f"op{i}", clock, limiter, script, down=2.0, up=12.0) for i in range(10)]
    policy = PollPolicy(interval=0.5, max_interval=1.0, jitter=0.0, outage_after=None)

    async def main() -> Any:
        async with watch(targets, policy=policy, clock=clock) as w:
            await collect(w)
            return w.outages

    assert await clock.run(main) == ()
    during = [t for target in targets for t in target.poll_times if 4.0 <= t < 12.0]
    assert len(during) >= 60, "without the breaker every target keeps polling"


async def test_failing_credentials_are_transient_for_a_watch(
    clock: ManualClock, limiter: SimLimiter
) -> None:
    flaky = SimTarget(
        "op", clock, limiter, faults={2: CredentialsUnavailable("the token provider failed")}
    )

    async def main() -> list[Transition[Snap]]:
        async with watch([flaky], policy=FAST, clock=clock) as w:
            return await collect(w)

    transitions = await clock.run(main)
    assert raws(transitions) == ["Queued", "InProgress", "Completed"]
    assert all(t.kind is TransitionKind.CHANGED for t in transitions)
