"""Token-bucket arithmetic, driven synchronously with explicit times."""

from __future__ import annotations

import itertools
import math

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from d360_async._core._ratelimit._bucket import DECREASE, INCREASE, MIN_FACTOR
from d360_async._limiters import RateLimitState, TokenBucket

T0 = 100.0


def bucket(
    limit: float = 60,
    period: float = 60.0,
    *,
    burst: int = 1,
    safety_margin: float = 0.05,
    wait_margin: float = 0.0,
    epoch_margin: float = 0.0,
    adaptive: bool = True,
) -> TokenBucket:
    return TokenBucket(
        limit,
        period,
        burst=burst,
        safety_margin=safety_margin,
        wait_margin=wait_margin,
        epoch_margin=epoch_margin,
        adaptive=adaptive,
        now=T0,
    )


def drain(b: TokenBucket, start: float, end: float) -> list[float]:
    """Admit greedily from ``start`` until before ``end``; the admission times."""
    times: list[float] = []
    now = start
    while True:
        wait = b.try_take(now)
        if wait == 0.0:
            times.append(now)
            continue
        now += wait
        if now >= end:
            return times


def max_in_window(times: list[float], period: float) -> int:
    """The most admissions in any half-open interval of length ``period``."""
    best = 0
    j = 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < start + period - 1e-9:
            j += 1
        best = max(best, j - i)
    return best


# -- blind pacing -------------------------------------------------------------------------


def test_starts_full_at_the_base_rate() -> None:
    b = bucket()
    assert b.capacity == 1
    assert b.tokens == 1
    assert b.base_rate == pytest.approx(57 / 60)
    assert b.rate == b.base_rate
    assert b.try_take(T0) == 0.0
    assert b.try_take(T0) == pytest.approx(60 / 57)


def test_refill_is_capped_at_capacity() -> None:
    b = bucket(burst=3)
    for _ in range(3):
        assert b.try_take(T0) == 0.0
    b.advance(T0 + 10_000)
    assert b.tokens == 3
    assert b.remaining is None


@pytest.mark.parametrize(
    ("burst", "expected_rate"),
    [(1, 57 / 60), (3, 55 / 60), (10, 48 / 60), (1000, 1 / 60)],
    ids=["burst-1", "burst-3", "burst-10", "burst-above-limit"],
)
def test_burst_costs_sustained_rate(burst: int, expected_rate: float) -> None:
    b = bucket(burst=burst)
    assert b.capacity == min(burst, 57)
    assert b.base_rate == pytest.approx(expected_rate)


@pytest.mark.parametrize("burst", [1, 2, 5, 20])
@pytest.mark.parametrize(("limit", "period"), [(60, 60.0), (20, 2.0), (100, 60.0), (3, 1.0)])
def test_blind_pacing_never_exceeds_the_limit_in_any_window(
    limit: int, period: float, burst: int
) -> None:
    b = bucket(limit, period, burst=burst)
    times = drain(b, T0, T0 + 10 * period)
    assert max_in_window(times, period) <= limit
    # ...and uses at least the promised share of it over the long run.
    assert len(times) >= 9 * b.base_rate * period


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=5.0), min_size=1, max_size=120),
    st.integers(min_value=1, max_value=6),
)
def test_blind_pacing_with_arbitrary_arrivals(gaps: list[float], burst: int) -> None:
    """However requests arrive, every window of 2 s sees at most 20 (the limit)."""
    b = bucket(20, 2.0, burst=burst)
    now = T0
    times: list[float] = []
    for gap in gaps:
        now += gap
        wait = b.try_take(now)
        if wait > 0:  # a waiter takes the token as soon as it exists
            now += wait
            assert b.try_take(now) == 0.0
        times.append(now)
    assert max_in_window(times, 2.0) <= 20


def test_time_going_backwards_is_ignored() -> None:
    b = bucket()
    b.try_take(T0)
    b.advance(T0 + 0.5)
    tokens = b.tokens
    b.advance(T0 - 100)
    assert b.tokens == tokens
    assert b.updated == T0 + 0.5


