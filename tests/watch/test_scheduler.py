"""The pure scheduler: property tests on random lifecycles with a fake clock, and unit tests.

No event loop anywhere: the scheduler takes time as an argument, so a whole watch can be
replayed in a plain loop (:func:`simulate`).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence

import attrs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from d360_async._core._phase import Phase
from d360_async._core._watch._scheduler import AGEING, MIN_SAMPLES, REKEY_FRACTION, STALE_FRACTION
from d360_async._watch import DurationModel, PollPolicy, Scheduler

# -- a scripted lifecycle ---------------------------------------------------------------------

_PHASE_OF_PREFIX = {
    "queued": Phase.PENDING,
    "busy": Phase.RUNNING,
    "odd": Phase.UNKNOWN,
    "done": Phase.SUCCEEDED,
    "failed": Phase.FAILED,
    "cancelled": Phase.CANCELLED,
}


@attrs.frozen
class Life:
    """Raw status ``raws[i]`` holds from ``starts[i]`` until ``starts[i + 1]``.

    Raw statuses are ``"<word><index>"``, so every step differs from the one before and the
    index tells its position: delivered statuses must have strictly increasing indices.
    """

    kind: str
    starts: tuple[float, ...]
    raws: tuple[str, ...]

    def step_at(self, t: float) -> int:
        index = 0
        for i, start in enumerate(self.starts):
            if start <= t:
                index = i
        return index

    def raw_at(self, t: float) -> str:
        return self.raws[self.step_at(t)]

    @property
    def terminal(self) -> bool:
        return phase_of(self.raws[-1]).is_terminal


def phase_of(raw: str) -> Phase:
    return _PHASE_OF_PREFIX[raw.rstrip("0123456789")]


def index_of(raw: str) -> int:
    return int(raw[len(raw.rstrip("0123456789")) :])


@st.composite
def lives(draw: st.DrawFn, kinds: Sequence[str] = ("quick", "slow", "other")) -> Life:
    kind = draw(st.sampled_from(kinds))
    words = ["queued"] * draw(st.integers(1, 2))
    words += draw(st.lists(st.sampled_from(["busy", "busy", "odd"]), max_size=3))
    if draw(st.integers(0, 9)) < 8:
        words.append(draw(st.sampled_from(["done", "failed", "cancelled"])))
    scale = {"quick": 2.0, "slow": 40.0}.get(kind, 10.0)
    starts = [0.0]
    for _ in words[1:]:
        starts.append(starts[-1] + draw(st.floats(0.05, 1.0)) * scale)
    raws = tuple(f"{word}{i}" for i, word in enumerate(words))
    return Life(kind=kind, starts=tuple(starts), raws=raws)


# -- the simulation ---------------------------------------------------------------------------


@attrs.define
class Record:
    """What happened to one target during a simulation."""

    polls: list[float] = attrs.Factory(list)
    due_at_poll: list[float] = attrs.Factory(list)
    delivered: list[tuple[Phase | None, str]] = attrs.Factory(list)  # (previous, raw)
    stalls: list[float] = attrs.Factory(list)
    changes: list[float] = attrs.Factory(list)
    final_at: float | None = None
    timed_out_at: float | None = None
    ended: bool = False


def simulate(
    lifecycles: Sequence[Life],
    policy: PollPolicy,
    *,
    token_gap: float,
    failures: frozenset[tuple[int, int]] = frozenset(),
    horizon: float = 50_000.0,
    seed: int = 0,
    until_all_end: bool = False,
) -> tuple[Scheduler, list[Record]]:
    """Drive a scheduler like the watch does: wait for a due target and a token, then poll.

    ``failures`` holds ``(target, poll number)`` pairs whose poll fails with a transient error.
    Polls take no time; one token is issued every ``token_gap`` seconds.  ``until_all_end``:
    keep going until every target ended (they must have deadlines).
    """
    sched = Scheduler(rng=random.Random(seed))
    states = [
        sched.add(f"t{i}", kind=life.kind, group="g", policy=policy, now=0.0)
        for i, life in enumerate(lifecycles)
    ]
    index = {state.key: i for i, state in enumerate(states)}
    records = [Record() for _ in lifecycles]
    now = 0.0
    next_token = 0.0

    # Run until every target has ended, except those whose lifecycle never ends (a real watch
    # would poll them forever): those are done once their last status has been delivered.
    def settled(life: Life, record: Record) -> bool:
        if record.ended:
            return True
        if until_all_end or life.terminal or not record.delivered:
            return False
        return record.delivered[-1][1] == life.raws[-1]

    while not all(settled(life, r) for life, r in zip(lifecycles, records, strict=True)):
        due = sched.next_due("g")
        deadline = sched.next_deadline()
        poll_at = None if due is None else max(due, next_token)
        moments = [m for m in (deadline, poll_at) if m is not None]
        if not moments:
            break
        now = max(now, min(moments))
        assert now <= horizon, "simulation ran past its horizon: something starves"
        for state in sched.expire(now):
            record = records[index[state.key]]
            assert not state.in_flight
            assert not record.ended
            record.timed_out_at = now
            record.ended = True
        due = sched.next_due("g")
        if due is None or due > now or next_token > now:
            continue
        polled = sched.select("g", now)
        assert polled is not None
        i = index[polled.key]
        record = records[i]
        assert not record.ended, "a finished target was polled again"
        assert not polled.done
        record.polls.append(now)
        record.due_at_poll.append(polled.when)
        next_token = now + token_gap
        if (i, len(record.polls)) in failures:
            outcome = sched.fail(polled, now, retryable=True)
        else:
            raw = lifecycles[i].raw_at(now)
            outcome = sched.observe(polled, now, phase_of(raw), raw)
            if outcome.changed:
                record.delivered.append((outcome.previous, raw))
                record.changes.append(now)
        if outcome.stalled:
            record.stalls.append(now)
        if outcome.final:
            record.final_at = now
            record.ended = True
        sched.release(polled, now)
    return sched, records


policies = st.builds(
    PollPolicy,
    first_delay=st.floats(0, 5),
    interval=st.floats(0.2, 5),
    backoff=st.floats(1, 3),
    max_interval=st.floats(5, 60),
    jitter=st.floats(0, 0.5),
    reset_on_change=st.booleans(),
    adaptive=st.booleans(),
    stall_after=st.none() | st.floats(5, 100),
)

_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_delivery(life: Life, record: Record) -> None:
    """Every delivered status is a new step, in lifecycle order, chained by phase."""
    indices = [index_of(raw) for _, raw in record.delivered]
    assert indices == sorted(set(indices)), f"out of order or repeated: {record.delivered}"
    previous: Phase | None = None
    for reported_previous, raw in record.delivered:
        assert reported_previous == previous
        previous = phase_of(raw)


# -- properties ---------------------------------------------------------------------------------


@_settings
@given(
    lifecycles=st.lists(lives(), min_size=1, max_size=25),
    policy=policies,
    token_gap=st.floats(0.01, 2.0),
    seed=st.integers(0, 2**16),
)
def test_each_change_delivered_once_in_order_and_every_end_seen(
    lifecycles: list[Life], policy: PollPolicy, token_gap: float, seed: int
) -> None:
    _, records = simulate(lifecycles, policy, token_gap=token_gap, seed=seed)
    for life, record in zip(lifecycles, records, strict=True):
        _check_delivery(life, record)
        assert record.delivered, "a target was never seen"
        assert record.delivered[0][0] is None, "the first transition is from None"
        if life.terminal:
            # No deadline here: a target that finishes is always seen finishing, exactly once.
            assert record.final_at is not None
            assert record.delivered[-1][1] == life.raws[-1]
            assert record.polls[-1] == record.final_at
            assert record.final_at >= life.starts[-1]


@_settings
@given(
    lifecycles=st.lists(lives(), min_size=1, max_size=25),
    policy=policies,
    token_gap=st.floats(0.01, 2.0),
    seed=st.integers(0, 2**16),
)
def test_never_polls_faster_than_the_policy_allows(
    lifecycles: list[Life], policy: PollPolicy, token_gap: float, seed: int
) -> None:
    _, records = simulate(lifecycles, policy, token_gap=token_gap, seed=seed)
    shortest = policy.interval * (1 - policy.jitter) - 1e-9
    for record in records:
        assert record.polls[0] >= policy.first_delay - 1e-9
        for before, after in zip(record.polls, record.polls[1:], strict=False):
            assert after - before >= shortest
        # A target is never polled before it is due (a token is only taken for a due one).
        for polled, due in zip(record.polls, record.due_at_poll, strict=True):
            assert polled >= due - 1e-9


@_settings
@given(
    lifecycles=st.lists(lives(), min_size=2, max_size=30),
    policy=policies,
    token_gap=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
)
def test_no_target_starves(
    lifecycles: list[Life], policy: PollPolicy, token_gap: float, seed: int
) -> None:
    """Lateness (time between being due and being polled) stays within the backlog bound.

    With ``n`` targets and one token every ``token_gap`` seconds, one round of everybody costs
    ``n * token_gap``; ageing lets a lane head wait a bounded number of rounds.
    """
    _, records = simulate(lifecycles, policy, token_gap=token_gap, seed=seed)
    n = len(lifecycles)
    bound = 8 * n * token_gap + 1.0
    for record in records:
        for polled, due in zip(record.polls, record.due_at_poll, strict=True):
            assert polled - due <= bound


@_settings
@given(
    lifecycles=st.lists(lives(), min_size=1, max_size=20),
    policy=policies,
    timeout=st.floats(1, 60),
    watch_rate=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**16),
)
def test_deadlines_are_honoured(
    lifecycles: list[Life], policy: PollPolicy, timeout: float, watch_rate: float, seed: int
) -> None:
    policy = attrs.evolve(policy, target_timeout=timeout)
    _, records = simulate(lifecycles, policy, token_gap=watch_rate, seed=seed, until_all_end=True)
    for record in records:
        assert record.ended
        assert all(t < timeout for t in record.polls), "polled at or after its deadline"
        if record.timed_out_at is not None:
            assert record.timed_out_at == timeout, "timed out at the wrong moment"
            assert record.final_at is None
        else:
            assert record.final_at is not None
            assert record.final_at < timeout


@_settings
@given(
    lifecycles=st.lists(lives(), min_size=1, max_size=15),
    policy=policies,
    token_gap=st.floats(0.05, 1.0),
    fail_every=st.integers(2, 5),
    seed=st.integers(0, 2**16),
)
def test_transient_failures_are_retried_and_change_nothing(
    lifecycles: list[Life], policy: PollPolicy, token_gap: float, fail_every: int, seed: int
) -> None:
    failures = frozenset(
        (i, n) for i in range(len(lifecycles)) for n in range(1, 400) if n % fail_every == 0
    )
    _, records = simulate(lifecycles, policy, token_gap=token_gap, failures=failures, seed=seed)
    for life, record in zip(lifecycles, records, strict=True):
        _check_delivery(life, record)
        if life.terminal:
            assert record.delivered[-1][1] == life.raws[-1]


@_settings
@given(
    lifecycles=st.lists(lives(), min_size=1, max_size=15),
    stall_after=st.floats(2, 50),
    token_gap=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
)
def test_stall_reported_once_per_stall(
    lifecycles: list[Life], stall_after: float, token_gap: float, seed: int
) -> None:
    policy = PollPolicy(stall_after=stall_after)
    _, records = simulate(lifecycles, policy, token_gap=token_gap, seed=seed)
    for record in records:
        for stall in record.stalls:
            last_change = max(c for c in record.changes if c <= stall)
            assert stall - last_change >= stall_after
        # Between two consecutive changes (and after the last), at most one stall.
        bounds = [*record.changes, math.inf]
        for start, end in itertools.pairwise(bounds):
            assert sum(1 for s in record.stalls if start <= s < end) <= 1


# -- the budget-aware choices ---------------------------------------------------------------------


def _trained(sched: Scheduler, kind: str, phase: Phase | None, durations: Sequence[float]) -> None:
    model = sched.model(kind, phase)
    for d in durations:
        model.add_event(d, d)


def test_within_a_kind_the_least_recently_polled_goes_first_whatever_its_phase() -> None:
    """Same kind: round robin (the phase only sets floors); the phase weight works across kinds."""
    sched = Scheduler(rng=random.Random(1))
    policy = PollPolicy(jitter=0.0, adaptive=False)
    pending = sched.add("p", kind="k", group="g", policy=policy, now=0.0)
    running = sched.add("r", kind="k", group="g", policy=policy, now=0.0)
    for state, phase, at in ((pending, Phase.PENDING, 0.0), (running, Phase.RUNNING, 0.5)):
        assert sched.select("g", at) is state
        sched.observe(state, at, phase, phase.value)
        sched.release(state, at)
    assert sched.select("g", 30.0) is pending  # polled longest ago
    other = Scheduler(rng=random.Random(1))
    pending = other.add("p", kind="a", group="g", policy=policy, now=0.0)
    running = other.add("r", kind="b", group="g", policy=policy, now=0.0)
    for state, phase, at in ((pending, Phase.PENDING, 0.0), (running, Phase.RUNNING, 0.5)):
        assert other.select("g", at) is state
        other.observe(state, at, phase, phase.value)
        other.release(state, at)
    assert other.select("g", 30.0) is running  # different kinds: the phase weight decides


def test_a_pending_target_is_judged_by_its_chance_of_having_finished() -> None:
    """A poll is worth most where a finish is likely, not where a pending phase has ended.

    Pending phases of this kind last about 2 s and whole operations about 30 s.  ``old``
    started at 0 s and was last seen pending at 25 s; ``young`` started at 10 s and was seen
    pending at 11 s.  At 35 s only ``old`` can have finished, though ``young``'s pending phase
    has almost surely ended, and ended longer ago than ``old``'s can have.
    """
    sched = Scheduler(rng=random.Random(1))
    _trained(sched, "k", Phase.PENDING, [2.0, 2.1, 2.2])
    _trained(sched, "k", None, [30.0, 30.5, 31.0])
    policy = PollPolicy(first_delay=25, interval=1, jitter=0)
    old = sched.add("o", kind="k", group="g", policy=policy, now=0)
    policy = PollPolicy(interval=14, jitter=0)
    young = sched.add("y", kind="k", group="g", policy=policy, now=10)
    for state, seen_at in ((young, 11.0), (old, 25.0)):
        assert sched.select("g", seen_at) is state
        sched.observe(state, seen_at, Phase.PENDING, "Pending")
        sched.release(state, seen_at)
    # Neither can have finished before it joined plus the shortest operation seen (30 s);
    # each is held until a finish could have gone unseen for its interval since then.
    assert (young.when, old.when) == (40.0 + 14.0, 30.0 + 1.0)
    assert sched.score(old, 35.0) > sched.score(young, 35.0)
    assert sched.select("g", 35.0) is old


def test_running_targets_are_judged_by_the_running_model_once_it_is_trained() -> None:
    sched = Scheduler(rng=random.Random(1))
    policy = PollPolicy(jitter=0.0)
    _trained(sched, "k", None, [30.0, 30.5, 31.0])
    state = sched.add("r", kind="k", group="g", policy=policy, now=0.0)
    sched.select("g", 0.0)
    sched.observe(state, 0.0, Phase.PENDING, "Pending")
    sched.release(state, 0.0)
    sched.select("g", 5.0)
    sched.observe(state, 5.0, Phase.RUNNING, "Running")  # the run began in (0, 5]
    sched.release(state, 5.0)
    # Untrained RUNNING model: time to finish, from the join-to-finish model.
    total = sched.model("k", None)
    # Joined at 0, and no operation of the kind took under 30 s: one interval past that.
    assert state.when == 31.0
    assert sched.score(state, 35.0) == pytest.approx(
        total.expected_undetected(35.0, 5.0) + AGEING * (35.0 - state.when)
    )
    # Once runs of this kind have been seen to end, the run's own age decides.
    _trained(sched, "k", Phase.RUNNING, [4.0, 5.0, 6.0])
    running = sched.model("k", Phase.RUNNING)
    assert sched.score(state, 35.0) == pytest.approx(
        running.expected_undetected(32.5, 2.5) + AGEING * (35.0 - state.when)
    )


def test_learned_quick_kind_goes_before_an_unknown_slow_one() -> None:
    """The mixed-population win: never-seen quick tasks that have probably finished go first."""
    sched = Scheduler(rng=random.Random(1))
    policy = PollPolicy()
    # Slow ones were added first, so plain earliest-due-first would serve them first.
    slow = [sched.add(f"s{i}", kind="slow", group="g", policy=policy, now=0.0) for i in range(5)]
    quick = [sched.add(f"q{i}", kind="quick", group="g", policy=policy, now=0.0) for i in range(5)]
    _trained(sched, "quick", None, [1.0, 1.5, 2.0, 2.5, 3.0])
    # Slow operations seen still going at 6 s: no evidence they can be done.
    for i in range(5):
        sched.model("slow", None).add_censored(6.0 + i)
    chosen = sched.select("g", 6.0)
    assert chosen is not None
    assert chosen.kind == "quick"
    assert chosen in quick
    assert chosen not in slow


def test_no_poll_before_the_shortest_duration_seen() -> None:
    sched = Scheduler(rng=random.Random(1))
    policy = PollPolicy(interval=1.0, jitter=0.0)
    _trained(sched, "export", Phase.RUNNING, [20.0, 25.0, 30.0, 40.0])
    state = sched.add("e", kind="export", group="g", policy=policy, now=0.0)
    assert sched.select("g", 0.0) is state
    sched.observe(state, 0.0, Phase.PENDING, "Pending")
    sched.release(state, 0.0)
    assert sched.select("g", 1.0) is state
    sched.observe(state, 1.0, Phase.RUNNING, "InProgress")  # running began in (0, 1]
    due = sched.release(state, 1.0)
    assert due is not None
    assert due >= 0.0 + 20.0


def test_a_slightly_lower_record_low_does_not_rekey_and_polls_never_precede_it() -> None:
    sched = Scheduler(rng=random.Random(1))
    policy = PollPolicy(interval=1.0, jitter=0.0)
    _trained(sched, "export", Phase.RUNNING, [50.0, 60.0, 70.0])
    state = sched.add("e", kind="export", group="g", policy=policy, now=0.0)
    sched.select("g", 0.0)
    sched.observe(state, 0.0, Phase.RUNNING, "InProgress")
    sched.release(state, 0.0)
    model = sched.model("export", Phase.RUNNING)
    version = model.floor_version
    low = 50.0 * (1 - REKEY_FRACTION / 2)
    assert not model.add_event(low, low)
    assert model.floor == pytest.approx(low)  # the floor itself is exact
    assert model.floor_version == version
    assert sched.next_due("g") == pytest.approx(51.0)  # waits a little longer, never less
    assert model.add_event(40.0, 40.0)
    assert sched.next_due("g") == pytest.approx(41.0)


def test_a_new_record_low_rekeys_waiting_targets() -> None:
    sched = Scheduler(rng=random.Random(1))
    policy = PollPolicy(interval=1.0, jitter=0.0)
    _trained(sched, "export", Phase.RUNNING, [50.0, 60.0, 70.0])
    state = sched.add("e", kind="export", group="g", policy=policy, now=0.0)
    sched.select("g", 0.0)
    sched.observe(state, 0.0, Phase.RUNNING, "InProgress")
    assert sched.release(state, 0.0) == pytest.approx(51.0)  # one interval past the floor
    assert sched.next_due("g") == pytest.approx(51.0)
    sched.model("export", Phase.RUNNING).add_event(10.0, 10.0)
    assert sched.next_due("g") == pytest.approx(11.0)


def test_token_with_nothing_due_goes_to_the_earliest() -> None:
    sched = Scheduler(rng=random.Random(1))
    later = sched.add("a", kind="k", group="g", policy=PollPolicy(first_delay=9.0), now=0.0)
    sooner = sched.add("b", kind="k", group="g", policy=PollPolicy(first_delay=5.0), now=0.0)
    assert sched.select("g", 0.0) is sooner
    assert sched.select("g", 0.0) is later
    assert sched.select("g", 0.0) is None


def test_groups_are_independent() -> None:
    sched = Scheduler()
    a = sched.add("a", kind="k", group="g1", policy=PollPolicy(), now=0.0)
    b = sched.add("b", kind="k", group="g2", policy=PollPolicy(), now=0.0)
    assert sched.select("g2", 0.0) is b
    assert sched.select("g1", 0.0) is a
    assert sched.next_due("g3") is None
    assert sched.select("g3", 0.0) is None


def test_adaptive_polls_sooner_near_known_durations() -> None:
    def interval_at(age: float, adaptive: bool) -> float:
        sched = Scheduler(rng=random.Random(1))
        policy = PollPolicy(interval=1.0, backoff=2.0, max_interval=30.0, jitter=0.0)
        policy = attrs.evolve(policy, adaptive=adaptive)
        _trained(sched, "x", Phase.RUNNING, [40.0, 41.0, 42.0, 43.0, 44.0])
        state = sched.add("t", kind="x", group="g", policy=policy, now=0.0)
        sched.select("g", 0.0)
        sched.observe(state, 0.0, Phase.RUNNING, "r")
        sched.release(state, 0.0)
        for _ in range(6):  # a long streak: plain backoff is at its cap by now
            sched.select("g", age)
            sched.observe(state, age, Phase.RUNNING, "r")
        due = sched.release(state, age)
        assert due is not None
        return due - age

    assert interval_at(38.0, adaptive=False) == 30.0
    assert interval_at(38.0, adaptive=True) < 10.0


# -- lifecycle and resume -------------------------------------------------------------------------


def test_terminal_target_is_never_queued_again() -> None:
    sched = Scheduler()
    state = sched.add("t", kind="k", group="g", policy=PollPolicy(), now=0.0)
    sched.select("g", 0.0)
    outcome = sched.observe(state, 0.0, Phase.SUCCEEDED, "Completed")
    assert outcome.changed
    assert outcome.final
    assert outcome.previous is None
    assert sched.release(state, 0.0) is None
    assert sched.next_due("g") is None
    assert sched.select("g", 100.0) is None


def test_raw_only_change_is_a_change() -> None:
    sched = Scheduler()
    state = sched.add("t", kind="k", group="g", policy=PollPolicy(), now=0.0)
    sched.select("g", 0.0)
    sched.observe(state, 0.0, Phase.RUNNING, "InProgress")
    sched.release(state, 0.0)
    sched.select("g", 5.0)
    outcome = sched.observe(state, 5.0, Phase.RUNNING, "Processing")
    assert outcome.changed
    assert outcome.previous is Phase.RUNNING


def test_restored_target_reports_only_a_different_status() -> None:
    sched = Scheduler()
    same = sched.add(
        "a", kind="k", group="g", policy=PollPolicy(), now=0.0,
        phase=Phase.RUNNING, raw="InProgress", polls=3, restored=True,
    )  # fmt: skip
    moved = sched.add(
        "b", kind="k", group="g", policy=PollPolicy(), now=0.0,
        phase=Phase.RUNNING, raw="InProgress", polls=3, restored=True,
    )  # fmt: skip
    assert sched.select("g", 0.0) is same
    assert same.polls == 4
    assert not sched.observe(same, 0.0, Phase.RUNNING, "InProgress").changed
    assert sched.select("g", 0.0) is moved
    outcome = sched.observe(moved, 0.0, Phase.SUCCEEDED, "Completed")
    assert outcome.changed
    assert outcome.previous is Phase.RUNNING
    assert outcome.final
    # Nothing is learned from a phase whose start nobody saw.
    assert sched.model("k", Phase.RUNNING).n_events == 0
    assert sched.model("k", None).n_events == 0


def test_removed_or_expired_while_in_flight_is_ignored() -> None:
    sched = Scheduler()
    policy = PollPolicy(target_timeout=10.0)
    a = sched.add("a", kind="k", group="g", policy=policy, now=0.0)
    b = sched.add("b", kind="k", group="g", policy=policy, now=0.0)
    assert sched.select("g", 0.0) is a
    assert sched.select("g", 0.0) is b
    sched.remove(a)
    assert sched.observe(a, 1.0, Phase.RUNNING, "r").ignored
    assert sched.release(a, 1.0) is None
    expired = sched.expire(10.0)
    assert expired == [b]
    assert b.expired
    assert b.in_flight
    assert sched.fail(b, 11.0, retryable=True).ignored
    assert sched.release(b, 11.0) is None
    assert sched.next_deadline() is None


def test_non_retryable_failure_ends_the_target() -> None:
    sched = Scheduler()
    state = sched.add("t", kind="k", group="g", policy=PollPolicy(), now=0.0)
    sched.select("g", 0.0)
    outcome = sched.fail(state, 0.0, retryable=False)
    assert outcome.final
    assert state.done
    assert sched.release(state, 0.0) is None


def test_retry_after_is_respected() -> None:
    sched = Scheduler()
    state = sched.add("t", kind="k", group="g", policy=PollPolicy(jitter=0.0), now=0.0)
    sched.select("g", 0.0)
    sched.fail(state, 0.0, retryable=True, retry_after=42.0)
    assert sched.release(state, 0.0) == pytest.approx(42.0)


def test_expire_all() -> None:
    sched = Scheduler()
    states = [
        sched.add(f"t{i}", kind="k", group="g", policy=PollPolicy(), now=0.0) for i in range(3)
    ]
    sched.finish(states[0])
    assert sched.expire_all(states) == states[1:]
    assert sched.next_due("g") is None


def test_state_is_small() -> None:
    """10,000 targets must fit comfortably: the per-target record has slots, no dict."""
    state = Scheduler().add("t", kind="k", group="g", policy=PollPolicy(), now=0.0)
    assert not hasattr(state, "__dict__")


# -- the duration model --------------------------------------------------------------------------


def test_model_prior_before_any_data() -> None:
    model = DurationModel()
    assert model.survival(0.0) == 1.0
    assert 0 < model.survival(60.0) < 1
    assert not model.trained
    assert model.floor is None


def test_model_censored_only_means_nothing_finished_yet() -> None:
    model = DurationModel()
    for age in (5.0, 6.0, 7.0, 8.0):
        model.add_censored(age)
    assert model.survival(4.0) == pytest.approx(1.0)
    assert model.expected_undetected(4.0, 0.0) == pytest.approx(0.0)


def test_model_learns_a_distribution() -> None:
    model = DurationModel()
    for d in (10.0, 12.0, 14.0, 16.0, 18.0, 20.0):
        model.add_event(d, d)
    assert model.trained
    assert model.floor == pytest.approx(10.0)
    assert model.survival(5.0) == pytest.approx(1.0)
    assert model.survival(30.0) < 0.05
    assert model.change_chance(25.0, 0.0) > 0.9
    assert model.expected_undetected(30.0, 0.0) > model.expected_undetected(15.0, 0.0)


def test_imprecise_durations_do_not_set_the_floor() -> None:
    model = DurationModel()
    for _ in range(MIN_SAMPLES + 2):
        model.add_event(0.0, 80.0)  # first seen finished, 80 s after joining
    assert model.trained
    assert model.floor is None


def test_censored_entries_move_and_leave() -> None:
    model = DurationModel()
    bucket = model.add_censored(1.0)
    bucket = model.move_censored(bucket, 50.0)
    assert sum(model.censored) == model.n_censored == 1
    model.remove_censored(bucket)
    assert sum(model.censored) == model.n_censored == 0
    assert model.move_censored(-1, 3.0) >= 0  # an operation's first entry
    assert model.n_censored == 1


def test_model_takes_any_age() -> None:
    model = DurationModel()
    assert model.add_censored(1e12) == len(model.censored) - 1  # the far tail: the last bucket
    model.add_event(1e9, 2e9)
    assert model.add_censored(-1.0) == 0
    assert 0.0 <= model.survival(1e10) <= 1.0
    wait = model.time_to_chance(1e9, 0.5)
    assert 0.0 < wait < math.inf
    assert model.change_chance(1e9 + wait, 1e9) == pytest.approx(0.5)


def _eager(events: Sequence[tuple[float, float]], censored: Sequence[float]) -> DurationModel:
    model = DurationModel()
    for lo, hi in events:
        model.add_event(lo, hi)
    for age in censored:
        model.add_censored(age)
    model.refresh()
    return model


def test_a_small_model_is_always_exact() -> None:
    """Below 1 / STALE_FRACTION entries every change is seen by the next read."""
    model = DurationModel()
    events: list[tuple[float, float]] = []
    censored: list[float] = []
    for i in range(int(1 / STALE_FRACTION) - 1):
        if i % 3 == 0:
            events.append((5.0 + i, 6.0 + i))
            model.add_event(*events[-1])
        else:
            censored.append(2.0 + i)
            model.add_censored(censored[-1])
        eager = _eager(events, censored)
        for age in (1.0, 7.0, 30.0, 90.0):
            assert model.survival(age) == eager.survival(age)


def test_a_large_model_rebuilds_rarely_and_stays_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of censored entries move on every poll; the curve is rebuilt now and then."""
    rebuilds = 0
    rebuild = DurationModel._refresh

    def counting(self: DurationModel) -> None:
        nonlocal rebuilds
        rebuilds += 1
        rebuild(self)

    monkeypatch.setattr(DurationModel, "_refresh", counting)
    rng = random.Random(3)
    events = [(d, d + 1.0) for d in (rng.uniform(10, 60) for _ in range(200))]
    ages = [rng.uniform(0, 40) for _ in range(5_000)]
    model = DurationModel()
    for lo, hi in events:
        model.add_event(lo, hi)
    buckets = [model.add_censored(age) for age in ages]
    model.refresh()
    rebuilds = 0
    moves = 2_000
    for i in range(moves):
        ages[i] += 5.0
        buckets[i] = model.move_censored(buckets[i], ages[i])
        model.survival(20.0)  # read after every change, as the scheduler does
    # One rebuild per STALE_FRACTION of the entries moved, not one per move.
    assert 0 < rebuilds <= moves / (STALE_FRACTION * len(ages)) + 1
    eager = _eager(events, ages)
    for age in (5.0, 20.0, 40.0, 70.0):
        assert model.survival(age) == pytest.approx(eager.survival(age), abs=0.02)
    model.refresh()
    for age in (5.0, 20.0, 40.0, 70.0):
        assert model.survival(age) == pytest.approx(eager.survival(age), abs=1e-12)


