"""Reading the rate-limit headers of one response, without I/O.

What Document360 sends (``DESIGN.md`` §2, the vendor's export-status page):

* ``X-RateLimit-Remaining`` on every response;
* ``X-RateLimit-Limit`` and ``X-RateLimit-Reset`` possibly only once the limit is reached;
* ``X-RateLimit-Reset`` documented both as "the UTC epoch timestamp (in seconds) when the
  current rate limit window resets" and as a number of seconds until the reset;
* ``Retry-After`` on a 429, "number of seconds to wait" (an HTTP date is legal too, RFC 9110
  §10.2.3); ``retry-after-ms`` is accepted as a more precise variant some gateways add.

Rules, applied in this order:

1. Header names are matched case-insensitively; a header repeated (or folded by a proxy into a
   comma list, or written as an IETF draft ``"10, 10;w=1"`` policy list) yields its most
   conservative element: the smallest limit and remaining, the latest reset.
2. A number is plain decimal (``"60"``, ``"1.5"``); ``nan``, ``inf``, ``1e3``, hex or words are
   garbage. Garbage is ignored with a DEBUG log, never raised: a broken proxy must not break
   requests.
3. ``X-RateLimit-Reset`` values of at least :data:`EPOCH_THRESHOLD` (10**9 s, September 2001)
   are epochs, those of at least :data:`EPOCH_MS_THRESHOLD` epoch milliseconds; smaller values
   are delays in seconds.
4. Epochs and HTTP dates are converted to delays against the server's own clock (its ``Date``
   header), not ours, so a skewed local clock does not matter. ``Date`` has whole-second
   resolution and is truncated, so ``epoch - Date`` over-estimates the delay by less than a
   second: the safe direction. Without a usable ``Date``, the local clock is used.
5. Negative counts and delays are clamped to 0; a limit below 1 is ignored (a window of no
   requests cannot be honoured, so the configured limit stays in force).
6. Absurdly large values are clamped: delays to :data:`MAX_DELAY` (one hour), counts to
   :data:`MAX_COUNT`. The vendor's window is one minute; a bogus ten-year ``Retry-After``
   would otherwise stall every request on the key for good.
"""

from __future__ import annotations

import email.utils
import logging
import math
import re
from collections.abc import Mapping
from datetime import UTC

from ._state import RateLimitState

__all__ = [
    "EPOCH_MS_THRESHOLD",
    "EPOCH_THRESHOLD",
    "MAX_COUNT",
    "MAX_DELAY",
    "parse_http_date",
    "parse_rate_limit",
    "parse_retry_after",
]

logger = logging.getLogger("d360_async.ratelimit")

EPOCH_THRESHOLD = 1e9
"""``X-RateLimit-Reset`` values from here up are UTC epoch seconds (1e9 s is 2001-09-09)."""

EPOCH_MS_THRESHOLD = 1e11
"""``X-RateLimit-Reset`` values from here up are epoch *milliseconds* (1e11 s is year 5138)."""

MAX_DELAY = 3600.0
"""Longest wait (seconds) a header may impose; larger values are clamped to it."""

MAX_COUNT = 1_000_000
"""Largest limit or remaining count believed; larger values are clamped to it."""

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_WANTED = frozenset(
    {
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "retry-after",
        "retry-after-ms",
        "date",
    }
)


def _garbage(name: str, value: str) -> None:
    logger.debug("ignoring unusable %s header: %r", name, value[:80])


