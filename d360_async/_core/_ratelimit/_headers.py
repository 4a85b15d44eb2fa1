"""Reading the rate-limit headers of one response, without I/O.

What Document360 sends (its API documentation: the rate-limiting page and the export-status page):

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
3. ``X-RateLimit-Reset`` values of at least `EPOCH_THRESHOLD` (10**9 s, September 2001)
   are epochs, those of at least `EPOCH_MS_THRESHOLD` epoch milliseconds; smaller values
   are delays in seconds.
4. Epochs and HTTP dates are converted to delays against the server's own clock (its ``Date``
   header), not ours, so a skewed local clock does not matter. ``Date`` has whole-second
   resolution and is truncated, so ``epoch - Date`` over-estimates the delay by less than a
   second: the safe direction. Without a usable ``Date``, the local clock is used. A delay
   converted from a point in time is flagged
   ([RateLimitState.reset_is_epoch][d360_async.RateLimitState.reset_is_epoch],
   [RateLimitState.retry_is_date][d360_async.RateLimitState.retry_is_date]): the server may have
   truncated it to the second, which the limiter's default wait margin allows for.
5. Negative counts and delays are clamped to 0; a limit below 1 is ignored (a window of no
   requests cannot be honoured, so the configured limit stays in force).
6. Absurdly large values are clamped: delays to `MAX_DELAY` (one hour), counts to
   `MAX_COUNT`. The vendor's window is one minute; a bogus ten-year ``Retry-After``
   would otherwise stall every request on the key for good.

Cost: this runs on every response. ``Date`` is parsed only when an epoch or an HTTP date needs
it, and the last ``Date`` seen is remembered (it changes once a second); where each spelling of
a header name goes is remembered too; plain integers skip the general number parser, the
vendor's usual answer (``Limit``, ``Remaining``, ``Reset`` as whole numbers) skips the general
path altogether, and a response that carries only ``X-RateLimit-Remaining`` reuses one
immutable state per distinct value.
"""

from __future__ import annotations

import email.utils
import logging
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Final

import attrs

__all__ = [
    "EPOCH_MS_THRESHOLD",
    "EPOCH_THRESHOLD",
    "MAX_COUNT",
    "MAX_DELAY",
    "MAX_WINDOW",
    "RateLimitState",
    "parse_http_date",
    "parse_rate_limit",
    "parse_retry_after",
]


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


logger = logging.getLogger("d360_async.ratelimit")

EPOCH_THRESHOLD = 1e9
"""``X-RateLimit-Reset`` values from here up are UTC epoch seconds (1e9 s is 2001-09-09)."""

EPOCH_MS_THRESHOLD = 1e11
"""``X-RateLimit-Reset`` values from here up are epoch *milliseconds* (1e11 s is year 5138)."""

MAX_DELAY = 3600.0
"""Longest wait (seconds) a header may impose; larger values are clamped to it."""

MAX_WINDOW = 7 * 86400.0
"""Longest policy window (seconds) believed: a week; IETF `w=` values beyond are clamped."""

MAX_COUNT = 1_000_000
"""Largest limit or remaining count believed; larger values are clamped to it."""

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")

# The headers read, in the order of _collect's result. The older IETF drafts' unprefixed
# names are read into the same slots as the X- names (the X- value wins when both come).
_NAMES: Final = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Retry-After",
    "retry-after-ms",
    "Date",
    "X-RateLimit-Used",
    "RateLimit",
    "RateLimit-Policy",
)
_ALIASES: Final = {
    "ratelimit-limit": 0,
    "ratelimit-remaining": 1,
    "ratelimit-reset": 2,
}
_INDEX: Final = {name.lower(): index for index, name in enumerate(_NAMES)}
_SLOTS: Final = len(_NAMES)
_ALIASED: Final = 100
"""`_slot` of an older draft's name: this plus the slot it fills."""
_SLOT_OF: dict[str, int] = {}
_SLOT_OF_SIZE: Final = 4096
"""Header spellings whose `_slot` is remembered (emptied when full)."""

