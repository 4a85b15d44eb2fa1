"""The Redis limiter's chassis without Redis: replicas of one budget fed one log agree, and
several processes sharing a budget spend it as one process would, on every server policy."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_sim import Log, simulate_shared
from policy_sim import simulate

from d360_async._core._ratelimit._budget import Budget
from d360_async._core._ratelimit._headers import RateLimitState
from d360_async._core._ratelimit._ledger import (
    ATTEMPT,
    Replica,
    encode_record,
    encode_refund,
)
from d360_async.testing import FakeRateLimit


def replica(timeout: float = 300.0) -> Replica:
    return Replica(lambda now: Budget(10, 1.0, now=now), in_flight_timeout=timeout)


def feed(rep: Replica, lines: list[str], start: int = 0, mine: int | None = None) -> object:
    return rep.ingest("e", 0, lines[start:], asked_from=start, asked_epoch=rep.epoch, mine=mine)


# -- the event format ---------------------------------------------------------------------

optional_int = st.none() | st.integers(min_value=0, max_value=10**6)
optional_float = st.none() | st.floats(min_value=0.0, max_value=1e6, allow_nan=False)


@given(
    status=st.none() | st.integers(min_value=100, max_value=599),
    limit=optional_int,
    remaining=optional_int,
    reset_after=optional_float,
    retry_after=optional_float,
    window=optional_float,
    date=optional_float,
    reset_is_epoch=st.booleans(),
    retry_is_date=st.booleans(),
    with_state=st.booleans(),
)
def test_a_record_carries_every_header_fact(
    status: int | None,
    limit: int | None,
    remaining: int | None,
    reset_after: float | None,
    retry_after: float | None,
    window: float | None,
    date: float | None,
    reset_is_epoch: bool,
    retry_is_date: bool,
    with_state: bool,
) -> None:
    state = (
        RateLimitState(
            limit=limit,
            remaining=remaining,
            reset_after=reset_after,
            retry_after=retry_after,
            window=window,
            date=date,
            reset_is_epoch=reset_is_epoch,
            retry_is_date=retry_is_date,
        )
        if with_state
        else None
    )
    seen: list[tuple[object, object]] = []

    class Spy(Budget):
        __slots__ = ()

        def record(self, status, state, *, now, sent, seq):  # type: ignore[no-untyped-def, override]
            seen.append((status, state))
            super().record(status, state, now=now, sent=sent, seq=seq)

    rep = Replica(lambda now: Spy(10, 1.0, now=now), in_flight_timeout=300.0)
    feed(rep, ["1.0 A", "1.5 " + encode_record("e:0", status, state)])
    assert seen == [(status, state)]
    if state is not None:
        got = seen[0][1]
        assert isinstance(got, RateLimitState)
        assert (got.reset_is_epoch, got.retry_is_date, got.date) == (
            reset_is_epoch,
            retry_is_date,
            date,
        )


@pytest.mark.parametrize(
    "line",
    [
        "",
        "garbage",
        "x A",
        "nan A",
        "inf A",
        "1.0 A extra",
        "1.0 Z",
        "1.0 R",
        "1.0 R e:0 200 1 2",
        "1.0 F",
        "1.0 R e:0 abc -",
        "1.0 R e:0 200 1 2 3 4 5 6",
    ],
)
def test_lines_not_written_by_the_library_are_skipped_alike(line: str) -> None:
    first, second = replica(), replica()
    lines = ["1.0 A", line, "2.0 A"]
    feed(first, lines)
    for index in range(len(lines)):  # the other reads them one at a time
        feed(second, lines[: index + 1], start=index)
    assert first.skipped == second.skipped == 1
    assert first.next_index == second.next_index == 3
    assert first.budget is not None
    assert second.budget is not None
    assert first.budget.seq == second.budget.seq == 2


# -- replicas agree ------------------------------------------------------------------------


def random_log(rng: random.Random, n: int) -> list[str]:
    lines: list[str] = []
    granted: list[str] = []
    t = 1000.0
    for index in range(n):
        t += rng.expovariate(20.0)
        roll = rng.random()
        if roll < 0.6 or not granted:
            lines.append(f"{t!r} {ATTEMPT}")
            granted.append(f"e:{index}")  # whether it was granted: the replicas decide
        elif roll < 0.95:
            take = granted.pop(rng.randrange(len(granted)))
            state = rng.choice(
                [
                    None,
                    RateLimitState(remaining=rng.randint(0, 9)),
                    RateLimitState(limit=10, remaining=rng.randint(0, 9), reset_after=0.7),
                    RateLimitState(retry_after=rng.uniform(0, 2)),
                ]
            )
            status = rng.choice([200, 200, 200, 429, 503, None])
            lines.append(f"{t!r} " + encode_record(take, status, state))
        else:
            lines.append(f"{t!r} " + encode_refund(granted.pop(rng.randrange(len(granted)))))
    return lines


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 400))
def test_replicas_fed_one_log_agree_however_they_read_it(seed: int, n: int) -> None:
    rng = random.Random(seed)
    lines = random_log(rng, n)
    whole, pieces, readers = replica(timeout=5.0), replica(timeout=5.0), replica(timeout=5.0)
    feed(whole, lines)
    index = 0
    while index < len(lines):  # reads of random sizes, some overlapping what was applied
        end = min(len(lines), index + rng.randint(1, 30))
        start = max(0, index - rng.randint(0, 3))
        feed(pieces, lines[:end], start=start)
        # A reader that looks between events (reads change nothing).
        readers.wait_time(float(lines[end - 1].split(" ")[0]) + rng.uniform(0, 2))
        feed(readers, lines[:end], start=index)
        index = end
    states = []
    for rep in (whole, pieces, readers):
        assert rep.budget is not None
        b = rep.budget
        states.append((b.seq, b.credits, b.tokens, b.paused_until, b.rate, rep.unanswered))
    assert states[0] == states[1] == states[2]


def test_my_attempt_is_found_even_when_an_overlapping_read_applied_it() -> None:
    rep = replica()
    lines = ["1.0 A", "1.1 A"]
    # A read sent after mine came back first and applied my attempt (index 0).
    assert feed(rep, lines, start=0) is None
    take = rep.ingest("e", 0, lines[:1], asked_from=0, asked_epoch="e", mine=0)
    assert take is not None
    assert (take.id, take.seq) == ("e:0", 1)


def test_a_new_log_is_followed_from_its_start_and_a_lagging_replica_counts_the_loss() -> None:
    rep = replica()
    feed(rep, ["1.0 A", "1.1 A", "1.2 A"])
    assert rep.next_index == 3
    # The key expired and was created again: another epoch, from index 0.
    rep.ingest("f", 0, ["2.0 A"], asked_from=3, asked_epoch="e", mine=0)
    assert (rep.epoch, rep.next_index) == ("f", 1)
    # The log was trimmed past where this replica stood.
    rep.ingest("f", 10, ["3.0 A"], asked_from=1, asked_epoch="f")
    assert (rep.next_index, rep.lost) == (11, 9)


def test_an_admission_never_answered_is_let_go_at_the_same_event_everywhere() -> None:
    first, second = replica(timeout=10.0), replica(timeout=10.0)
    lines = ["100.0 A", "105.0 A", "111.0 A"]
    feed(first, lines)
    feed(second, lines[:2])
    assert second.unanswered == 2
    feed(second, lines, start=2)
    # At 111 s the admission of 100 s is more than 10 s old: no longer counted as in flight.
    assert first.unanswered == second.unanswered == 2  # 105 s and 111 s
    assert first.budget is not None
    assert second.budget is not None
    assert first.budget.seq == second.budget.seq == 3


def test_a_refund_gives_the_credit_back_in_every_replica() -> None:
    rep = replica()
    feed(rep, ["1.0 A", "1.0 " + encode_record("e:0", 200, RateLimitState(remaining=1))])
    feed(rep, ["1.0 A", "1.0 R", "3.0 A"], start=2)  # the last credit is taken...
    assert rep.budget is not None
    assert rep.budget.credits == 0.0
    lines = ["1.0 A", "1.0 R", "3.0 A", "3.1 " + encode_refund("e:2")]
    feed(rep, lines, start=3)
    assert rep.budget.credits == 1.0  # ... and given back


def test_reading_between_events_does_not_move_the_pacing() -> None:
    rep = replica()
    feed(rep, ["1000.0 A"])
    first = rep.wait_time(1000.0)
    assert first > 0.0  # one token a tenth of a second, blind
    assert rep.wait_time(1000.0 + first / 2) == pytest.approx(first / 2)
    assert rep.wait_time(1000.0 + first * 2) == 0.0
    assert rep.wait_time(1000.0) == pytest.approx(first)  # nothing moved


def test_an_empty_log_waits_for_nothing() -> None:
    rep = replica()
    assert rep.wait_time(5.0) == 0.0
    assert Log().call(1.0, rep, ATTEMPT) is not None


# -- shared as one: every policy ---------------------------------------------------------

CELLS = {
    "fixed window aligned, all headers": {
        "algorithm": "fixed_window_aligned",
        "limit": 100,
        "window": 10.0,
    },
    "fixed window aligned, gateway dialect": {
        "algorithm": "fixed_window_aligned",
        "limit": 100,
        "window": 10.0,
        "dialect": "gateway",
    },
    "fixed window aligned, Remaining only": {
        "algorithm": "fixed_window_aligned",
        "limit": 100,
        "window": 10.0,
        "dialect": "remaining_only",
    },
    "fixed window from the first request, vendor page": {
        "algorithm": "fixed_window",
        "limit": 60,
        "window": 10.0,
        "dialect": "vendor_page",
    },
    "gateway token bucket": {
        "algorithm": "token_bucket",
        "limit": 10,
        "window": 1.0,
        "burst": 20,
        "dialect": "gateway",
    },
    "token bucket, IETF": {
        "algorithm": "token_bucket",
        "limit": 10,
        "window": 1.0,
        "burst": 20,
        "dialect": "ietf",
    },
}


@pytest.mark.parametrize("name", list(CELLS))
def test_four_processes_spend_one_budget_as_one_process_would(name: str) -> None:
    policy = FakeRateLimit(**CELLS[name])
    shared = simulate_shared(policy, processes=4, duration=150.0)
    alone = simulate(policy, duration=150.0)
    assert shared.throttled == 0
    assert shared.share >= alone.share - 0.02, (shared.share, alone.share)
    assert shared.share >= 0.95
    seqs = {rep.budget.seq for rep in shared.replicas if rep.budget is not None}
    assert len(seqs) == 1  # every process ends with the same count of admissions


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    algorithm=st.sampled_from(["fixed_window_aligned", "fixed_window", "token_bucket"]),
    dialect=st.sampled_from(["x-ratelimit", "vendor_page", "remaining_only", "ietf", "gateway"]),
    limit=st.integers(20, 150),
    window=st.sampled_from([5.0, 10.0, 30.0]),
    processes=st.integers(2, 6),
    seed=st.integers(0, 10**6),
)
def test_shared_budgets_never_trip_the_server_and_spend_what_one_process_would(
    algorithm: str, dialect: str, limit: int, window: float, processes: int, seed: int
) -> None:
    # Derandomized: the same examples every run, so that the suite stays a verdict on the
    # code. The one 429 found so far by random search is pinned below as a known gap.
    policy = random_policy(algorithm, dialect, limit, window)
    shared = simulate_shared(policy, processes=processes, duration=90.0, seed=seed)
    assert shared.throttled == 0
    # Against what one process makes of the same policy (the worst of three runs): on some
    # policies (a long window whose end shows only once spent, small limits) the budget's
    # discovery turns on timing to the millisecond, alone as well as shared.
    alone = min(simulate(policy, duration=90.0, seed=seed + k).share for k in range(3))
    assert shared.share >= alone - 0.1, (shared.share, alone)


def random_policy(algorithm: str, dialect: str, limit: int, window: float) -> FakeRateLimit:
    if algorithm == "token_bucket":
        return FakeRateLimit(
            algorithm=algorithm,
            limit=max(2, limit // 10),
            window=1.0,
            burst=limit // 2,
            dialect=dialect,
        )
    return FakeRateLimit(algorithm=algorithm, limit=limit, window=window, dialect=dialect)


@pytest.mark.parametrize("seed", [21, 84885, 84890])
def test_a_missed_rollover_does_not_let_a_probe_meet_a_429(seed: int) -> None:
    """Two processes, `Remaining` only, 143 per 5 s aligned: a rollover the estimator did not
    see made "one probe the longest plausible window after the window opened" come due
    early, and that probe met the one 429 of the run (these seeds, 3 of 100). The end both
    kinds of fixed window predict now times it (0 of 100)."""
    policy = random_policy("fixed_window_aligned", "remaining_only", 143, 5.0)
    shared = simulate_shared(policy, processes=2, duration=90.0, seed=seed)
    assert shared.throttled == 0