_durations = st.lists(
    st.tuples(st.floats(0, 500), st.floats(0, 200)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=30,
)


@given(events=_durations, censored=st.lists(st.floats(0, 800), max_size=30))
def test_model_curves_are_well_formed(
    events: list[tuple[float, float]], censored: list[float]
) -> None:
    model = DurationModel()
    for lo, hi in events:
        model.add_event(lo, hi)
    for age in censored:
        model.add_censored(age)
    assert math.isclose(sum(model.events), len(events), rel_tol=1e-6, abs_tol=1e-6)
    ages = [0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 1e5]
    values = [model.survival(a) for a in ages]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(values))
    for since, age in ((0.0, 10.0), (5.0, 50.0), (100.0, 101.0), (900.0, 2000.0)):
        undetected = model.expected_undetected(age, since)
        assert -1e-9 <= undetected <= age - since + 1e-9
        assert 0.0 <= model.change_chance(age, since) <= 1.0


@given(
    events=_durations.filter(bool),
    since=st.floats(0, 600),
    chance=st.floats(0.01, 0.9),
)
def test_time_to_chance_inverts_change_chance(
    events: list[tuple[float, float]], since: float, chance: float
) -> None:
    model = DurationModel()
    for lo, hi in events:
        model.add_event(lo, hi)
    wait = model.time_to_chance(since, chance)
    assume(math.isfinite(wait))
    assert wait >= 0
    assert model.change_chance(since + wait, since) >= chance - 1e-6