def test_refund_gives_the_token_back() -> None:
    b = bucket()
    b.try_take(T0)
    b.refund(T0)
    assert b.tokens == pytest.approx(1.0)
    assert b.try_take(T0) == 0.0


# -- calibration ----------------------------------------------------------------------------


def test_never_believes_more_than_remaining_minus_in_flight() -> None:
    b = bucket(burst=5)
    assert b.tokens == 5
    b.observe(RateLimitState(remaining=2), in_flight=3, now=T0)
    assert b.tokens == -1  # a debt: one more request may be counted than we thought
    assert b.remaining == 0
    # Nothing is left in this window, which ends at most a period after its first answer.
    assert b.reset_at == pytest.approx(T0 + 60.0)
    assert b.wait_time(T0) == pytest.approx(60.0)


def test_a_count_without_reset_is_spent_within_the_period() -> None:
    b = bucket(20, 2.0)
    b.observe(RateLimitState(remaining=9), in_flight=0, now=T0)
    times = drain(b, T0, T0 + 2.0)
    assert len(times) == 9  # exactly what is left, spread until the window must have ended
    assert b.try_take(T0 + 2.0) == 0.0  # then a probe opens the next window


def test_a_count_without_reset_repays_a_debt_at_the_base_rate_when_the_period_is_refuted() -> None:
    b = bucket(20, 2.0)
    b.observe(RateLimitState(remaining=5, reset_after=9.0), in_flight=0, now=T0)
    b.advance(T0 + 9.0)  # that window (longer than the period) is over
    b.observe(RateLimitState(remaining=2), in_flight=3, now=T0 + 9.0)
    assert b.tokens == -1
    assert b.reset_at == pytest.approx(T0 + 9.0)  # nothing bounds the new window
    assert b.wait_time(T0 + 9.0) == pytest.approx(2 / b.base_rate)


def test_a_response_never_adds_tokens() -> None:
    b = bucket(burst=5)
    for _ in range(4):
        b.try_take(T0)
    b.observe(RateLimitState(remaining=50), in_flight=0, now=T0)
    assert b.tokens == pytest.approx(1.0)


def test_a_fresh_response_forgives_an_over_cautious_debt() -> None:
    b = bucket()
    b.observe(RateLimitState(remaining=0), in_flight=4, now=T0, admitted_at=T0)
    assert b.tokens == -4
    # The four in flight were in fact counted: the server still has 10 left.
    b.observe(RateLimitState(remaining=10), in_flight=0, now=T0 + 0.1, admitted_at=T0 + 0.05)
    assert b.tokens == pytest.approx(0.0)


def test_a_stale_response_may_only_lower_the_estimate() -> None:
    b = bucket(burst=5)
    b.observe(RateLimitState(remaining=1), in_flight=0, now=T0, admitted_at=T0 - 1)
    assert b.tokens == 1
    # An answer to a request admitted earlier arrives late, with an older, higher count.
    b.observe(RateLimitState(remaining=40), in_flight=0, now=T0, admitted_at=T0 - 5)
    assert b.tokens == 1
    assert b.remaining == 1
    b.observe(RateLimitState(remaining=0), in_flight=0, now=T0, admitted_at=T0 - 6)
    assert b.tokens == 0


def test_spreads_the_remaining_budget_until_the_reset() -> None:
    b = bucket(20, 2.0)
    b.observe(RateLimitState(limit=20, remaining=19, reset_after=2.0), in_flight=0, now=T0)
    # The token in hand, then 18 more every 2/19 s: 19 in all, none in a burst, and the
    # probe at the reset continues the same grid.
    assert b.rate == pytest.approx(9.5)
    times = drain(b, T0, T0 + 2.0)
    assert len(times) == 19
    times.append(T0 + 2.0 + (b.wait_time(T0 + 2.0) if b.wait_time(T0 + 2.0) else 0.0))
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(gaps) == pytest.approx(min(gaps))


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=0, max_value=5),
    st.floats(min_value=0.0, max_value=3.0),
    st.floats(min_value=0.05, max_value=10.0),
    st.integers(min_value=1, max_value=8),
)
def test_spread_admits_exactly_the_budget_before_the_reset(
    remaining: int, in_flight: int, spent: float, reset_after: float, burst: int
) -> None:
    b = bucket(40, 10.0, burst=burst)
    now = T0 + 100
    b.restore(attrs.evolve(b.snapshot(), tokens=min(float(burst), spent), updated=now))
    b.observe(
        RateLimitState(remaining=remaining, reset_after=reset_after), in_flight=in_flight, now=now
    )
    admitted = len(drain(b, now, now + reset_after))
    assert admitted == max(0, remaining - in_flight)


