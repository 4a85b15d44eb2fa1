"""Rate limiting: header parsing, token-bucket arithmetic, in-process and Redis limiters.

The transport talks to a [RateLimiter][d360_async.RateLimiter] (acquire before each attempt,
complete exactly once after it); [LocalRateLimiter][d360_async.LocalRateLimiter] serves one process,
[RedisRateLimiter][d360_async.RedisRateLimiter] shares budgets between processes (``pip install
d360-async[redis]``). The Redis limiter and its ticket are imported on first access only, so that
importing this package never loads the Redis module (and, through it, nothing of the optional
extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._bucket import BucketSnapshot, TokenBucket
from ._headers import parse_http_date, parse_rate_limit, parse_retry_after
from ._local import LocalRateLimiter, RateLimitConfig
from ._protocol import LimiterStats, Priority, RateLimiter, RateLimitKey, Ticket
from ._state import RateLimitState

if TYPE_CHECKING:
    from ._redis import RedisRateLimiter, RedisTicket

__all__ = [
    "BucketSnapshot",
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
    "TokenBucket",
    "parse_http_date",
    "parse_rate_limit",
    "parse_retry_after",
]

_LAZY = frozenset({"RedisRateLimiter", "RedisTicket"})


def __getattr__(name: str) -> Any:
    # The Redis limiter belongs to an optional extra: import it only when asked for.
    if name in _LAZY:
        from . import _redis

        value = getattr(_redis, name)
        globals()[name] = value  # later lookups do not come back here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
