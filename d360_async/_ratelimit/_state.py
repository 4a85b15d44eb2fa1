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
        reset_is_epoch: ``reset_after`` was converted from a point in time (an epoch or an
            HTTP date) rather than sent as a delay. A point in time given in whole seconds may
            have been truncated by the server, so it can be up to a second early; a delay is
            a wait and is rounded up. Only the limiter's default wait margin reads this.
        retry_is_date: the same for ``retry_after`` (sent as an HTTP date).
        window: the policy's window in seconds, when the server states it (the IETF fields'
            ``w=``).
        date: the server's ``Date`` (epoch seconds, whole) when it was read to convert an
            epoch or an HTTP date; the limiter narrows the server's clock offset with it.

    The two flags describe how a value was sent, not what it says: they take no part in
    equality.
    """

    limit: int | None = None
    remaining: int | None = None
    reset_after: float | None = None
    retry_after: float | None = None
    reset_is_epoch: bool = attrs.field(default=False, eq=False, repr=False)
    retry_is_date: bool = attrs.field(default=False, eq=False, repr=False)
    window: float | None = None
    date: float | None = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], now: float) -> RateLimitState:
        """Parse a response's headers; ``now`` is the local ``time.time()`` at arrival.

        The same as `parse_rate_limit`: garbage is
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
            and self.window is None
        )