def test_spread_counts_the_requests_in_flight() -> None:
    b = bucket(20, 2.0)
    b.observe(RateLimitState(remaining=10, reset_after=4.0), in_flight=3, now=T0)
    assert len(drain(b, T0, T0 + 4.0)) == 7


def test_remaining_zero_with_reset_waits_for_the_reset_then_probes() -> None:
    b = bucket(60, 60.0, wait_margin=0.5)
    b.observe(RateLimitState(limit=60, remaining=0, reset_after=12.0), in_flight=0, now=T0)
    assert b.wait_time(T0) == pytest.approx(12.5)
    assert b.try_take(T0 + 12.4) > 0
    assert b.try_take(T0 + 12.5) == 0.0  # exactly one probe at the reset...
    assert b.try_take(T0 + 12.5) == pytest.approx(1 / b.base_rate)  # ...then the base rate
    assert b.remaining == 59


def test_reset_without_remaining_only_records_the_reset() -> None:
    b = bucket()
    b.observe(RateLimitState(reset_after=30.0), in_flight=0, now=T0)
    assert b.reset_at == T0 + 30.0
    assert b.rate == b.base_rate


def test_a_spread_is_recomputed_from_a_later_remaining() -> None:
    b = bucket(20, 2.0)
    b.observe(RateLimitState(remaining=19, reset_after=2.0), in_flight=0, now=T0)
    b.try_take(T0)
    # Another process spent most of the window: 4 left, same reset.
    b.observe(RateLimitState(remaining=4), in_flight=0, now=T0 + 0.5)
    assert len(drain(b, T0 + 0.5, T0 + 2.0)) == 4


def test_learns_the_announced_limit() -> None:
    b = bucket(60, 60.0, burst=5)
    b.observe(RateLimitState(limit=100), in_flight=0, now=T0)
    assert b.limit == 100
    assert b.learned_limit == 100
    assert b.capacity == 5
    # An announced limit is used in full: the safety margin is for pacing on a guess.
    assert b.base_rate == pytest.approx((100 - 4) / 60)
    b.observe(RateLimitState(limit=3), in_flight=0, now=T0)
    assert b.capacity == 3
    assert b.tokens <= 3


# -- when the window ends -------------------------------------------------------------------


def test_the_period_bounds_a_reset_rounded_up_by_the_server() -> None:
    """The first answer of a 2 s window at T0: whatever the headers say, it ends by T0 + 2."""
    b = bucket(20, 2.0)
    b.observe(RateLimitState(limit=20, remaining=19, reset_after=2.0), in_flight=0, now=T0)
    # A later answer of the same window, its reset rounded up (an epoch read against a
    # truncated Date, plus the margin for an epoch the server may have truncated).
    b.observe(
        RateLimitState(limit=20, remaining=9, reset_after=2.0, reset_is_epoch=True),
        in_flight=0,
        now=T0 + 1.0,
    )
    assert b.reset_at == pytest.approx(T0 + 2.0)
    times = drain(b, T0 + 1.0, T0 + 2.0)
    assert len(times) == 9
    assert b.try_take(T0 + 2.0) == 0.0  # the next window's first request, at once


def test_a_reset_earlier_than_the_bound_is_taken() -> None:
    b = bucket(20, 2.0)
    b.observe(RateLimitState(remaining=5, reset_after=0.5), in_flight=0, now=T0)
    assert b.reset_at == pytest.approx(T0 + 0.5)


