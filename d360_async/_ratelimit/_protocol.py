"""The seam between the transport and any rate limiter."""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

import attrs

from ._state import RateLimitState

__all__ = ["LimiterStats", "Priority", "RateLimitKey", "RateLimiter", "Ticket"]


class Priority(enum.IntEnum):
    """Lower value is served first among waiters on the same key.

    Direct calls (``await client.exports.get(...)``) go ahead of watch polls that share the key;
    within one priority, waiters are served first come, first served.
    """

    DIRECT = 0
    POLL = 1


@attrs.frozen(slots=True)
class RateLimitKey:
    """The budget a request draws from: the vendor limits per token per project.

    ``token_fingerprint`` is a short, non-reversible digest of the credential (never the
    credential itself), so keys are safe to log and to store in Redis.
    """

    host: str
    token_fingerprint: str
    project_id: str | None = None

    def __str__(self) -> str:
        return f"{self.host}|{self.token_fingerprint}|{self.project_id or '-'}"


@attrs.define(slots=True, eq=False)
class Ticket:
    """Proof that a request was admitted; handed back to :meth:`RateLimiter.complete`."""

    key: RateLimitKey
    admitted_at: float
    waited: float = 0.0


@attrs.frozen(slots=True)
class LimiterStats:
    """A snapshot of one key's counters and current estimate."""

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


@runtime_checkable
class RateLimiter(Protocol):
    """Admits requests so that a key never exceeds its budget.

    The transport calls :meth:`acquire` before every request is sent and :meth:`complete`
    exactly once afterwards, whatever happened (``status=None`` when no response arrived).
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

    async def aclose(self) -> None:
        """Release any resource the limiter holds; idempotent."""
        ...
