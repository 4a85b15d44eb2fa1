"""The pure policy estimator and budget: what each answer teaches, and what may be sent.

The end-to-end properties run the budget against the fake server's own pure limiter on
virtual time (`policy_sim`), so a whole two-minute run takes a fraction of a second.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_sim import simulate, simulate_drawn

from d360_async._core._ratelimit._budget import PROBE_STEP, Budget
from d360_async._core._ratelimit._headers import RateLimitState
from d360_async._core._ratelimit._policy import Family, PolicyEstimator, ResetMeaning
from d360_async.testing import FakeRateLimit

# ---------------------------------------------------------------------------- the estimator


def test_the_configured_limit_is_only_a_prior() -> None:
    policy = PolicyEstimator(60, 60)
    estimate = policy.estimate()
    assert (estimate.limit.value, estimate.limit.samples) == (60, 0)
    assert "configured" in estimate.limit.evidence
    # A fresh budget answers its first request with limit - 1: upward from the prior...
    policy.observe(RateLimitState(remaining=99), seq=1, sent=0.0, received=0.01)
    assert policy.limit == 100
    assert "Remaining + 1" in policy.estimate().limit.evidence
    # ...and an announced limit wins, downward too.
    policy.observe(RateLimitState(limit=20, remaining=18), seq=2, sent=0.1, received=0.11)
    assert policy.limit == 20
    assert policy.estimate().limit.evidence == "announced by the server"


def test_an_announced_window_is_believed() -> None:
    policy = PolicyEstimator(60, 60)
    policy.observe(
        RateLimitState(limit=100, remaining=50, reset_after=30.0, window=60.0),
        seq=1,
        sent=0.0,
        received=0.01,
    )
    estimate = policy.estimate()
    assert estimate.window.value == 60.0
    assert "w=" in estimate.window.evidence
    assert estimate.rate == pytest.approx(100 / 60)


def _drain(policy: PolicyEstimator, start: int, at: float, counts: list[int]) -> int:
    for offset, remaining in enumerate(counts):
        seq = start + offset
        t = at + offset * 0.1
        policy.sent(seq, t)
        policy.observe(RateLimitState(remaining=remaining), seq=seq, sent=t, received=t + 0.01)
    return start + len(counts)


def test_a_count_that_comes_back_all_at_once_is_a_fixed_window() -> None:
    policy = PolicyEstimator(10, 60)
    seq = _drain(policy, 1, 0.0, [9, 8, 7, 6, 5, 4, 3, 2])
    assert policy.family is Family.UNKNOWN
    seq = _drain(policy, seq, 5.0, [9, 8, 7, 6, 5])  # rolled over between 0.7 and 5.01
    assert policy.family is Family.FIXED_WINDOW
    opened = policy.opened
    assert opened is not None
    assert (opened.lo, opened.hi) == (pytest.approx(0.7), pytest.approx(5.01))
    _drain(policy, seq, 10.0, [9, 8])  # and again: two rollovers bound the window
    estimate = policy.estimate()
    assert estimate.family.samples == 2
    # No longer than from the earliest the first could have opened to the latest the second
    # did, and (windows opening with their first request) no longer than each one's end.
    assert estimate.window.value <= 10.01 - 0.7 + 1e-9
    assert estimate.window.samples >= 1


def test_a_count_that_comes_back_a_little_at_a_time_is_gradual() -> None:
    policy = PolicyEstimator(20, 60)
    # Spending one a tenth of a second while the server gives one back every 0.2 s.
    counts = [19 - i + i // 2 for i in range(40)]
    _drain(policy, 1, 0.0, counts)
    assert policy.family is Family.GRADUAL
    assert 3.0 < policy.refill_rate <= 5.0  # a lower bound of the 5/s refill


def test_a_zero_reset_while_requests_remain_is_a_gateway_bucket() -> None:
    policy = PolicyEstimator(60, 60)
    policy.observe(
        RateLimitState(limit=20, remaining=19, reset_after=0.0), seq=1, sent=0.0, received=0.01
    )
    estimate = policy.estimate()
    assert estimate.reset.value is ResetMeaning.NEXT_TOKEN
    assert estimate.family.value is Family.TOKEN_BUCKET


def test_whole_second_resets_narrow_the_end_answer_by_answer() -> None:
    policy = PolicyEstimator(100, 60)
    # The window ends at 10.3: each answer's reset is the rest, rounded up.
    for seq, at in enumerate([0.0, 0.45, 0.9, 1.35, 1.8], start=1):
        reset = math.ceil(10.3 - at)
        policy.observe(
            RateLimitState(limit=100, remaining=100 - seq, reset_after=float(reset)),
            seq=seq,
            sent=at,
            received=at,
        )
    end = policy.end
    assert end is not None
    assert end.lo <= 10.3 <= end.hi
    assert end.width < 0.5  # one answer alone would say "within a second"


def test_the_server_clock_offset_narrows_an_epoch_reset() -> None:
    policy = PolicyEstimator(100, 60)
    offset = 1_700_000_000.25  # server epoch minus our clock
    for seq in range(1, 30):
        at = seq * 0.1
        server = at + offset
        policy.observe(
            RateLimitState(
                limit=100,
                remaining=100 - seq,
                reset_after=math.ceil(offset + 20.0) - math.floor(server),
                reset_is_epoch=True,
                date=float(math.floor(server)),
            ),
            seq=seq,
            sent=at,
            received=at,
        )
    end = policy.end
    assert end is not None
    true_end = math.ceil(offset + 20.0) - offset
    assert end.lo <= true_end <= end.hi
    assert end.width <= 1.15  # the epoch's own rounding (and a round trip) is what is left


# ---------------------------------------------------------------------------- the budget


def test_nothing_leaves_beyond_what_the_server_vouched_for() -> None:
    budget = Budget(60, 60, now=0.0)
    assert budget.try_take(0.0) == 0.0
    budget.record(200, RateLimitState(remaining=1), now=0.01, sent=0.0, seq=1)
    assert budget.credits == 1
    waits = []
    t = 0.01
    for _ in range(3):
        wait = budget.try_take(t)
        waits.append(wait)
        t += max(wait, 0.001)
    # The one credit goes (nothing is known of the refill, so as a probe, within one probe
    # step)...
    assert 0.0 in waits[:2]
    assert sum(waits[: waits.index(0.0)]) <= PROBE_STEP
    assert budget.credits == 0  # ...and no more without a word from the server
    assert budget.try_take(t) > 0.0


def test_credits_are_spread_until_the_earliest_end() -> None:
    budget = Budget(60, 60, now=0.0)
    budget.try_take(0.0)
    budget.record(
        200, RateLimitState(limit=100, remaining=40, reset_after=20.0), now=0.0, sent=0.0, seq=1
    )
    # 40 credits before the window can end, which a whole-second reset of 20 puts at 19 s.
    assert budget.rate == pytest.approx(40 / 19)


def test_a_spent_window_probes_once_its_announced_end_has_passed() -> None:
    budget = Budget(60, 60, now=0.0)
    budget.try_take(0.0)
    budget.record(
        200, RateLimitState(limit=10, remaining=0, reset_after=5.0), now=0.02, sent=0.0, seq=1
    )
    assert budget.credits == 0
    assert budget.grant_at == pytest.approx(5.02)
    assert budget.try_take(5.0) > 0.0
    assert budget.try_take(5.03) == 0.0  # the probe; its answer says what came next
    assert budget.try_take(5.04) > 0.0


def test_an_overtaken_count_caps_the_newer_one() -> None:
    budget = Budget(60, 60, now=0.0)
    t = 0.0
    while budget.seq < 3:
        t += max(budget.try_take(t), 0.0) or 0.001
    budget.record(200, RateLimitState(remaining=9), now=t + 0.05, sent=0.0, seq=1)
    # Seq 2's answer says 2 left; seq 3's, newer, says 5: but seq 2's came back after seq 3
    # left, so the server may have counted seq 2 last. The lower count is believed. Had it
    # been counted last, seq 3 is in it already (had it not, seq 3's own 5 is the later
    # word): 2 left, not 1.
    budget.record(200, RateLimitState(remaining=2), now=t + 0.1, sent=t - 0.5, seq=2)
    budget.record(200, RateLimitState(remaining=5), now=t + 0.2, sent=t, seq=3)
    assert budget.credits == 2


def test_blind_429_cycles_teach_the_limit() -> None:
    # No headers; configured twice too high: the 429s' spacing says what the server allows.
    policy = FakeRateLimit(algorithm="fixed_window", limit=60, window=10.0, dialect="none")
    result = simulate(policy, duration=180.0, prior=(720, 60.0))
    assert result.throttled_share <= 0.01
    assert result.share >= 0.90


# ---------------------------------------------------------------------------- whole runs

MATRIX_FAMILIES = {
    "aligned": {"algorithm": "fixed_window_aligned", "limit": 100, "window": 10.0},
    "first-request": {"algorithm": "fixed_window", "limit": 60, "window": 10.0},
    "bucket": {"algorithm": "token_bucket", "limit": 10, "window": 1.0, "burst": 20},
}
DIALECTS = ["x-ratelimit", "vendor_page", "remaining_only", "ietf", "gateway"]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("family", sorted(MATRIX_FAMILIES))
def test_the_matrix_spends_the_budget_without_a_429(family: str, dialect: str) -> None:
    policy = FakeRateLimit(**MATRIX_FAMILIES[family], dialect=dialect)  # type: ignore[arg-type]
    result = simulate(policy, duration=120.0)
    assert result.throttled == 0
    assert result.share >= 0.97


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_sliding_window_is_never_tripped_and_mostly_spent(dialect: str) -> None:
    # Where the resets say when the newest request leaves (or the window is announced) the
    # budget is spent from the first window on; with the count alone, the window is learned
    # from our own requests over the first few (see the rate-limit docs).
    policy = FakeRateLimit(
        algorithm="sliding_window",
        limit=100,
        window=10.0,
        dialect=dialect,  # type: ignore[arg-type]
    )
    result = simulate(policy, duration=120.0)
    assert result.throttled == 0
    assert result.share >= (0.97 if dialect in ("ietf", "x-ratelimit") else 0.94)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_sliding_counter_is_spent_and_tripped_at_most_at_its_first_announced_end(
    dialect: str,
) -> None:
    """A sliding-window counter (the weighted two-window count of many gateways) is outside
    the target matrix and outside what the limiter assumes: its count fades over the next
    window instead of returning request by request, and its `Reset` names the current
    window's end, which does not bring the budget back. Believing that end costs one 429,
    at the first of them, where the dialect announces it; after it the budget is spent, its
    last credit probing for the refill (it used to wait each window out: 0.63 used)."""
    policy = FakeRateLimit(
        algorithm="sliding_counter",
        limit=100,
        window=10.0,
        dialect=dialect,  # type: ignore[arg-type]
    )
    for seed in range(3):
        result = simulate(policy, duration=120.0, seed=seed)
        assert result.throttled <= (1 if dialect in ("x-ratelimit", "ietf") else 0)
        assert result.share >= 0.97


def test_the_last_credit_of_a_gradual_budget_nothing_proves_the_returns_of_is_a_probe() -> None:
    """A count that comes back a little at a time (a bucket seen through `Remaining` only)
    and nothing that says when a spent credit is back: the last credit goes a refill step
    after the latest answer (whatever its token pace), so that its own answer says whether
    the refill came, instead of a return nobody proved."""
    budget = Budget(20, 60, now=0.0)
    tokens, t, last = 20.0, 0.0, 0.0
    while not (budget.credits is not None and budget.credits < 2 and budget.seq > 40):
        wait = budget.try_take(t)
        if wait > 0.0:
            t += wait
            continue
        tokens = min(20.0, tokens + 5.0 * (t - last)) - 1.0  # 20 tokens, 5 a second
        last = t
        budget.record(
            200, RateLimitState(remaining=int(tokens)), now=t + 0.01, sent=t, seq=budget.seq
        )
        t += 0.01
        assert t < 60.0
    assert budget.policy.family is Family.GRADUAL
    assert not budget.policy.returns_proven
    step = 1.0 / budget.rate  # the pace of what is left is the refill
    assert budget.try_take(t) == pytest.approx(step, rel=0.05)
    # A late answer (an earlier request's, overtaken) moves the last credit a step past it.
    late = t + 0.05
    budget.record(200, RateLimitState(remaining=3), now=late, sent=t - 1.0, seq=budget.seq - 5)
    assert budget.try_take(t + step + 1e-6) > 0.0
    assert budget.try_take(late + step + 1e-6) == 0.0
    assert budget.credits == 0
    assert budget.try_take(late + step + 0.001) > 0.0  # the next waits for its answer


def test_the_vendors_own_60_a_minute_with_remaining_only_is_spent() -> None:
    """A sliding window of 60 per minute seen through `Remaining` only (the vendor's plan,
    nothing else announced): the window is only `limit / refill measured`, which comes out
    long, so a spent budget's next credit came back as late as that said (0.88 of the
    budget). Now the server is asked again once the configured period has passed."""
    policy = FakeRateLimit(
        algorithm="sliding_window", limit=60, window=60.0, dialect="remaining_only"
    )
    for seed in range(3):
        result = simulate(policy, duration=450.0, seed=seed, concurrency=32)
        assert result.throttled == 0
        assert result.share >= 0.95


def test_a_limit_raised_under_load_is_learned_without_a_429() -> None:
    """60 per 10 s windows opened by their first request, `Remaining` only, raised to 100 a
    minute in: the jump it makes mid-window is no rollover (it would have made the window
    1.6 s long, and every probe at that end met a 429: six a run), nor is one a second
    before the window's proven end (it made the window open early, and the probe a step
    after that end met a 429 in 2 of 10 seeds), and the new limit is learned from the
    counts."""
    before = FakeRateLimit(limit=60, window=10.0, dialect="remaining_only")
    after = FakeRateLimit(limit=100, window=10.0, dialect="remaining_only")
    for seed in range(10):
        result = simulate(before, duration=150.0, seed=seed, concurrency=32, change=(60.0, after))
        assert result.throttled == 0
        assert result.share >= 0.95
        estimate = result.budget.estimate()
        assert estimate.limit.value == 100
        assert estimate.changes >= 1
        assert "relearned after" in estimate.describe()


@pytest.mark.parametrize("algorithm", ["fixed_window_aligned", "fixed_window", "sliding_window"])
def test_a_window_grown_under_load_costs_one_429_not_one_a_window(algorithm: str) -> None:
    """60 per 5 s grown to 60 per 10 s, nothing announced but `Remaining`: the window the
    answers proved is now too short, and a probe sent on it meets a 429. That 429 drops what
    was learned of the window (it kept meeting one every window: 7 to 9 a run), and it is
    learned again."""
    before = FakeRateLimit(algorithm=algorithm, limit=60, window=5.0, dialect="remaining_only")  # type: ignore[arg-type]
    after = FakeRateLimit(algorithm=algorithm, limit=60, window=10.0, dialect="remaining_only")  # type: ignore[arg-type]
    for seed in range(3):
        result = simulate(before, duration=150.0, seed=seed, concurrency=32, change=(60.0, after))
        assert result.throttled <= 2
        assert result.share >= 0.9


def test_a_window_refuted_by_a_429_is_not_proven_again_by_the_old_pace() -> None:
    """A sliding window grown from 5 s to 10 s: the refill measured after the 429 still shows
    the old window's pace (requests sent into it at 12 a second leave at that pace), so the
    window it implies was as short as the one the 429 refuted, and credits came back early
    again (3 or 4 429s in 2 of 10 seeds). The window refuted is a floor now."""
    before = FakeRateLimit(
        algorithm="sliding_window", limit=60, window=5.0, dialect="remaining_only"
    )
    after = FakeRateLimit(
        algorithm="sliding_window", limit=60, window=10.0, dialect="remaining_only"
    )
    for seed in range(10):
        result = simulate(before, duration=150.0, seed=seed, concurrency=32, change=(60.0, after))
        assert result.throttled <= 2


INTERNET = (0.005, 0.15)
"""Latency each way of a server across the internet (the matrix runs at 2-20 ms)."""


def test_an_old_windows_count_caps_no_new_window_across_the_internet() -> None:
    """Aligned windows, IETF fields, 5-150 ms each way: the answer of the last request of a
    window often comes back after the first of the next, and its low count capped the new
    window's credits at what the old one had left (0.71 of the budget)."""
    policy = FakeRateLimit(algorithm="fixed_window_aligned", limit=100, window=10.0, dialect="ietf")
    for seed in range(3):
        result = simulate(policy, duration=150.0, seed=seed, concurrency=32, latency=INTERNET)
        assert result.throttled == 0
        assert result.share >= 0.97


