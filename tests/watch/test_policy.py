"""PollPolicy: validation, backoff arithmetic and jitter bounds."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from d360_async._watch import PollPolicy


def test_defaults_are_sane() -> None:
    policy = PollPolicy()
    assert policy.first_delay == 0.0
    assert policy.interval <= policy.max_interval
    assert policy.backoff >= 1
    assert 0 <= policy.jitter < 1
    assert policy.reset_on_change
    assert policy.adaptive
    assert policy.target_timeout is None
    assert policy.watch_timeout is None
    assert policy.until is None
    assert policy.stall_after is None
    assert policy.poll_timeout == 30.0
    assert policy.slow_poll == 1.0
    assert policy.outage_after == 8
    assert policy.outage_probe_interval == 1.0
    assert PollPolicy(poll_timeout=None, outage_after=None).outage_after is None


def test_is_frozen_and_evolvable() -> None:
    policy = PollPolicy()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.interval = 2.0  # type: ignore[misc]
    assert attrs.evolve(policy, interval=2.0).interval == 2.0


def test_keyword_only() -> None:
    with pytest.raises(TypeError):
        PollPolicy(0.0)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"first_delay": -1.0}, id="negative-first-delay"),
        pytest.param({"poll_timeout": 0.0}, id="zero-poll-timeout"),
        pytest.param({"poll_timeout": math.inf}, id="infinite-poll-timeout"),
        pytest.param({"slow_poll": 0.0}, id="zero-slow-poll"),
        pytest.param({"outage_after": 0}, id="zero-outage-after"),
        pytest.param({"outage_after": True}, id="bool-outage-after"),
        pytest.param({"outage_after": 2.5}, id="float-outage-after"),
        pytest.param({"outage_probe_interval": -1.0}, id="negative-probe-interval"),
        pytest.param({"interval": 0.0}, id="zero-interval"),
        pytest.param({"interval": math.inf}, id="infinite-interval"),
        pytest.param({"backoff": 0.5}, id="shrinking-backoff"),
        pytest.param({"max_interval": math.nan}, id="nan-max-interval"),
        pytest.param({"interval": 10.0, "max_interval": 5.0}, id="max-below-interval"),
        pytest.param({"jitter": 1.0}, id="jitter-one"),
        pytest.param({"jitter": -0.1}, id="negative-jitter"),
        pytest.param({"target_timeout": 0.0}, id="zero-target-timeout"),
        pytest.param({"watch_timeout": -5.0}, id="negative-watch-timeout"),
        pytest.param({"stall_after": 0.0}, id="zero-stall"),
        pytest.param({"not_found_grace": -1.0}, id="negative-grace"),
    ],
)
def test_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        PollPolicy(**kwargs)


def test_rejects_non_callable_until() -> None:
    with pytest.raises(TypeError, match="until"):
        PollPolicy(until="review")  # type: ignore[arg-type]


def test_backoff_interval_grows_then_caps() -> None:
    policy = PollPolicy(interval=1.0, backoff=2.0, max_interval=10.0)
    assert [policy.backoff_interval(n) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert policy.backoff_interval(-3) == 1.0


def test_backoff_of_one_is_constant() -> None:
    policy = PollPolicy(interval=3.0, backoff=1.0, max_interval=30.0)
    assert policy.backoff_interval(50) == 3.0


def test_huge_streak_does_not_overflow() -> None:
    policy = PollPolicy(interval=0.5, backoff=3.0, max_interval=60.0)
    assert policy.backoff_interval(10**9) == 60.0


@given(
    interval=st.floats(0.01, 100),
    backoff=st.floats(1, 10),
    ratio=st.floats(1, 1000),
    streak=st.integers(0, 10_000),
)
def test_backoff_interval_is_within_bounds_and_monotone(
    interval: float, backoff: float, ratio: float, streak: int
) -> None:
    policy = PollPolicy(interval=interval, backoff=backoff, max_interval=interval * ratio)
    value = policy.backoff_interval(streak)
    assert policy.interval <= value <= policy.max_interval
    assert policy.backoff_interval(streak + 1) >= value


@given(
    jitter=st.floats(0, 0.99), delay=st.floats(0.001, 1e4), unit=st.floats(0, 1, exclude_max=True)
)
def test_jitter_stays_in_its_band(jitter: float, delay: float, unit: float) -> None:
    policy = PollPolicy(jitter=jitter)
    value = policy.jittered(delay, unit)
    assert delay * (1 - jitter) - 1e-9 <= value <= delay * (1 + jitter) + 1e-9


def test_no_jitter_is_exact() -> None:
    assert PollPolicy(jitter=0.0).jittered(7.0, 0.9) == 7.0