def test_margins_by_how_the_reset_was_sent() -> None:
    """Nothing more for a delay (rounded up), the epoch margin for an epoch (maybe truncated).

    The announced limit differs from the configured one, so the period bounds nothing here.
    """
    state = RateLimitState(limit=100, remaining=3, reset_after=9.0)
    delay = bucket(60, 60.0, wait_margin=0.25, epoch_margin=1.0)
    delay.observe(state, in_flight=0, now=T0)
    assert delay.reset_at == pytest.approx(T0 + 9.25)
    epoch = bucket(60, 60.0, wait_margin=0.25, epoch_margin=1.0)
    epoch.observe(attrs.evolve(state, reset_is_epoch=True), in_flight=0, now=T0)
    assert epoch.reset_at == pytest.approx(T0 + 10.25)
    dated = bucket(60, 60.0, epoch_margin=1.0)
    retry = RateLimitState(retry_after=4.0, retry_is_date=True)
    assert dated.throttle(retry, in_flight=0, now=T0) == pytest.approx(T0 + 5.0)
    seconds = bucket(60, 60.0, epoch_margin=1.0)
    retry = RateLimitState(retry_after=4.0)
    assert seconds.throttle(retry, in_flight=0, now=T0) == pytest.approx(T0 + 4.0)


def test_an_announced_limit_other_than_the_configured_one_disables_the_bound() -> None:
    b = bucket(20, 2.0)
    b.observe(RateLimitState(limit=30, remaining=29, reset_after=3.0), in_flight=0, now=T0)
    assert b.reset_at == pytest.approx(T0 + 3.0)


def test_a_reset_longer_than_the_period_refutes_it_for_good() -> None:
    b = bucket(20, 2.0)
    b.observe(RateLimitState(remaining=19, reset_after=5.0), in_flight=0, now=T0)
    assert b.reset_at == pytest.approx(T0 + 5.0)
    assert b.snapshot().period_refuted
    b.advance(T0 + 5.0)
    b.observe(RateLimitState(remaining=19, reset_after=2.5), in_flight=0, now=T0 + 5.0)
    assert b.reset_at == pytest.approx(T0 + 7.5)  # not T0 + 7: the period no longer binds


def test_a_reset_that_outlasts_the_anchor_refutes_the_period() -> None:
    b = bucket(20, 2.0)
    b.observe(RateLimitState(remaining=19), in_flight=0, now=T0)  # the anchor
    # 1.5 s later the server says 1.9 s more (a delay, rounded up by less than 1 s): its
    # window ends after T0 + 2.4, later than a 2 s window opened before T0 can.
    b.observe(RateLimitState(remaining=10, reset_after=1.9), in_flight=0, now=T0 + 1.5)
    assert b.snapshot().period_refuted
    assert b.reset_at == pytest.approx(T0 + 3.4)


def test_answers_from_the_window_that_ended_do_not_move_the_next_one() -> None:
    b = bucket(20, 2.0)
    b.observe(RateLimitState(remaining=0, reset_after=1.0), in_flight=1, now=T0, admitted_at=T0)
    assert b.try_take(T0 + 1.0) == 0.0  # the new window's first request
    # The answer to the request still in flight at the reset: the old window, spent.
    b.observe(
        RateLimitState(remaining=0, reset_after=0.5),
        in_flight=1,
        now=T0 + 1.01,
        admitted_at=T0 - 0.1,
    )
    assert b.reset_at == pytest.approx(T0 + 1.0)
    b.observe(
        RateLimitState(remaining=19, reset_after=2.0),
        in_flight=0,
        now=T0 + 1.02,
        admitted_at=T0 + 1.0,
    )
    assert b.reset_at == pytest.approx(T0 + 3.02)
    assert b.remaining == 19


# -- 429 ------------------------------------------------------------------------------------


