"""Retry decisions, driven synchronously: no sleeping, seeded randomness, time passed in."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from d360_async._core._errors import (
    APIError,
    AuthenticationError,
    ConnectError,
    ConnectTimeout,
    CredentialsUnavailable,
    D360Error,
    DownloadLinkExpired,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    ServerError,
    TimeoutError,
    TransportError,
    ValidationError,
)
from d360_async._core._ratelimit._headers import RateLimitState
from d360_async._core._retry import IDEMPOTENT_METHODS, RetryPolicy, RetryQuota

NOW = 1_700_000_000.0


def api_error(cls: type[APIError], status: int, retry_after: float | None = None) -> APIError:
    state = RateLimitState(retry_after=retry_after)
    kwargs: dict[str, Any] = {
        "method": "GET",
        "url": "https://h/x",
        "status": status,
        "rate_limit": state,
    }
    if cls is RateLimited:
        return RateLimited("Too Many Requests", retry_at=None, **kwargs)
    return cls("failed", **kwargs)


def full_jitter(attempt: int, *, seed: int = 0, base: float = 0.5, cap: float = 20.0) -> float:
    """The documented backoff, computed here: ``uniform(0, min(cap, base * 2 ** (attempt - 1)))``
    with the draw of ``random.Random(seed)``."""
    return random.Random(seed).random() * min(cap, base * 2.0 ** (attempt - 1))


def decide(
    policy: RetryPolicy,
    error: D360Error,
    *,
    method: str = "GET",
    attempt: int = 1,
    elapsed: float = 0.0,
    seed: int = 0,
    quota: RetryQuota | None = None,
) -> float:
    return policy.decide(
        method=method,
        error=error,
        attempt=attempt,
        elapsed=elapsed,
        now=NOW,
        rng=random.Random(seed),
        quota=quota if quota is not None else policy.new_quota(),
    )


# --- the policy object -------------------------------------------------------------------------


def test_defaults() -> None:
    policy = RetryPolicy()
    assert attrs.asdict(policy) == {
        "max_attempts": 4,
        "backoff_base": 0.5,
        "backoff_cap": 20.0,
        "deadline": 60.0,
        "max_retry_after": 120.0,
        "quota": 100,
        "retry_cost": 5,
        "timeout_cost": 10,
        "success_refill": 1,
    }


def test_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        RetryPolicy(3)  # type: ignore[call-arg]
    policy = RetryPolicy(max_attempts=2, deadline=None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.max_attempts = 5  # type: ignore[misc]
    assert attrs.evolve(policy, max_attempts=5).max_attempts == 5


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", 1.5),
        ("max_attempts", True),
        ("backoff_base", -0.1),
        ("backoff_base", float("nan")),
        ("backoff_cap", -1),
        ("deadline", 0),
        ("deadline", -5.0),
        ("max_retry_after", -1.0),
        ("max_retry_after", "60"),
        ("quota", -1),
        ("retry_cost", -1),
        ("timeout_cost", 2.5),
        ("success_refill", -1),
    ],
)
def test_validation(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


# --- backoff -----------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(1, 11))
def test_full_jitter_bounds(attempt: int) -> None:
    policy = RetryPolicy()
    ceiling = min(policy.backoff_cap, policy.backoff_base * 2 ** (attempt - 1))
    delays = [policy.backoff(attempt, random.Random(seed)) for seed in range(300)]
    assert all(0.0 <= delay <= ceiling for delay in delays)
    # Full jitter spreads over the whole window, not just its top.
    assert min(delays) < 0.1 * ceiling
    assert max(delays) > 0.9 * ceiling


def test_backoff_survives_huge_attempt_numbers() -> None:
    assert 0.0 <= RetryPolicy().backoff(100_000, random.Random(1)) <= 20.0


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        RetryPolicy().backoff(0, random.Random(0))


def test_backoff_is_reproducible_from_the_seed() -> None:
    policy = RetryPolicy()
    assert policy.backoff(3, random.Random(42)) == policy.backoff(3, random.Random(42))


# --- what is retried ---------------------------------------------------------------------------


def _errors() -> dict[str, Callable[[], D360Error]]:
    return {
        "400": lambda: api_error(ValidationError, 400),
        "401": lambda: api_error(AuthenticationError, 401),
        "403": lambda: api_error(PermissionDenied, 403),
        "404": lambda: api_error(NotFound, 404),
        "409": lambda: api_error(APIError, 409),
        "429": lambda: api_error(RateLimited, 429),
        "500": lambda: api_error(ServerError, 500),
        "502": lambda: api_error(ServerError, 502),
        "503": lambda: api_error(ServerError, 503),
        "connect": lambda: ConnectError("refused"),
        "connect-timeout": lambda: ConnectTimeout("connect timed out"),
        "timeout": lambda: TimeoutError("read timeout"),
        "protocol": lambda: ProtocolError("connection reset"),
        "transport": lambda: TransportError("other"),
        "malformed-200": lambda: MalformedResponse("truncated", status=200),
        "malformed-no-status": lambda: MalformedResponse("?"),
        "rate-limited-no-status": lambda: RateLimited("wait too long", retry_at=NOW + 500),
        "link-expired": lambda: DownloadLinkExpired("expired", status=403),
    }


RETRIED_BY_METHOD: dict[str, set[str]] = {
    "GET": {
        "connect-timeout",
        "429",
        "500",
        "502",
        "503",
        "connect",
        "timeout",
        "protocol",
        "transport",
        "malformed-200",
    },
    "POST": {"429", "connect", "connect-timeout"},
    "PATCH": {"429", "connect", "connect-timeout"},
}
RETRIED_BY_METHOD["HEAD"] = RETRIED_BY_METHOD["GET"] - {"malformed-200"}
RETRIED_BY_METHOD["OPTIONS"] = RETRIED_BY_METHOD["HEAD"]
RETRIED_BY_METHOD["PUT"] = RETRIED_BY_METHOD["HEAD"]
RETRIED_BY_METHOD["DELETE"] = RETRIED_BY_METHOD["HEAD"]


@pytest.mark.parametrize("method", sorted(RETRIED_BY_METHOD))
@pytest.mark.parametrize("kind", sorted(_errors()))
def test_what_is_retried(method: str, kind: str) -> None:
    policy = RetryPolicy()
    error = _errors()[kind]()
    expected = kind in RETRIED_BY_METHOD[method]
    assert policy.is_retryable(method, error) is expected
    assert policy.is_retryable(method.lower(), error) is expected
    if expected:
        assert decide(policy, error, method=method) == pytest.approx(full_jitter(1))
    else:
        with pytest.raises(D360Error) as excinfo:
            decide(policy, error, method=method)
        assert excinfo.value is error


def test_idempotent_methods() -> None:
    assert {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"} == IDEMPOTENT_METHODS


def test_post_not_retried_on_500_but_on_connect_and_429() -> None:
    policy = RetryPolicy()
    error = api_error(ServerError, 500)
    with pytest.raises(ServerError) as excinfo:
        decide(policy, error, method="POST")
    assert excinfo.value is error
    assert decide(policy, ConnectError("refused"), method="POST") <= policy.backoff_base
    assert 2.0 <= decide(policy, api_error(RateLimited, 429, 2.0), method="POST") <= 2.2
    with pytest.raises(TimeoutError):
        decide(policy, TimeoutError("maybe sent"), method="POST")


# --- how long ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("retry_after", [0.0, 1.0, 7.0, 119.0, 120.0])
def test_retry_after_is_honoured_with_small_jitter(status: int, retry_after: float) -> None:
    cls = RateLimited if status == 429 else ServerError
    error = api_error(cls, status, retry_after)
    delays = [decide(RetryPolicy(deadline=None), error, seed=seed) for seed in range(100)]
    assert all(retry_after <= delay <= retry_after * 1.1 for delay in delays)
    if retry_after:
        assert len(set(delays)) > 1


def test_429_without_retry_after_backs_off() -> None:
    delay = decide(RetryPolicy(), api_error(RateLimited, 429), attempt=3)
    assert 0.0 <= delay <= 2.0


def test_retry_after_on_a_500_is_ignored() -> None:
    assert decide(RetryPolicy(), api_error(ServerError, 500, 50.0)) <= 0.5


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_beyond_the_cap_raises_rate_limited(status: int) -> None:
    cls = RateLimited if status == 429 else ServerError
    error = api_error(cls, status, 300.0)
    quota = RetryQuota(100)
    with pytest.raises(RateLimited) as excinfo:
        decide(RetryPolicy(), error, quota=quota)
    raised = excinfo.value
    assert raised is not error
    assert raised.__cause__ is error
    assert raised.retry_at == NOW + 300.0
    assert raised.status == status
    assert raised.url == error.url
    assert raised.rate_limit is error.rate_limit
    assert "300 s" in raised.message
    assert "max_retry_after=120 s" in raised.message
    assert quota.available == 100


def test_the_cap_is_configurable() -> None:
    error = api_error(RateLimited, 429, 300.0)
    assert 300.0 <= decide(RetryPolicy(max_retry_after=600, deadline=None), error) <= 330.0
    with pytest.raises(RateLimited):
        decide(RetryPolicy(max_retry_after=0), api_error(RateLimited, 429, 0.5))


# --- how many ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("attempt", "retried"), [(1, True), (3, True), (4, False), (9, False)])
def test_max_attempts(attempt: int, retried: bool) -> None:
    error = api_error(ServerError, 500)
    if retried:
        assert decide(RetryPolicy(), error, attempt=attempt) == pytest.approx(full_jitter(attempt))
    else:
        with pytest.raises(ServerError) as excinfo:
            decide(RetryPolicy(), error, attempt=attempt)
        assert excinfo.value is error


def test_single_attempt_policy_never_retries() -> None:
    with pytest.raises(RateLimited):
        decide(RetryPolicy(max_attempts=1), api_error(RateLimited, 429, 1.0))


def test_deadline_is_honoured() -> None:
    policy = RetryPolicy(deadline=10.0)
    error = api_error(RateLimited, 429, 5.0)
    assert decide(policy, error, elapsed=4.0) <= 5.5
    with pytest.raises(RateLimited) as excinfo:
        decide(policy, error, elapsed=5.1)
    assert excinfo.value is error
    # Backoff after attempt 1 is at most 0.5 s.
    assert decide(policy, api_error(ServerError, 500), elapsed=9.4) <= 0.5
    with pytest.raises(ServerError):
        decide(policy, api_error(ServerError, 500), elapsed=10.0)


def test_no_deadline() -> None:
    error = api_error(ServerError, 500)
    assert decide(RetryPolicy(deadline=None), error, elapsed=1e9) == pytest.approx(full_jitter(1))


def test_refusals_do_not_spend_the_quota() -> None:
    quota = RetryQuota(100)
    policy = RetryPolicy(deadline=1.0)
    for kwargs in ({"attempt": 4}, {"elapsed": 1.0}, {"method": "POST"}):
        with pytest.raises(ServerError):
            decide(policy, api_error(ServerError, 500), quota=quota, **kwargs)
    assert quota.available == 100


# --- how much, across calls --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "cost"),
    [
        pytest.param(api_error(ServerError, 500), 5, id="5xx"),
        pytest.param(api_error(ServerError, 503, 1.0), 5, id="503-retry-after"),
        pytest.param(ConnectError("refused"), 5, id="connect"),
        pytest.param(ProtocolError("reset"), 5, id="protocol"),
        pytest.param(MalformedResponse("truncated", status=200), 5, id="malformed"),
        pytest.param(TimeoutError("slow"), 10, id="timeout"),
        pytest.param(ConnectTimeout("slow"), 10, id="connect-timeout"),
        pytest.param(api_error(RateLimited, 429, 1.0), 0, id="429-free"),
    ],
)
def test_quota_costs(error: D360Error, cost: int) -> None:
    quota = RetryQuota(100)
    decide(RetryPolicy(), error, quota=quota)
    assert quota.available == 100 - cost


def test_empty_quota_stops_retries_but_not_429s() -> None:
    quota = RetryQuota(4)
    error = api_error(ServerError, 500)
    with pytest.raises(ServerError) as excinfo:
        decide(RetryPolicy(), error, quota=quota)
    assert excinfo.value is error
    assert quota.available == 4
    assert decide(RetryPolicy(), api_error(RateLimited, 429, 1.0), quota=RetryQuota(0)) >= 1.0
    with pytest.raises(RateLimited):
        decide(RetryPolicy(), api_error(RateLimited, 429, 1.0), quota=RetryQuota(0), attempt=4)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0


def run_call(
    policy: RetryPolicy,
    quota: RetryQuota,
    outcomes: Iterator[D360Error | None],
    clock: FakeClock,
    rng: random.Random,
    *,
    method: str = "GET",
) -> tuple[int, D360Error | None]:
    """The transport's loop, minus I/O: what ``Transport.request`` does with ``decide``.

    Returns the number of attempts made and the error raised (``None`` on success).
    """
    started = clock.now
    attempt = 0
    while True:
        attempt += 1
        error = next(outcomes)
        clock.now += 0.05  # each attempt takes 50 ms
        if error is None:
            quota.refill(policy.success_refill)
            return attempt, None
        try:
            delay = policy.decide(
                method=method,
                error=error,
                attempt=attempt,
                elapsed=clock.now - started,
                now=NOW + clock.now,
                rng=rng,
                quota=quota,
            )
        except D360Error as raised:
            return attempt, raised
        clock.now += delay


def always(factory: Callable[[], D360Error | None]) -> Iterator[D360Error | None]:
    while True:
        yield factory()


def test_sustained_outage_drains_the_quota_then_successes_refill_it() -> None:
    policy = RetryPolicy()
    quota = policy.new_quota()
    clock, rng = FakeClock(), random.Random(7)
    outage = always(lambda: api_error(ServerError, 500))

    served = 0
    attempts_per_call: list[int] = []
    while served < 100:
        attempts, error = run_call(policy, quota, outage, clock, rng)
        assert isinstance(error, ServerError)
        attempts_per_call.append(attempts)
        served += attempts
    # 100 tokens at 5 per retry buy exactly 20 retries, whatever the call boundaries.
    assert sum(attempts_per_call) - len(attempts_per_call) == 20
    assert quota.available == 0
    assert attempts_per_call[:6] == [4] * 6
    assert attempts_per_call[6] == 3
    assert set(attempts_per_call[7:]) == {1}
    # Without the quota, the same 100 responses would have been only 25 calls.
    assert len(attempts_per_call) == 100 - 20

    # The service recovers: five successes buy one retry again.
    for _ in range(5):
        assert run_call(policy, quota, always(lambda: None), clock, rng) == (1, None)
    assert quota.available == 5
    attempts, _ = run_call(policy, quota, outage, clock, rng)
    assert attempts == 2
    assert quota.available == 0


def test_quota_refill_never_exceeds_capacity() -> None:
    policy = RetryPolicy(quota=10)
    quota = policy.new_quota()
    clock, rng = FakeClock(), random.Random(1)
    for _ in range(50):
        run_call(policy, quota, always(lambda: None), clock, rng)
    assert quota.available == 10


def test_throttling_storm_does_not_touch_the_quota() -> None:
    policy = RetryPolicy(deadline=None)
    quota = policy.new_quota()
    clock, rng = FakeClock(), random.Random(3)
    for _ in range(50):
        attempts, error = run_call(
            policy, quota, always(lambda: api_error(RateLimited, 429, 1.0)), clock, rng
        )
        assert attempts == 4
        assert isinstance(error, RateLimited)
    assert quota.available == 100


def test_deadline_bounds_a_whole_call() -> None:
    policy = RetryPolicy(max_attempts=100, deadline=5.0, backoff_cap=2.0)
    clock, rng = FakeClock(), random.Random(11)
    attempts, error = run_call(
        policy, policy.new_quota(), always(lambda: ConnectError("down")), clock, rng
    )
    assert isinstance(error, ConnectError)
    assert 1 < attempts < 100
    assert clock.now <= 5.0 + 0.05


def test_post_call_is_sent_once_on_a_500() -> None:
    policy = RetryPolicy()
    attempts, error = run_call(
        policy,
        policy.new_quota(),
        always(lambda: api_error(ServerError, 500)),
        FakeClock(),
        random.Random(0),
        method="POST",
    )
    assert (attempts, type(error)) == (1, ServerError)


# --- RetryQuota --------------------------------------------------------------------------------


def test_retry_quota() -> None:
    quota = RetryQuota(10)
    assert repr(quota) == "<RetryQuota 10/10 available>"
    assert quota.try_spend(7)
    assert not quota.try_spend(4)
    assert quota.available == 3
    assert quota.try_spend(3)
    assert quota.try_spend(0)
    quota.refill(4)
    assert repr(quota) == "<RetryQuota 4/10 available>"
    quota.refill(100)
    assert quota.available == quota.capacity == 10
    with pytest.raises(AttributeError):
        quota.extra = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "action",
    [
        lambda: RetryQuota(-1),
        lambda: RetryQuota(True),
        lambda: RetryQuota(10).try_spend(-1),
        lambda: RetryQuota(10).refill(-1),
    ],
    ids=["negative-capacity", "bool-capacity", "negative-cost", "negative-refill"],
)
def test_retry_quota_validation(action: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        action()


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH"])
def test_a_failing_credential_source_is_retried_for_every_method(method: str) -> None:
    policy = RetryPolicy()
    error = CredentialsUnavailable("the token provider failed: ConnectionError: down")
    assert policy.is_retryable(method, error)
    quota = policy.new_quota()
    delay = policy.decide(
        method=method,
        error=error,
        attempt=1,
        elapsed=0.0,
        now=0.0,
        rng=random.Random(1),
        quota=quota,
    )
    assert 0.0 <= delay <= policy.backoff_base
    assert quota.available == quota.capacity - policy.retry_cost
