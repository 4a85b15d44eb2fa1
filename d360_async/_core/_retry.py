"""When to try a request again, and after how long: pure decisions, no sleeping.

The transport runs the loop; [RetryPolicy.decide][d360_async.RetryPolicy.decide] is asked after
every failed attempt and either returns the delay before the next one or raises. The rules, written
once:

* **What is retried.** Idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE) retry on 429,
  5xx, transport failures (connect, timeout, dropped connection) and an unreadable 2xx body of
  a GET. POST and PATCH retry only on 429 (the vendor refused before doing anything) and on
  [ConnectError][d360_async.ConnectError] and
  [CredentialsUnavailable][d360_async.CredentialsUnavailable] (the request was never sent):
  anything else might create a second export. 400, 401, 403 and 404 are never retried; a 401
  refresh is the transport's business.
* **How long.** ``Retry-After`` on a 429 or 503 is honoured (the vendor's 429 page: "Retry after
  the duration specified in the Retry-After header") plus at most 10 % jitter so that clients
  throttled together do not return together. A wait above ``max_retry_after`` is not slept: a
  [RateLimited][d360_async.RateLimited] carrying ``retry_at`` is raised so the caller can decide.
  Otherwise full-jitter exponential backoff, ``uniform(0, min(cap, base * 2 ** (attempt - 1)))``.
* **How many.** At most ``max_attempts`` attempts and no retry whose delay would end past
  ``deadline`` seconds after the call began.
* **How much, across calls.** Each retry spends tokens from a `RetryQuota` shared by one
  client (``timeout_cost`` for a timeout, ``retry_cost`` otherwise) and each success refills a
  little, so a sustained outage turns into one attempt per call instead of ``max_attempts``
  times the traffic. 429 retries are free: the rate limiter already paces them.
"""

from __future__ import annotations

import random
from typing import Any, NoReturn

import attrs

from d360_async._core._errors import (
    ConnectError,
    CredentialsUnavailable,
    D360Error,
    MalformedResponse,
    RateLimited,
    ServerError,
    TransportError,
)
from d360_async._core._errors import TimeoutError as RequestTimeout

__all__ = ["IDEMPOTENT_METHODS", "RetryPolicy", "RetryQuota"]

IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Methods safe to repeat (RFC 9110 §9.2.2): a second copy changes nothing the first did not."""

_RETRY_AFTER_JITTER = 0.10
# 2 ** 1023 still fits a float; well before that the cap has long taken over.
_MAX_EXPONENT = 64


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")


def _non_negative_int(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0, got {value!r}")


def _positive_int(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an int >= 1, got {value!r}")


def _optional_positive(
    instance: object, attribute: attrs.Attribute[Any], value: float | None
) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not value > 0
    ):
        raise ValueError(f"{attribute.name} must be a number > 0 or None, got {value!r}")


class RetryQuota:
    """A pool of retry tokens shared by every call of one client.

    Retries spend tokens; successes put a few back (up to ``capacity``). Only used from the
    event loop thread, so the methods need no lock.
    """

    __slots__ = ("available", "capacity")

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise ValueError(f"capacity must be an int >= 0, got {capacity!r}")
        self.capacity = capacity
        self.available = capacity

    def try_spend(self, cost: int) -> bool:
        """Take ``cost`` tokens if there are that many; report whether it did."""
        if cost < 0:
            raise ValueError(f"cost must be >= 0, got {cost!r}")
        if cost > self.available:
            return False
        self.available -= cost
        return True

    def refill(self, amount: int) -> None:
        """Give back ``amount`` tokens, never beyond ``capacity``."""
        if amount < 0:
            raise ValueError(f"amount must be >= 0, got {amount!r}")
        self.available = min(self.capacity, self.available + amount)

    def __repr__(self) -> str:
        return f"<RetryQuota {self.available}/{self.capacity} available>"


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How one client retries failed requests. See the module docstring for the rules.

    Attributes:
        max_attempts: attempts per call, the first included (1 disables retries).
        backoff_base: the ceiling of the first backoff, in seconds.
        backoff_cap: the largest ceiling any backoff can have, in seconds.
        deadline: seconds one call may take including all retries; ``None`` for no limit.
        max_retry_after: the longest server-requested wait that is slept; above it,
            [RateLimited][d360_async.RateLimited] with ``retry_at`` is raised instead.
        quota: capacity of the per-client `RetryQuota`.
        retry_cost: tokens a retry spends.
        timeout_cost: tokens a retry after a timeout spends (timeouts are the costliest
            failures to repeat: each one held a connection for the whole timeout).
        success_refill: tokens a successful call gives back.
    """

    max_attempts: int = attrs.field(default=4, validator=_positive_int)
    backoff_base: float = attrs.field(default=0.5, validator=_non_negative)
    backoff_cap: float = attrs.field(default=20.0, validator=_non_negative)
    deadline: float | None = attrs.field(default=60.0, validator=_optional_positive)
    max_retry_after: float = attrs.field(default=120.0, validator=_non_negative)
    quota: int = attrs.field(default=100, validator=_non_negative_int)
    retry_cost: int = attrs.field(default=5, validator=_non_negative_int)
    timeout_cost: int = attrs.field(default=10, validator=_non_negative_int)
    success_refill: int = attrs.field(default=1, validator=_non_negative_int)

    def new_quota(self) -> RetryQuota:
        """A full `RetryQuota` sized for this policy."""
        return RetryQuota(self.quota)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter delay after ``attempt`` failed attempts (``attempt >= 1``).

        Drawing uniformly from zero to the exponential ceiling spreads clients that failed
        together across the whole window instead of bunching them at its end.
        """
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt!r}")
        exponent = min(attempt - 1, _MAX_EXPONENT)
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0**exponent)
        return rng.uniform(0.0, ceiling)

    def is_retryable(self, method: str, error: D360Error) -> bool:
        """Whether ``error`` on ``method`` may be retried at all, ignoring budgets."""
        if isinstance(error, RateLimited):
            # Only a real 429: a RateLimited without one (a wait above the cap) is final.
            return error.status == 429
        if isinstance(error, ConnectError | CredentialsUnavailable):
            return True  # nothing was sent
        method = method.upper()
        if method not in IDEMPOTENT_METHODS:
            return False
        if isinstance(error, ServerError | TransportError):
            return True
        if isinstance(error, MalformedResponse):
            # A truncated or garbled 2xx body of a read; the next read is as good as the first.
            return method == "GET" and error.status is not None and 200 <= error.status < 300
        return False

    def decide(
        self,
        *,
        method: str,
        error: D360Error,
        attempt: int,
        elapsed: float,
        now: float,
        rng: random.Random,
        quota: RetryQuota,
    ) -> float:
        """Return the delay before the next attempt, or raise when there is none.

        Args:
            method: the request's HTTP method.
            error: what the failed attempt produced (already decoded).
            attempt: attempts made so far, the failed one included (1 after the first).
            elapsed: seconds since the call began (monotonic).
            now: wall-clock epoch seconds, for ``retry_at``.
            rng: the jitter source.
            quota: the client's shared `RetryQuota`; spent only when a retry is granted.

        Raises:
            RateLimited: chained from ``error``, when the server asked for a wait longer than
                ``max_retry_after``.
            D360Error: ``error`` itself when it is not retryable or a budget is exhausted.
        """
        if not self.is_retryable(method, error):
            raise error
        if attempt >= self.max_attempts:
            raise error
        requested = _requested_wait(error)
        if requested is not None:
            if requested > self.max_retry_after:
                _raise_wait_too_long(error, requested, self.max_retry_after, now)
            delay = requested * (1.0 + rng.uniform(0.0, _RETRY_AFTER_JITTER))
        else:
            delay = self.backoff(attempt, rng)
        if self.deadline is not None and elapsed + delay > self.deadline:
            raise error
        throttled = isinstance(error, RateLimited)
        if not throttled:
            cost = self.timeout_cost if isinstance(error, RequestTimeout) else self.retry_cost
            if not quota.try_spend(cost):
                raise error
        return delay


def _requested_wait(error: D360Error) -> float | None:
    """The server's ``Retry-After`` when it applies: on a 429, and on a 503 (RFC 9110 §10.2.3)."""
    if error.status not in (429, 503) or error.rate_limit is None:
        return None
    wait = error.rate_limit.retry_after
    return wait if wait is not None and wait >= 0 else None


def _raise_wait_too_long(error: D360Error, wait: float, cap: float, now: float) -> NoReturn:
    raise RateLimited(
        f"Server asked to wait {wait:g} s, more than max_retry_after={cap:g} s",
        retry_at=now + wait,
        method=error.method,
        url=error.url,
        status=error.status,
        request_id=error.request_id,
        trace_id=error.trace_id,
        errors=error.errors,
        rate_limit=error.rate_limit,
    ) from error