_EMPTY: Final = RateLimitState()
_REMAINING_ONLY: dict[str, RateLimitState] = {}
_REMAINING_ONLY_SIZE: Final = 4096
"""Distinct ``Remaining``-only states kept (the vendor's counts stay below 100)."""

_last_date: tuple[str, float | None] = ("", None)
"""The last ``Date`` value parsed and its epoch (None: unusable)."""

_Raw = list[str | None]


def _garbage(name: str, value: str) -> None:
    logger.debug("ignoring unusable %s header: %r", name, value[:80])


def _plain_int(text: str) -> bool:
    """An unsigned run of ASCII digits: the common case, read with ``int()`` directly."""
    return text.isdigit() and text.isascii()


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
    if _plain_int(value):
        return [float(value)], False
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
    if _plain_int(value):
        count = int(value)
        if count >= minimum:
            return min(count, MAX_COUNT)
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


def _server_date(date: str) -> float | None:
    """The ``Date`` header as epoch seconds, remembering the last one (it changes once a
    second, and every response carries it). None when unusable."""
    global _last_date
    cached_value, cached = _last_date
    if cached_value == date:
        return cached
    # A repeated Date is folded with ", " and the date itself contains a comma: try the
    # whole value first, then its first 29-character IMF-fixdate.
    parsed = parse_http_date(date)
    if parsed is None and len(date) > 29:
        parsed = parse_http_date(date[:29])
    _last_date = (date, parsed)
    return parsed


def _retry_after(value: str, server_now: Callable[[], float]) -> tuple[float | None, bool]:
    """``Retry-After`` as a delay, and whether it was sent as an HTTP date."""
    numbers, garbage = _numbers(value)
    if numbers and not garbage:
        return _clamp_delay(max(numbers)), False
    when = parse_http_date(value)
    if when is None:
        _garbage("Retry-After", value)
        return None, False
    return _clamp_delay(when - server_now()), True


