"""An answer that only confirms what is believed (`PolicyEstimator.confirm`, `_policy.FAST`)
decides exactly what the general path (`observe`) decides.

The confirming path learns from such an answer with a few updates and keeps the version, so
what was derived from the beliefs stays kept. This drives the same budget through the same
simulated server (`policy_sim`: every family of `policy_matrix`, a tight fixed window, both
overhead benchmark servers, every dialect, with latency, skew, concurrency and a policy
changed under load drawn) with the switch on and off, and compares everything the budget
and its estimator decide and believe (every public reader) after every admission attempt
and every answer, and the server's admissions and 429s.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from policy_matrix import FAMILIES
from test_rl_memo import CASES, DIALECTS, _run, _same, compared, drawn

from d360_async._core._ratelimit import _policy
from d360_async._core._ratelimit._headers import RateLimitState
from d360_async.testing import FakeRateLimit


@compared(80)
@given(
    case=st.sampled_from(sorted(CASES)),
    dialect=st.sampled_from(DIALECTS),
    memo=st.booleans(),
    # A fixed latency keeps answers in order, as on the overhead benchmark's loop.
    draw=drawn(
        [(0.003, 0.003), (0.001, 0.005), (0.002, 0.02)],
        change=st.none()
        | st.tuples(
            st.floats(1.0, 30.0),
            st.sampled_from(sorted(FAMILIES)).map(lambda name: FAMILIES[name]),
        ),
    ),
)
def test_confirming_answers_decide_as_the_general_path(
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    dialect: str,
    memo: bool,
    draw: dict[str, Any],
) -> None:
    change = draw.pop("change")
    if change is not None:
        at, family = change
        draw["change"] = (at, FakeRateLimit(dialect=dialect, **family))  # type: ignore[arg-type]
    fast, fast_run = _run(case, dialect, memo, monkeypatch, fast=True, **draw)
    general, general_run = _run(case, dialect, memo, monkeypatch, fast=False, **draw)
    assert len(fast) > 10
    _same(fast, general)
    assert fast_run.times == general_run.times
    assert fast_run.throttled == general_run.throttled


def _confirmed(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record what every call of `confirm` returns."""
    taken: list[bool] = []
    confirm = _policy.PolicyEstimator.confirm

    def counted(self: _policy.PolicyEstimator, state: RateLimitState, **when: Any) -> bool:
        found = confirm(self, state, **when)
        taken.append(found)
        return found

    monkeypatch.setattr(_policy.PolicyEstimator, "confirm", counted)
    return taken


DRAW: dict[str, Any] = {
    "latency": (0.003, 0.003),
    "skew": 0.0,
    "phase": 0.37,
    "concurrency": 16,
    "seed": 1,
}


def test_the_honest_overhead_stream_is_mostly_confirming(monkeypatch: pytest.MonkeyPatch) -> None:
    """The property above compares something: on the overhead benchmark's server (a count
    of a million per 10 s window, answers in order), nearly every answer takes the
    confirming path; on the clamped server (every answer a refill), none does."""
    taken = _confirmed(monkeypatch)
    _run("overhead benchmark 1e6/10 s", "x-ratelimit", True, monkeypatch, **DRAW)
    assert len(taken) > 1000
    assert sum(taken) > 0.95 * len(taken)
    taken.clear()
    _run("overhead benchmark 1e9/60 s", "x-ratelimit", True, monkeypatch, **DRAW)
    assert len(taken) > 100
    assert not any(taken)


def test_a_confirming_path_that_takes_every_answer_would_be_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The comparison can fail: a confirming path that learns from every fresh answer as
    `observe` does but keeps the version (so what was derived before stays kept even when the
    answer taught something) decides differently from the general path."""
    draw = {**DRAW, "latency": (0.002, 0.02)}
    general, _ = _run("sliding 100/10 s", "x-ratelimit", True, monkeypatch, fast=False, **draw)

    def every(self: _policy.PolicyEstimator, state: RateLimitState, **when: Any) -> bool:
        last = self._last
        if last is None or when["seq"] <= last.seq:
            return False  # not fresh: `observe` reads it
        version = self.version
        self.observe(state, **when)
        self.version = version
        return True

    monkeypatch.setattr(_policy.PolicyEstimator, "confirm", every)
    stale, _ = _run("sliding 100/10 s", "x-ratelimit", True, monkeypatch, **draw)
    with pytest.raises(AssertionError, match="differs"):
        _same(stale, general)
