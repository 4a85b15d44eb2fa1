"""What one response said about the rate limit, parsed without I/O."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

__all__ = ["RateLimitState"]


@attrs.frozen(slots=True)
class RateLimitState:
    """The rate-limit facts one response carried.

    All durations are *relative* seconds measured from the moment the response was received,
    already corrected for clock skew using the response's ``Date`` header, so they can be
    applied to any monotonic clock.

    Attributes:
        limit: ``X-RateLimit-Limit``, requests per window, when sent.
        remaining: ``X-RateLimit-Remaining``, when sent.
        reset_after: seconds until the window resets (``X-RateLimit-Reset`` as a delay, or an
            epoch converted to a delay), when sent.
        retry_after: seconds the server asked us to wait (``Retry-After`` /
            ``retry-after-ms``), when sent.
    """

    limit: int | None = None
    remaining: int | None = None
    reset_after: float | None = None
    retry_after: float | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], now: float) -> RateLimitState:
        """Parse a response's headers; ``now`` is the local ``time.time()`` at arrival.

        The same as :func:`~d360_async._ratelimit._headers.parse_rate_limit`: garbage is
        ignored, never raised, and epochs are read against the server's ``Date``.
        """
        # Imported here: the parser module imports this one.
        from ._headers import parse_rate_limit

        return parse_rate_limit(headers, now=now)

    @property
    def is_empty(self) -> bool:
        """True when the response carried no usable rate-limit header at all."""
        return (
            self.limit is None
            and self.remaining is None
            and self.reset_after is None
            and self.retry_after is None
        )