def test_reschedule_moves_a_waiting_target_and_ignores_the_others() -> None:
    sched = Scheduler(rng=random.Random(0))
    policy = PollPolicy(interval=1.0, max_interval=30.0, jitter=0.0, adaptive=False)
    waiting = sched.add("a", kind="k", group="g", policy=policy, now=0.0)
    other = sched.add("b", kind="k", group="g", policy=policy, now=0.0)
    for state in (waiting, other):
        sched.reschedule(state, 0.0)
    chosen = sched.select("g", 0.0)
    assert chosen is not None
    for _ in range(4):  # four failures in a row: backed off to 1.5 ** 4 s
        sched.fail(chosen, 0.0, retryable=True)
    assert sched.release(chosen, 0.0) == pytest.approx(1.5**4)
    sched.reschedule(chosen, 0.5)
    assert chosen.when == 0.5
    assert sched.next_due("g") == 0.0  # the other one is still due first
    assert sched.select("g", 0.6) is other
    assert sched.select("g", 0.6) is chosen
    # In flight, finished or removed: nothing happens.
    sched.reschedule(chosen, 0.0)
    assert chosen.in_flight
    assert sched.next_due("g") is None
    sched.remove(other)
    sched.reschedule(other, 0.0)
    assert sched.next_due("g") is None