def parse_retry_after(value: str, *, server_now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` value, or None when it is garbage.

    ``value`` is delta-seconds (``"120"``; a decimal is tolerated) or an HTTP date, which is
    turned into a delay against ``server_now``, the server's clock (its ``Date`` header) in
    epoch seconds. Negative results are clamped to 0 and results above `MAX_DELAY` to
    `MAX_DELAY`.
    """
    return _retry_after(value, lambda: server_now)[0]


def _reset_after(value: str, server_now: Callable[[], float]) -> tuple[float | None, bool]:
    """``X-RateLimit-Reset`` as a delay: the latest of its numbers (epoch or delay each), and
    whether a point in time (epoch or date) went into it.

    None when no part is usable; unusable parts beside usable ones are logged and skipped.
    """
    numbers, garbage = _numbers(value)
    if numbers and garbage:
        _garbage("X-RateLimit-Reset", value)
    delays: list[float] = []
    epoch = False
    for number in numbers:
        if number >= EPOCH_MS_THRESHOLD:
            delays.append(number / 1000.0 - server_now())
            epoch = True
        elif number >= EPOCH_THRESHOLD:
            delays.append(number - server_now())
            epoch = True
        else:
            delays.append(number)
    if not delays:
        # Not documented, but a date is unambiguous: accept one.
        when = parse_http_date(value)
        if when is None:
            return None, False
        delays.append(when - server_now())
        epoch = True
    return _clamp_delay(max(delays)), epoch


def _slot(name: str) -> int:
    """Where header ``name`` goes: its index in `_NAMES`, ``_ALIASED + i`` for an older
    draft's name of slot ``i``, or -1 for a header this module does not read. Remembered per
    spelling (a server spells its headers the same way every time)."""
    slot = _SLOT_OF.get(name)
    if slot is None:
        lowered = name.lower()
        index = _INDEX.get(lowered)
        if index is not None:
            slot = index
        else:
            alias = _ALIASES.get(lowered)
            slot = -1 if alias is None else _ALIASED + alias
        if len(_SLOT_OF) >= _SLOT_OF_SIZE:
            _SLOT_OF.clear()
        _SLOT_OF[name] = slot
    return slot


def _collect(headers: Mapping[str, str]) -> _Raw:
    """The values of the headers this module reads, in `_NAMES` order (None: absent);
    repeats joined with commas. One pass over the headers, whatever their number."""
    slots: list[str | None] = [None] * _SLOTS
    aliased: list[str | None] | None = None
    slot_of = _SLOT_OF
    for name, value in headers.items():
        index = slot_of.get(name)
        if index is None:
            index = _slot(name)
        if index < 0:
            continue
        if index >= _ALIASED:
            if aliased is None:
                aliased = [None, None, None]
            alias = index - _ALIASED
            previous = aliased[alias]
            aliased[alias] = value if previous is None else f"{previous}, {value}"
            continue
        previous = slots[index]
        slots[index] = value if previous is None else f"{previous}, {value}"
    if aliased is not None:
        for index, alias_value in enumerate(aliased):
            if slots[index] is None:
                slots[index] = alias_value
    return slots


def _remaining_only(value: str) -> RateLimitState:
    """The state of a response that says nothing but ``X-RateLimit-Remaining``."""
    state = _REMAINING_ONLY.get(value)
    if state is not None:
        return state
    state = RateLimitState(remaining=_count("X-RateLimit-Remaining", value, minimum=0))
    if _plain_int(value) and len(_REMAINING_ONLY) < _REMAINING_ONLY_SIZE:
        _REMAINING_ONLY[value] = state  # only clean values: garbage must log every time
    return state


def _sf_members(value: str) -> list[tuple[str, dict[str, str]]]:
    """The members of a structured-field list (RFC 8941) as (name, parameters), tolerantly.

    `"default";q=100;w=60, "burst";q=10;w=1` gives `[("default", {"q": "100", "w": "60"}),
    ("burst", {...})]`. Commas and semicolons inside quoted strings are kept; a member that
    is not `name;key=value...` is returned with whatever parameters could be read.
    """
    members: list[tuple[str, dict[str, str]]] = []
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char in ",;" and not quoted:
            parts.append("".join(current))
            current = []
            if char == ",":
                parts.append(",")
            continue
        current.append(char)
    parts.append("".join(current))
    name: str | None = None
    params: dict[str, str] = {}
    for part in [*parts, ","]:
        if part == ",":
            if name is not None:
                members.append((name, params))
            name, params = None, {}
            continue
        text = part.strip()
        if name is None:
            name = text.strip('"')
        elif "=" in text:
            key, _, raw = text.partition("=")
            params[key.strip().lower()] = raw.strip().strip('"')
    return members


def _sf_number(params: dict[str, str], key: str) -> float | None:
    raw = params.get(key)
    return None if raw is None else _number(raw)


def _ietf(
    fields: str | None, policies: str | None
) -> tuple[int | None, int | None, float | None, float | None]:
    """Limit, remaining, reset delay and window from draft-ietf-httpapi-ratelimit-headers-11.

    `RateLimit: "name";r=<remaining>;t=<seconds>` says where each policy stands;
    `RateLimit-Policy: "name";q=<quota>;w=<window>` what each allows. With several policies
    the tightest binds: the one with the fewest requests remaining (on a tie, the longest
    wait), whose quota and window are then reported. Without `RateLimit`, the policy with the
    smallest quota per second is reported.
    """
    quota: dict[str, tuple[float | None, float | None]] = {}
    for name, params in _sf_members(policies or ""):
        quota[name] = (_sf_number(params, "q"), _sf_number(params, "w"))
    best: tuple[float, float, str] | None = None
    for name, params in _sf_members(fields or ""):
        remaining = _sf_number(params, "r")
        if remaining is None:
            continue
        reset = _sf_number(params, "t") or 0.0
        candidate = (remaining, -reset, name)
        if best is None or candidate < best:
            best = candidate
    if best is not None:
        remaining, minus_reset, name = best
        limit, window = quota.get(name, (None, None))
        if limit is None and len(quota) == 1:
            limit, window = next(iter(quota.values()))
        return (
            None if limit is None or limit < 1 else min(math.floor(limit), MAX_COUNT),
            min(max(0, math.floor(remaining)), MAX_COUNT),
            _clamp_delay(-minus_reset),
            None if window is None or window <= 0 else _clamp_window(window),
        )
    tightest: tuple[float, float, float] | None = None
    for limit, window in quota.values():
        if limit is None or limit < 1:
            continue
        per_second = limit / window if window else math.inf
        if tightest is None or per_second < tightest[0]:
            tightest = (per_second, limit, window or 0.0)
    if tightest is None:
        return None, None, None, None
    _, limit, window = tightest
    return min(math.floor(limit), MAX_COUNT), None, None, _clamp_window(window) or None


def parse_rate_limit(headers: Mapping[str, str], *, now: float) -> RateLimitState:
    """What one response's headers say about the rate limit (see the module docstring).

    Args:
        headers: the response headers; any mapping (a case-insensitive multidict keeps
            repeated headers, which are then read conservatively).
        now: the local wall clock (`time.time()`) when the response arrived; used only when
            the response has no usable `Date` header.

    Returns:
        A [RateLimitState][d360_async.RateLimitState] whose durations are relative seconds
        from arrival. Never raises on header content.
    """
    raw = _collect(headers)
    limit_raw, remaining_raw, reset_raw, retry_raw, retry_ms_raw, date = raw[:6]
    used_raw, fields_raw, policy_raw = raw[6:]
    if (
        limit_raw is None
        and reset_raw is None
        and retry_raw is None
        and retry_ms_raw is None
        and fields_raw is None
        and policy_raw is None
    ):
        # The common shapes: nothing, or Remaining alone. Date is not needed for either.
        return _EMPTY if remaining_raw is None else _remaining_only(remaining_raw)
    if (
        retry_raw is None
        and retry_ms_raw is None
        and used_raw is None
        and fields_raw is None
        and policy_raw is None
    ):
        plain = _plain_counts(limit_raw, remaining_raw, reset_raw, date, now)
        if plain is not None:
            return plain
    return _parse_raw(raw, now)


def _parse_raw(raw: _Raw, now: float) -> RateLimitState:
    """`parse_rate_limit` of the collected header values, every shape (the general path)."""
    limit_raw, remaining_raw, reset_raw, retry_raw, retry_ms_raw, date = raw[:6]
    used_raw, fields_raw, policy_raw = raw[6:]
    clock: list[float] = []
    server_date: list[float] = []

    def server_now() -> float:
        """The server's clock (its `Date`), read on first need only."""
        if not clock:
            parsed = None if date is None else _server_date(date)
            if parsed is None and date is not None:
                _garbage("Date", date)
            if parsed is not None:
                server_date.append(parsed)
            clock.append(now if parsed is None else parsed)
        return clock[0]

    limit = _count("X-RateLimit-Limit", limit_raw, minimum=1)
    remaining = _count("X-RateLimit-Remaining", remaining_raw, minimum=0)
    window = _window(limit_raw)
    if remaining is None and limit is not None and used_raw is not None:
        used = _count("X-RateLimit-Used", used_raw, minimum=0)
        if used is not None:
            remaining = max(0, limit - used)

    reset_after: float | None = None
    reset_is_epoch = False
    if reset_raw is not None:
        plain = _plain_int(reset_raw)
        if plain and int(reset_raw) < EPOCH_THRESHOLD:
            reset_after = min(float(reset_raw), MAX_DELAY)  # a delay, as most servers send
        elif plain and int(reset_raw) < EPOCH_MS_THRESHOLD:
            # One whole epoch in seconds (what `_reset_after` makes of it, without the lists).
            reset_after, reset_is_epoch = _clamp_delay(float(reset_raw) - server_now()), True
        else:
            reset_after, reset_is_epoch = _reset_after(reset_raw, server_now)
            if reset_after is None:
                _garbage("X-RateLimit-Reset", reset_raw)

    if fields_raw is not None or policy_raw is not None:
        ietf_limit, ietf_remaining, ietf_reset, ietf_window = _ietf(fields_raw, policy_raw)
        if ietf_remaining is None and fields_raw is not None:
            _garbage("RateLimit", fields_raw)
        # The structured fields are the newer and more precise: they win where both speak.
        limit = ietf_limit if ietf_limit is not None else limit
        remaining = ietf_remaining if ietf_remaining is not None else remaining
        if ietf_reset is not None:
            reset_after, reset_is_epoch = ietf_reset, False
        window = ietf_window if ietf_window is not None else window

    retry_after: float | None = None
    retry_is_date = False
    if retry_ms_raw is not None:
        millis, garbage = _numbers(retry_ms_raw)
        if garbage or not millis:
            _garbage("retry-after-ms", retry_ms_raw)
        if millis:
            retry_after = _clamp_delay(max(millis) / 1000.0)
    if retry_after is None and retry_raw is not None:
        retry_after, retry_is_date = _retry_after(retry_raw, server_now)

    # Positional: measurably cheaper than keywords on this hot path.
    return RateLimitState(
        limit,
        remaining,
        reset_after,
        retry_after,
        reset_is_epoch,
        retry_is_date,
        window,
        server_date[0] if server_date else None,
    )


def _plain_counts(
    limit_raw: str | None,
    remaining_raw: str | None,
    reset_raw: str | None,
    date: str | None,
    now: float,
) -> RateLimitState | None:
    """The vendor's usual answer, read without the general parser: `Limit`, `Remaining` and
    `Reset` (each possibly absent) as plain whole numbers, the reset a delay or an epoch in
    seconds read against a usable `Date`. None for anything else (a limit of 0, an epoch in
    milliseconds, an unusable `Date`...), which the general path reads and logs exactly as
    before; what this returns is what the general path returns for the same headers."""
    limit: int | None = None
    if limit_raw is not None:
        if not (limit_raw.isdigit() and limit_raw.isascii()):
            return None
        limit = int(limit_raw)
        if limit < 1:
            return None
        if limit > MAX_COUNT:
            limit = MAX_COUNT
    remaining: int | None = None
    if remaining_raw is not None:
        if not (remaining_raw.isdigit() and remaining_raw.isascii()):
            return None
        remaining = int(remaining_raw)
        if remaining > MAX_COUNT:
            remaining = MAX_COUNT
    if reset_raw is None:
        return RateLimitState(limit, remaining)
    if not (reset_raw.isdigit() and reset_raw.isascii()):
        return None
    reset = int(reset_raw)
    if reset < EPOCH_THRESHOLD:
        return RateLimitState(limit, remaining, min(float(reset), MAX_DELAY))
    if reset >= EPOCH_MS_THRESHOLD or date is None:
        return None
    server = _server_date(date)
    if server is None:
        return None
    return RateLimitState(
        limit, remaining, _clamp_delay(float(reset) - server), None, True, False, None, server
    )


def _window(limit_raw: str | None) -> float | None:
    """The `w=` parameter of an older draft's `RateLimit-Limit: 10, 10;w=1, 1000;w=3600`
    list: the window of the smallest quota (the limit reported), when one states it."""
    if limit_raw is None or "w=" not in limit_raw:
        return None
    best: tuple[float, float] | None = None
    for part in limit_raw.split(","):
        quota, _, params = part.partition(";")
        count = _number(quota)
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "w":
                seconds = _number(value)
                if count is None or seconds is None or seconds <= 0:
                    continue
                if best is None or count < best[0]:
                    best = (count, seconds)
    return None if best is None else _clamp_window(best[1])


def _clamp_window(seconds: float) -> float:
    return min(seconds, MAX_WINDOW)