def _number(text: str) -> float | None:
    """A plain decimal number, or None. ``float()`` alone would accept ``nan`` and ``1_0``."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    return float(text)


def _numbers(value: str) -> tuple[list[float], bool]:
    """The numbers of a possibly comma-folded header value, and whether any part was not one.

    Parameters after ``;`` (the IETF draft's ``10;w=1``) are dropped; empty parts are skipped.
    """
    found: list[float] = []
    garbage = False
    for part in value.split(","):
        item = part.split(";", 1)[0]
        number = _number(item)
        if number is not None:
            found.append(number)
        elif item.strip():
            garbage = True
    return found, garbage


def _clamp_delay(seconds: float) -> float:
    return min(max(seconds, 0.0), MAX_DELAY)


def _count(name: str, value: str | None, *, minimum: int) -> int | None:
    """The smallest number in ``value`` as a count; below ``minimum`` is treated as garbage."""
    if value is None:
        return None
    numbers, garbage = _numbers(value)
    if garbage:
        _garbage(name, value)
    if not numbers:
        return None
    smallest = min(numbers)
    if smallest < minimum:
        if minimum > 0:
            _garbage(name, value)
            return None
        smallest = 0.0
    return min(math.floor(smallest), MAX_COUNT)


def parse_http_date(value: str) -> float | None:
    """An HTTP date (RFC 9110 IMF-fixdate, or the obsolete RFC 850 / asctime forms) as epoch
    seconds; None when unparseable. A date without a zone is taken as UTC."""
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def parse_retry_after(value: str, *, server_now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` value, or None when it is garbage.

    ``value`` is delta-seconds (``"120"``; a decimal is tolerated) or an HTTP date, which is
    turned into a delay against ``server_now``, the server's clock (its ``Date`` header) in
    epoch seconds. Negative results are clamped to 0 and results above :data:`MAX_DELAY` to
    :data:`MAX_DELAY`.
    """
    numbers, garbage = _numbers(value)
    if numbers and not garbage:
        return _clamp_delay(max(numbers))
    when = parse_http_date(value)
    if when is None:
        _garbage("Retry-After", value)
        return None
    return _clamp_delay(when - server_now)


def _reset_after(value: str, *, server_now: float) -> float | None:
    """``X-RateLimit-Reset`` as a delay: the latest of its numbers (epoch or delay each).

    None when no part is usable; unusable parts beside usable ones are logged and skipped.
    """
    numbers, garbage = _numbers(value)
    if numbers and garbage:
        _garbage("X-RateLimit-Reset", value)
    delays: list[float] = []
    for number in numbers:
        if number >= EPOCH_MS_THRESHOLD:
            delays.append(number / 1000.0 - server_now)
        elif number >= EPOCH_THRESHOLD:
            delays.append(number - server_now)
        else:
            delays.append(number)
    if not delays:
        # Not documented, but a date is unambiguous: accept one.
        when = parse_http_date(value)
        if when is None:
            return None
        delays.append(when - server_now)
    return _clamp_delay(max(delays))


def _collect(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers this module reads, keyed by lower-case name; repeats joined with commas."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in _WANTED:
            previous = found.get(lowered)
            found[lowered] = value if previous is None else f"{previous}, {value}"
    return found


def parse_rate_limit(headers: Mapping[str, str], *, now: float) -> RateLimitState:
    """What one response's headers say about the rate limit (see the module docstring).

    Args:
        headers: the response headers; any mapping (a case-insensitive multidict keeps
            repeated headers, which are then read conservatively).
        now: the local wall clock (``time.time()``) when the response arrived; used only when
            the response has no usable ``Date`` header.

    Returns:
        A :class:`RateLimitState` whose durations are relative seconds from arrival. Never
        raises on header content.
    """
    found = _collect(headers)
    server_now = now
    date = found.get("date")
    if date is not None:
        # A repeated Date is folded with ", " and the date itself contains a comma: try the
        # whole value first, then its first 29-character IMF-fixdate.
        parsed = parse_http_date(date)
        if parsed is None and len(date) > 29:
            parsed = parse_http_date(date[:29])
        if parsed is None:
            _garbage("Date", date)
        else:
            server_now = parsed

    limit = _count("X-RateLimit-Limit", found.get("x-ratelimit-limit"), minimum=1)
    remaining = _count("X-RateLimit-Remaining", found.get("x-ratelimit-remaining"), minimum=0)

    reset_after: float | None = None
    reset = found.get("x-ratelimit-reset")
    if reset is not None:
        reset_after = _reset_after(reset, server_now=server_now)
        if reset_after is None:
            _garbage("X-RateLimit-Reset", reset)

    retry_after: float | None = None
    retry_ms = found.get("retry-after-ms")
    if retry_ms is not None:
        millis, garbage = _numbers(retry_ms)
        if garbage or not millis:
            _garbage("retry-after-ms", retry_ms)
        if millis:
            retry_after = _clamp_delay(max(millis) / 1000.0)
    retry = found.get("retry-after")
    if retry_after is None and retry is not None:
        retry_after = parse_retry_after(retry, server_now=server_now)

    return RateLimitState(
        limit=limit, remaining=remaining, reset_after=reset_after, retry_after=retry_after
    )