def test_429_pauses_until_retry_after_then_releases_paced() -> None:
    b = bucket(20, 2.0, burst=5, wait_margin=0.1)
    until = b.throttle(RateLimitState(retry_after=3.0), in_flight=0, now=T0)
    assert until == pytest.approx(T0 + 3.1)
    assert b.rate == 0.0
    assert b.wait_time(T0) == pytest.approx(3.1)
    assert b.try_take(T0 + 3.0) > 0
    # After the pause: one token, then the (halved, adaptive) rate: no herd.
    times = drain(b, until, until + 1.0)
    assert times[0] == pytest.approx(until)
    rate = b.base_rate * b.factor
    assert len(times) == 1 + math.floor(rate * 1.0)


def test_429_without_retry_after_uses_the_reset() -> None:
    b = bucket()
    until = b.throttle(RateLimitState(remaining=0, reset_after=8.0), in_flight=0, now=T0)
    assert until == pytest.approx(T0 + 8.0)


def test_blind_429s_back_off_exponentially_capped_at_a_period() -> None:
    b = bucket(60, 10.0)
    pauses = []
    now = T0
    for _ in range(6):
        until = b.throttle(None, in_flight=0, now=now)
        pauses.append(until - now)
        now = until
    assert pauses == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    b.succeed(now=now)
    assert b.consecutive_throttles == 0
    assert b.throttle(None, in_flight=0, now=now) == now + 1.0


def test_a_later_pause_is_never_shortened() -> None:
    b = bucket()
    b.throttle(RateLimitState(retry_after=30.0), in_flight=0, now=T0)
    b.throttle(RateLimitState(retry_after=1.0), in_flight=0, now=T0 + 1)
    assert b.paused_until == pytest.approx(T0 + 30.0)


def test_echo_429s_do_not_decrease_twice() -> None:
    b = bucket()
    b.throttle(None, in_flight=3, now=T0, admitted_at=T0 - 1)
    assert b.factor == DECREASE
    for _ in range(3):  # answers to requests admitted before that first 429
        b.throttle(None, in_flight=0, now=T0 + 0.1, admitted_at=T0 - 0.9)
    assert b.factor == DECREASE
    assert b.consecutive_throttles == 1
    b.throttle(None, in_flight=0, now=T0 + 5, admitted_at=T0 + 2)
    assert b.factor == DECREASE**2


# -- AIMD -----------------------------------------------------------------------------------


def test_aimd_decrease_and_slow_increase_bounded_by_the_limit() -> None:
    b = bucket()
    base = b.base_rate
    b.throttle(None, in_flight=0, now=T0)
    assert b.sustainable_rate == pytest.approx(base * DECREASE)
    steps = 0
    now = b.paused_until
    while b.factor < 1.0:
        b.succeed(now=now)
        now += 1
        steps += 1
    assert steps == math.ceil((1 - DECREASE) / INCREASE - 1e-9)
    b.succeed(now=now)
    assert b.sustainable_rate == pytest.approx(base)


def test_aimd_floor() -> None:
    b = bucket()
    for i in range(50):
        b.throttle(None, in_flight=0, now=T0 + 100 * i)
    assert b.factor == MIN_FACTOR
    assert b.sustainable_rate > 0


def test_successes_admitted_before_a_429_do_not_raise_the_rate() -> None:
    b = bucket()
    b.throttle(None, in_flight=0, now=T0)
    b.succeed(now=T0 + 1, admitted_at=T0 - 1)
    assert b.factor == DECREASE


def test_not_adaptive_keeps_the_rate() -> None:
    b = bucket(adaptive=False)
    b.throttle(None, in_flight=0, now=T0)
    assert b.factor == 1.0


def test_record_dispatches_on_status() -> None:
    b = bucket()
    b.record(None, None, in_flight=0, now=T0)
    assert b.factor == 1.0
    b.record(429, RateLimitState(retry_after=1), in_flight=0, now=T0)
    assert b.factor == DECREASE
    b.record(503, RateLimitState(remaining=5), in_flight=0, now=T0 + 2)
    assert b.factor == DECREASE  # a 5xx does not raise the rate...
    assert b.remaining == 5  # ...but its headers calibrate
    b.record(200, None, in_flight=0, now=T0 + 2)
    assert b.factor == DECREASE + INCREASE


# -- consistency ----------------------------------------------------------------------------

