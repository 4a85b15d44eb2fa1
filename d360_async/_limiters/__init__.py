"""Layer 2, the limiters: the in-process and the Redis-backed [RateLimiter][d360_async.RateLimiter].

The transport talks to a [RateLimiter][d360_async.RateLimiter] (acquire before each attempt,
complete exactly once after it); [LocalRateLimiter][d360_async.LocalRateLimiter] serves one process,
[RedisRateLimiter][d360_async.RedisRateLimiter] shares budgets between processes (``pip install
d360-async[redis]``). Their arithmetic (header parsing, policy estimation, the budget) is the
pure `d360_async._core._ratelimit`; this package adds waiting, locking and Redis. The Redis
limiter and its ticket are imported on first access only, so that importing this package never
loads the Redis module (and, through it, nothing of the optional extra).

What it may import: `d360_async._core`, asyncio, redis (optional). Never the transport, the
resources, the watch or the clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from d360_async._core._ratelimit._headers import (
    RateLimitState,
    parse_http_date,
    parse_rate_limit,
    parse_retry_after,
)
from d360_async._core._ratelimit._protocol import (
    LimiterStats,
    Priority,
    RateLimiter,
    RateLimitKey,
    Ticket,
)
from d360_async._limiters._local import LocalRateLimiter, RateLimitConfig

if TYPE_CHECKING:
    from d360_async._limiters._redis import RedisRateLimiter, RedisTicket

__all__ = [
    "LimiterStats",
    "LocalRateLimiter",
    "Priority",
    "RateLimitConfig",
    "RateLimitKey",
    "RateLimitState",
    "RateLimiter",
    "RedisRateLimiter",
    "RedisTicket",
    "Ticket",
    "parse_http_date",
    "parse_rate_limit",
    "parse_retry_after",
]

_LAZY = frozenset({"RedisRateLimiter", "RedisTicket"})


def __getattr__(name: str) -> Any:
    # The Redis limiter belongs to an optional extra: import it only when asked for.
    if name in _LAZY:
        from d360_async._limiters import _redis

        value = getattr(_redis, name)
        globals()[name] = value  # later lookups do not come back here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
