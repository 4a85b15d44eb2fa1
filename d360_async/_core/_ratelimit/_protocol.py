"""The seam between the transport and any rate limiter."""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

import attrs

from d360_async._core._ratelimit._headers import RateLimitState
from d360_async._core._ratelimit._policy import PolicyEstimate

__all__ = ["LimiterStats", "Priority", "RateLimitKey", "RateLimiter", "Ticket"]


class Priority(enum.IntEnum):
    """Lower value is served first among waiters on the same key.

    Direct calls (``await client.exports.get(...)``) go ahead of watch polls that share the key;
    within one priority, waiters are served first come, first served.
    """

    DIRECT = 0
    POLL = 1


@attrs.frozen(slots=True, cache_hash=True)
class RateLimitKey:
    """The budget a request draws from: the vendor limits per token per project.

    ``token_fingerprint`` is a short, non-reversible digest of the credential (never the
    credential itself), so keys are safe to log and to store in Redis. The hash is computed
    once: a key is looked up on every acquire and every complete.
    """

    host: str
    token_fingerprint: str
    project_id: str | None = None

    def __str__(self) -> str:
        return f"{self.host}|{self.token_fingerprint}|{self.project_id or '-'}"


@attrs.define(slots=True, eq=False)
class Ticket:
    """Proof that a request was admitted; handed back to
    [RateLimiter.complete][d360_async.RateLimiter.complete].

    Attributes:
        key: the budget it was drawn from.
        admitted_at: when it was admitted, on the limiter's clock.
        waited: seconds spent waiting for admission.
        priority: the priority it was requested with.
        completed: set by [RateLimiter.complete][d360_async.RateLimiter.complete]; completing twice
            is an error.
        seq: the admission number on its key (1, 2, ...): answers are ordered by it.
    """

    key: RateLimitKey
    admitted_at: float
    waited: float = 0.0
    priority: Priority = Priority.DIRECT
    completed: bool = attrs.field(default=False, repr=False)
    seq: int = attrs.field(default=0, kw_only=True)


@attrs.frozen(slots=True)
class LimiterStats:
    """A snapshot of one key's counters and current estimate.

    Attributes:
        key: the budget.
        requests: requests admitted.
        waits: admissions that had to wait.
        total_wait: seconds spent waiting, summed over admissions.
        throttled: 429 answers seen.
        limit: the last ``X-RateLimit-Limit`` the server announced, if any.
        remaining: the estimate of the server's remaining budget, once a response said.
        reset_after: seconds until the server's window resets, when known.
        rate: the admission rate in force now, requests per second (0 while paused).
        in_flight: admitted requests not yet completed.
        queued: callers waiting for admission now.
        paused_for: seconds the key stays paused after a 429 (0 when not paused).
        budget: the sustainable rate, requests per second (see
            [RateLimiter.budget][d360_async.RateLimiter.budget]).
        policy: the server's policy as learned so far, each belief with its evidence (None
            for a limiter that does not learn).
    """

    key: RateLimitKey
    requests: int
    waits: int
    total_wait: float
    throttled: int
    limit: int | None
    remaining: float | None
    reset_after: float | None
    rate: float
    in_flight: int
    queued: int = 0
    paused_for: float = 0.0
    budget: float = 0.0
    policy: PolicyEstimate | None = None


@runtime_checkable
class RateLimiter(Protocol):
    """Admits requests so that a key never exceeds its budget.

    The transport calls [acquire][d360_async.RateLimiter.acquire] before every request is sent and
    [complete][d360_async.RateLimiter.complete] exactly once afterwards, whatever happened
    (``status=None`` when no response arrived).
    """

    async def acquire(self, key: RateLimitKey, *, priority: Priority = Priority.DIRECT) -> Ticket:
        """Wait until a request on ``key`` may be sent, then return its ticket."""
        ...

    async def complete(
        self, ticket: Ticket, *, status: int | None, state: RateLimitState | None
    ) -> None:
        """Calibrate from what the response said (or record that none came)."""
        ...

    def stats(self) -> list[LimiterStats]:
        """Counters and estimates for every key seen so far."""
        ...

    def has_capacity(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> bool:
        """Whether [acquire][d360_async.RateLimiter.acquire] at ``priority`` would be admitted right
        now, without waiting."""
        ...

    def next_available(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> float:
        """Seconds until an [acquire][d360_async.RateLimiter.acquire] at ``priority`` would be
        admitted (0: now).

        Counts the callers already queued ahead at that priority or better; an estimate, since
        later arrivals with a better priority and new responses can change it.
        """
        ...

    def paused_for(self, key: RateLimitKey) -> float:
        """Seconds until the server lets ``key`` spend again, as the server itself said: a
        429's `Retry-After`, or a spent window's announced reset (0: nothing the server
        said holds it back). The limiter's own pace and the callers queued on it are not
        counted. The transport raises [RateLimited][d360_async.RateLimited] instead of
        queueing a call when this exceeds ``RetryPolicy.max_retry_after``.

        Added in version 0.2.0.
        """
        ...

    def budget(self, key: RateLimitKey) -> float:
        """The sustainable requests per second on ``key``: what a poller may plan to spend.

        The long-run rate (the announced limit per period, or the configured one less the
        safety margin, scaled down after 429s), not the instantaneous one: short spreads
        before a reset and pauses are left out. Always positive.
        """
        ...

    async def aclose(self) -> None:
        """Release any resource the limiter holds; idempotent."""
        ...