_ops = st.lists(
    st.tuples(
        st.sampled_from(["take", "observe", "throttle", "succeed", "refund"]),
        st.floats(min_value=0, max_value=3),  # time step
        st.integers(min_value=0, max_value=25),  # remaining
        st.integers(min_value=0, max_value=5),  # in flight
        st.one_of(st.none(), st.floats(min_value=0, max_value=5)),  # reset_after
        st.one_of(st.none(), st.floats(min_value=0, max_value=5)),  # retry_after
    ),
    max_size=30,
)


def _replay(ops: list[tuple[str, float, int, int, float | None, float | None]]) -> TokenBucket:
    b = bucket(20, 2.0, burst=3, wait_margin=0.05)
    now = T0
    for op, step, remaining, in_flight, reset_after, retry_after in ops:
        now += step
        state = RateLimitState(
            limit=20, remaining=remaining, reset_after=reset_after, retry_after=retry_after
        )
        if op == "take":
            b.try_take(now)
        elif op == "observe":
            b.observe(state, in_flight=in_flight, now=now, admitted_at=now - step / 2)
        elif op == "throttle":
            b.throttle(state, in_flight=in_flight, now=now, admitted_at=now - step / 2)
        elif op == "succeed":
            b.succeed(now=now)
        else:
            b.refund(now)
    return b


@settings(max_examples=200, deadline=None)
@given(_ops, st.integers(min_value=1, max_value=4))
def test_wait_time_is_exact(
    ops: list[tuple[str, float, int, int, float | None, float | None]], need: int
) -> None:
    """After ``wait_time`` the tokens are there, and not noticeably before."""
    b = _replay(ops)
    now = b.updated
    wait = b.wait_time(now, float(need))
    assert wait >= 0.0
    if need == 1:
        later = _replay(ops)
        later.advance(now + wait)
        assert later.tokens >= 1 - 1e-6
        if wait > 1e-6:
            earlier = _replay(ops)
            earlier.advance(now + wait * 0.999)
            assert earlier.tokens < 1
    # need tokens, consumed as they come: taking one each time wait_time says so
    taker = _replay(ops)
    t = now
    for _ in range(need):
        t += taker.wait_time(t)
        assert taker.try_take(t) == 0.0
    assert t == pytest.approx(now + wait, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(_ops)
def test_snapshot_round_trip(
    ops: list[tuple[str, float, int, int, float | None, float | None]],
) -> None:
    b = _replay(ops)
    copy = bucket(20, 2.0, burst=3, wait_margin=0.05)
    copy.restore(b.snapshot())
    assert copy.snapshot() == b.snapshot()
    now = b.updated + 1.23
    assert copy.wait_time(now, 2.0) == b.wait_time(now, 2.0)
    shifted = bucket(20, 2.0, burst=3, wait_margin=0.05)
    shifted.restore(b.snapshot().shifted(1000.0))
    assert shifted.wait_time(now + 1000.0) == pytest.approx(b.wait_time(now), abs=1e-6)


def test_repr_says_what_matters() -> None:
    b = bucket()
    b.observe(RateLimitState(limit=60, remaining=3, reset_after=9.0), in_flight=0, now=T0)
    b.throttle(RateLimitState(retry_after=5.0), in_flight=0, now=T0)
    text = repr(b)
    assert text.startswith("TokenBucket(")
    for fragment in ("tokens=", "limit=60/60s (announced)", "remaining~", "paused_for=5.000s"):
        assert fragment in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"limit": math.inf},
        {"period": 0},
        {"burst": 0},
        {"safety_margin": 1.0},
        {"wait_margin": -1.0},
        {"epoch_margin": math.nan},
    ],
)
def test_rejects_nonsense_settings(kwargs: dict[str, float]) -> None:
    arguments: dict[str, float] = {"limit": 60, "period": 60.0} | kwargs
    with pytest.raises(ValueError):  # noqa: PT011 - the messages are checked by reading them
        TokenBucket(
            arguments.pop("limit"),
            arguments.pop("period"),
            now=T0,
            **arguments,  # type: ignore[arg-type]
        )
