"""Rate limiting: header parsing, token-bucket arithmetic, in-process and Redis limiters.

The transport talks to a :class:`RateLimiter` (acquire before each attempt, complete exactly
once after it); :class:`LocalRateLimiter` serves one process, :class:`RedisRateLimiter` shares
budgets between processes (``pip install d360-async[redis]``).
"""

from ._bucket import BucketSnapshot, TokenBucket
from ._headers import parse_http_date, parse_rate_limit, parse_retry_after
from ._local import LocalRateLimiter, RateLimitConfig
from ._protocol import LimiterStats, Priority, RateLimiter, RateLimitKey, Ticket
from ._redis import RedisRateLimiter, RedisTicket
from ._state import RateLimitState

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
