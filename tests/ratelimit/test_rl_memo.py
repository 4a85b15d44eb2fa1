"""The policy's kept readers (`_policy.MEMO`) decide exactly what deriving at every read does.

[PolicyEstimator][] keeps the window it believes from one [version][] to the next instead of
deriving it at each of the several reads an answer makes. This drives the same budget through
the same simulated server (`policy_sim`: every family of `policy_matrix` and every dialect,
with latency, skew and concurrency drawn) once with the switch on and once off, and compares
everything the budget decided and believed after every admission attempt and every answer.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_matrix import FAMILIES
from policy_sim import simulate

from d360_async._core._ratelimit import _policy
from d360_async._core._ratelimit._budget import Budget
from d360_async._core._ratelimit._headers import RateLimitState
from d360_async.testing import FakeRateLimit

DIALECTS = ["x-ratelimit", "vendor_page", "remaining_only", "ietf", "gateway", "github", "none"]

# The matrix's families, and the overhead benchmark's budget (a limit the parser clamps, so
# every answer looks like a refill), each with the virtual seconds it runs for.
CASES: dict[str, tuple[dict[str, Any], float]] = {
    **{name: (family, 60.0) for name, family in FAMILIES.items()},
    "tight fixed 30/5 s": ({"algorithm": "fixed_window", "limit": 30, "window": 5.0}, 40.0),
    "overhead benchmark 1e9/60 s": ({"algorithm": "fixed_window", "limit": 10**9}, 1.5),
    "overhead benchmark 1e6/10 s": (
        {"algorithm": "fixed_window", "limit": 10**6, "window": 10.0},
        12.0,
    ),
}


class _Recorded(Budget):
    """A budget that notes, after every step, what it decided and everything it believes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.steps: list[tuple[Any, ...]] = []

    def _beliefs(self, now: float) -> tuple[Any, ...]:
        policy = self.policy
        return (
            self.rate,
            self.tokens,
            self.credits,
            self.remaining,
            self.grant_at,
            self.paused_until,
            self.reset_at,
            self.sustainable_rate,
            self.factor,
            self.limit,
            self.learned_limit,
            self.consecutive_throttles,
            self.wait_time(now),  # at `now` again: no time passes
            self.server_wait(now),
            repr(self),
            policy.estimate(),
            policy.limit,
            policy.family,
            policy.window,
            policy.window_bound,
            policy.window_lo,
            policy.log_window,
            policy.window_from_refill,
            policy.longest_reset,
            policy.refill_rate,
            policy.sliding_proven,
            policy.returns_proven,
            policy.ends_move,
            policy.told_end,
            policy.end,
            policy.opened,
            policy.has_count,
            policy.probe_pays,
            policy.probe_window,
            policy.changes,
        )

    def try_take(self, now: float, *, backlogged: bool = False) -> float:
        wait = super().try_take(now, backlogged=backlogged)
        self.steps.append(("take", now, wait, self.seq, *self._beliefs(now)))
        return wait

    def record(self, status: int | None, state: RateLimitState | None, **when: Any) -> None:
        super().record(status, state, **when)
        now = when["now"]
        self.steps.append(("record", now, status, when["seq"], *self._beliefs(now)))


def _run(
    case: str,
    dialect: str,
    memo: bool,
    monkeypatch: pytest.MonkeyPatch,
    *,
    fast: bool = True,
    **draw: Any,
) -> Any:
    family, duration = CASES[case]
    monkeypatch.setattr(_policy, "MEMO", memo)
    monkeypatch.setattr(_policy, "FAST", fast)
    budget = _Recorded(60.0, 60.0, now=0.0)
    policy = FakeRateLimit(dialect=dialect, **family)  # type: ignore[arg-type]
    result = simulate(policy, duration=duration, budget=budget, **draw)
    return budget.steps, result


def _same(kept: list[tuple[Any, ...]], derived: list[tuple[Any, ...]]) -> None:
    for index, (a, b) in enumerate(zip(kept, derived, strict=False)):
        assert a == b, f"step {index} differs:\nkept    {a}\nderived {b}"
    assert len(kept) == len(derived)


def compared(examples: int) -> settings:
    """The settings of a property that runs one simulation two ways and compares them."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        derandomize=True,
    )


def drawn(latencies: list[tuple[float, float]], **more: Any) -> st.SearchStrategy[dict[str, Any]]:
    """A simulation's drawn settings (`policy_sim.simulate`'s keywords), `more` besides."""
    return st.fixed_dictionaries(
        {
            "latency": st.sampled_from(latencies),
            "skew": st.floats(-30.0, 30.0),
            "phase": st.floats(0.0, 1.0),
            "concurrency": st.sampled_from([1, 4, 16, 32]),
            "seed": st.integers(0, 1000),
            **more,
        }
    )


@compared(60)
@given(
    case=st.sampled_from(sorted(CASES)),
    dialect=st.sampled_from(DIALECTS),
    draw=drawn([(0.001, 0.005), (0.002, 0.02)]),
)
def test_kept_readers_decide_as_derived_ones(
    monkeypatch: pytest.MonkeyPatch, case: str, dialect: str, draw: dict[str, Any]
) -> None:
    kept, kept_run = _run(case, dialect, True, monkeypatch, **draw)
    derived, derived_run = _run(case, dialect, False, monkeypatch, **draw)
    assert len(kept) > 10
    _same(kept, derived)
    assert kept_run.times == derived_run.times
    assert kept_run.throttled == derived_run.throttled


def test_a_stale_window_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison can fail: a window kept across versions (a cache that never moves on)
    decides differently from one derived at every read."""
    draw: dict[str, Any] = {
        "latency": (0.002, 0.02),
        "skew": 0.0,
        "phase": 0.37,
        "concurrency": 16,
        "seed": 1,
    }
    derived, _ = _run("sliding 100/10 s", "x-ratelimit", False, monkeypatch, **draw)

    def stale(self: _policy.PolicyEstimator) -> tuple[float, int, int]:
        if self._memo_at < 0:
            self._memo_source, self._memo_at = self._derive_window_source(), self.version
        return self._memo_source

    monkeypatch.setattr(_policy.PolicyEstimator, "_window_source", stale)
    stuck, _ = _run("sliding 100/10 s", "x-ratelimit", True, monkeypatch, **draw)
    with pytest.raises(AssertionError, match="differs"):
        _same(stuck, derived)