def test_a_spent_budget_the_log_owes_nothing_is_asked_again_after_a_proven_window() -> None:
    """A token bucket seen through `Remaining` only, 5-150 ms each way: with every answer in
    before the count that spent the budget, the log owes nothing back, and the server was
    asked again only after the configured period (a minute without a request; 0.58)."""
    policy = FakeRateLimit(
        algorithm="token_bucket", limit=10, window=1.0, burst=20, dialect="remaining_only"
    )
    for seed in range(3):
        result = simulate(policy, duration=150.0, seed=seed, concurrency=32, latency=INTERNET)
        assert result.throttled == 0
        gaps = [b - a for a, b in zip(result.times, result.times[1:], strict=False)]
        assert max(gaps) < 5.0
        assert result.share >= 0.85


@pytest.mark.parametrize("family", ["aligned", "first-request"])
def test_no_budget_expires_while_callers_wait(family: str) -> None:
    """At every reset after the policy is learned, at most the one credit a probe spent
    looking for the end is left of the window that ended; with the window aligned to the
    clock, none."""
    policy = FakeRateLimit(**MATRIX_FAMILIES[family])
    result = simulate(policy, duration=120.0)
    learned = result.expired[2:]
    assert learned
    assert max(learned) <= (0 if family == "aligned" else 1)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(
    algorithm=st.sampled_from(
        ["fixed_window_aligned", "fixed_window", "sliding_window", "token_bucket"]
    ),
    dialect=st.sampled_from(DIALECTS),
    limit=st.sampled_from([30, 60, 100, 150]),
    window=st.sampled_from([5.0, 10.0, 30.0]),
    burst_share=st.sampled_from([0.5, 1.0, 2.0]),
    reset_format=st.sampled_from(["epoch", "delay"]),
    latency=st.sampled_from([(0.001, 0.005), (0.002, 0.02)]),
    skew=st.floats(-30.0, 30.0),
    phase=st.floats(0.0, 1.0),
    concurrency=st.sampled_from([4, 16]),
    seed=st.integers(0, 1000),
)
def test_random_policies_are_never_tripped(
    algorithm: str,
    dialect: str,
    limit: int,
    window: float,
    burst_share: float,
    reset_format: str,
    latency: tuple[float, float],
    skew: float,
    phase: float,
    concurrency: int,
    seed: int,
) -> None:
    burst = max(1, int(limit * burst_share)) if algorithm == "token_bucket" else None
    result = simulate_drawn(
        algorithm,
        dialect,
        limit,
        window,
        burst=burst,
        reset_format=reset_format,
        latency=latency,
        skew=skew,
        phase=phase,
        concurrency=concurrency,
        seed=seed,
    )
    assert result.throttled == 0
    if dialect in ("x-ratelimit", "ietf") or algorithm == "token_bucket":
        # Where the server says when its window ends (or refills continuously), the budget
        # is spent.
        assert result.share >= 0.9
