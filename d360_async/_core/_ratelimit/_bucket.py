"""The token bucket behind every limiter: pure arithmetic, time passed in.

One `TokenBucket` models one budget (one `RateLimitKey`). It holds
``tokens``: how many requests may leave right now. A request takes one token; tokens come back
at a *refill rate*, never beyond ``capacity`` (the burst). Everything below is a rule about how
that rate and those tokens follow what the server says.

**Blind pacing** (no header has told us better). The server allows ``limit`` requests per
``period`` (60 per 60 s by default, the lowest paid plan). A bucket of capacity ``b`` refilled
at ``r`` admits at most ``b + r*T - 1`` requests in any half-open interval of length ``T``
(a full bucket, then one refill every ``1/r``). To stay within ``limit`` in *every* window,
whatever its alignment, the base rate is:

```python
usable    = limit * (1 - safety_margin)        # slack for network jitter
capacity  = clamp(burst, 1, floor(usable))
base_rate = (usable - (capacity - 1)) / period
```

so a larger burst buys latency for short bursts with a slightly lower sustained rate. Once the
server has announced its limit (``X-RateLimit-Limit``), ``usable`` is that limit in full: the
margin is slack for pacing on a guess, and the answers that follow (their ``Remaining``) keep
the bucket honest from then on.

**Calibration** from a response (`TokenBucket.observe`), with ``n`` requests still in
flight (admitted, no answer yet: the server may not have counted them):

```python
avail  = remaining - n                         # what we may still send this window
tokens = min(avail, max(tokens, 0))            # never believe more than the server allows
```

The bucket never *gains* tokens from a response (that would burst); it only drops a debt the
server shows to be over-cautious. When the reset time is known, the remaining budget is spread
evenly until then instead of being spent at once:

```python
spread_rate = max(0, avail - tokens + 1) / (reset_at - start)   # start: now, or pause end
```

The token in hand goes first, the others follow every ``1/spread_rate``, and the next one
would fall exactly on the reset: with ``k`` counting refills, admissions happen at
``(1 - tokens + k) / spread_rate < horizon``, i.e. for ``k < avail``: exactly ``avail`` requests
before the reset, never more, evenly spaced on a grid that the next window continues. At the reset
the window is fresh: the debt is dropped, one token is granted (a probe whose answer
recalibrates the bucket) and the base rate applies again. An ``X-RateLimit-Limit`` replaces the
configured limit in the formulas above. Responses to requests admitted *before* the one that
last calibrated the bucket, or before the current window began, are stale (they may come back
out of order, or speak of the window that ended): they may only lower the estimate, never raise
it. A fresh count *higher* than expected without a new reset means the window rolled over
early: the expected reset is dropped and the bucket paces blind until a response announces the
next one.

**When the reset is**: ``reset_after`` plus a wait margin for what rounding may hide
(``wait_margin``, plus ``epoch_margin`` when the reset was sent as a point in time, which a
server may truncate to the second), but never later than ``anchor + period``. The *anchor* is
when the first fresh answer of the current window arrived: the request it answers reached the
server before that, inside the window, and no window of ``period`` seconds that contains that
moment can end more than ``period`` later. This bound is exact to a round trip, needs no
margin, and does not depend on how the server rounds its headers, which matters on short
windows where a second of rounding is a large share of the window. It holds when ``period`` is
at least the server's window, so it is used only while the server's announced limit (if any)
agrees with the configured one and no announced reset has been longer than ``period`` plus
what rounding up can add (`ROUNDING` for a delay, twice that for an epoch read against
the truncated ``Date``), nor one that would end the window later than the bound allows: one
such reset refutes the period for the bucket's lifetime. A count that jumps up (a window that
rolled over) or an anchor older than a period starts a new anchor.

A count *without* a reset (a server that sends ``X-RateLimit-Limit`` and ``-Reset`` only once
the budget is spent, or never) is spread the same way until ``anchor + period``, no faster
than the base rate: the count is never overspent between two answers, and a spent count
waits for the window's end instead of being repaid at the base rate into a 429.

**429** (`TokenBucket.throttle`): the whole budget pauses until ``Retry-After`` (else the
reset, else an exponential backoff of 1, 2, 4... seconds capped at one period), plus
``wait_margin``. Nothing refills during a pause; when it ends, one token is available and the
rest comes back at the refill rate, so the waiters are released paced, not in a herd. (The
margin on a ``Retry-After`` is ``wait_margin``, plus ``epoch_margin`` for an HTTP date.)

**Adaptive mode** (AIMD, for servers that send no headers at all): the base rate is multiplied
by ``factor`` in ``[MIN_FACTOR, 1]``. A 429 halves it (multiplicative decrease); every answered
request adds ``INCREASE`` (additive increase, about 25 answers to recover from one halving), never
above 1, so the configured (or announced) limit is the ceiling. A 429 for a request admitted
before the previous 429 was handled is an *echo* of the same overload: it extends the pause if
it must but does not decrease the rate again.
"""

from __future__ import annotations

import math

import attrs

from d360_async._core._ratelimit._budget import check_pacing
from d360_async._core._ratelimit._headers import RateLimitState

__all__ = [
    "BACKOFF_BASE",
    "DECREASE",
    "EPSILON",
    "INCREASE",
    "MIN_FACTOR",
    "ROUNDING",
    "BucketSnapshot",
    "TokenBucket",
]

EPSILON = 1e-9
"""Tokens this close to a whole one count as one (floating-point refill arithmetic)."""

MIN_FACTOR = 0.05
"""The adaptive rate never drops below 5 % of the base rate."""

DECREASE = 0.5
"""Multiplicative decrease of the adaptive factor on a 429."""

INCREASE = 0.02
"""Additive increase of the adaptive factor per answered request."""

BACKOFF_BASE = 1.0
"""First pause (seconds) after a 429 that says neither ``Retry-After`` nor a reset."""

ROUNDING = 1.0
"""Seconds a server rounding its whole-second headers up can add to a reset."""


@attrs.frozen(slots=True)
class BucketSnapshot:
    """Everything a bucket learned, as plain values: what the Redis limiter stores.

    Times are on the clock the bucket was driven with. ``None`` means "not known" (or, for
    ``throttled_at``, ``calibrated_at`` and ``anchor``, "never").
    """

    tokens: float
    updated: float
    paused_until: float
    reset_at: float | None
    spread_rate: float | None
    learned_limit: int | None
    remaining: float | None
    factor: float
    throttled_at: float | None
    consecutive: int
    calibrated_at: float | None
    anchor: float | None = None
    period_refuted: bool = False

    def shifted(self, offset: float) -> BucketSnapshot:
        """The same snapshot with every time moved by ``offset`` (onto another clock)."""

        def move(value: float | None) -> float | None:
            return None if value is None else value + offset

        return attrs.evolve(
            self,
            updated=self.updated + offset,
            paused_until=self.paused_until + offset,
            reset_at=move(self.reset_at),
            throttled_at=move(self.throttled_at),
            calibrated_at=move(self.calibrated_at),
            anchor=move(self.anchor),
        )


class TokenBucket:
    """One budget's token bucket; see the module docstring for the arithmetic.

    Every method takes the current time (any monotonic clock, in seconds); time that goes
    backwards is ignored. Nothing here does I/O or sleeps.

    Args:
        limit: requests per ``period`` to assume until the server announces its limit.
        period: the server's window length in seconds.
        burst: how many requests may leave back to back after an idle spell.
        safety_margin: fraction of the configured limit left unused while the server has not
            announced its own.
        wait_margin: seconds added to every wait the server announces (reset, Retry-After),
            against rounding and network delay.
        epoch_margin: seconds added, besides ``wait_margin``, to a reset or Retry-After that
            was sent as a point in time (an epoch or an HTTP date), which may have been
            truncated to the second.
        adaptive: lower the rate on 429s and raise it slowly on success (AIMD).
        now: the current time; the bucket starts full.
    """

    __slots__ = (
        "_adaptive",
        "_anchor",
        "_base_rate",
        "_burst",
        "_calibrated_at",
        "_capacity",
        "_consecutive",
        "_epoch_margin",
        "_factor",
        "_learned_limit",
        "_limit",
        "_paused_until",
        "_period",
        "_period_refuted",
        "_remaining",
        "_reset_at",
        "_safety",
        "_spread_rate",
        "_throttled_at",
        "_tokens",
        "_updated",
        "_wait_margin",
    )

    def __init__(
        self,
        limit: float,
        period: float,
        *,
        burst: int = 1,
        safety_margin: float = 0.05,
        wait_margin: float = 0.0,
        epoch_margin: float = 0.0,
        adaptive: bool = True,
        now: float,
    ) -> None:
        check_pacing(limit, period, burst, safety_margin)
        if not (wait_margin >= 0 and math.isfinite(wait_margin)):
            raise ValueError(f"wait_margin must be >= 0, got {wait_margin!r}")
        if not (epoch_margin >= 0 and math.isfinite(epoch_margin)):
            raise ValueError(f"epoch_margin must be >= 0, got {epoch_margin!r}")
        self._limit = float(limit)
        self._period = float(period)
        self._burst = burst
        self._safety = safety_margin
        self._wait_margin = wait_margin
        self._epoch_margin = epoch_margin
        self._adaptive = adaptive
        self._learned_limit: int | None = None
        self._capacity = 1.0
        self._base_rate = 1.0
        self._derive()
        self._tokens = self._capacity
        self._updated = now
        self._paused_until = now
        self._reset_at: float | None = None
        self._spread_rate: float | None = None
        self._remaining: float | None = None
        self._factor = 1.0
        self._throttled_at: float | None = None
        self._consecutive = 0
        self._calibrated_at: float | None = None
        self._anchor: float | None = None
        self._period_refuted = False

    def _derive(self) -> None:
        """Recompute capacity and base rate from the effective limit (module docstring)."""
        if self._learned_limit is not None:
            usable = float(self._learned_limit)  # announced: no guess to allow for
        else:
            usable = self._limit * (1.0 - self._safety)
        self._capacity = float(max(1, min(self._burst, math.floor(usable))))
        self._base_rate = max(usable - (self._capacity - 1.0), EPSILON) / self._period

    # -- read-only view -------------------------------------------------------------------

    @property
    def capacity(self) -> float:
        """The most tokens the bucket holds (the burst, bounded by the usable limit)."""
        return self._capacity

    @property
    def limit(self) -> float:
        """The limit in force: the server's ``X-RateLimit-Limit`` once seen, else configured."""
        return float(self._learned_limit) if self._learned_limit is not None else self._limit

    @property
    def learned_limit(self) -> int | None:
        """The last ``X-RateLimit-Limit`` the server sent, if any."""
        return self._learned_limit

    @property
    def period(self) -> float:
        """The window length in seconds."""
        return self._period

    @property
    def base_rate(self) -> float:
        """Requests per second when pacing blind at full confidence (``factor == 1``)."""
        return self._base_rate

    @property
    def sustainable_rate(self) -> float:
        """The long-run rate: the base rate scaled by the adaptive factor."""
        return self._base_rate * self._factor

    @property
    def rate(self) -> float:
        """The refill rate in force at the last update: 0 while paused, the spread rate until
        a known reset, else `sustainable_rate`."""
        if self._paused_until > self._updated:
            return 0.0
        reset_at = self._reset_at
        if self._spread_rate is not None and reset_at is not None and reset_at > self._updated:
            return self._spread_rate
        return self.sustainable_rate

    @property
    def tokens(self) -> float:
        """Tokens at the last update (negative: a debt to repay before the next request)."""
        return self._tokens

    @property
    def remaining(self) -> float | None:
        """The estimate of the server's remaining budget (its last word minus what we sent
        since, never below 0); None until a response said."""
        return None if self._remaining is None else max(0.0, self._remaining)

    @property
    def reset_at(self) -> float | None:
        """When the server's window resets (already including ``wait_margin``), if known."""
        return self._reset_at

    @property
    def paused_until(self) -> float:
        """Until when nothing may be sent (in the past when not paused)."""
        return self._paused_until

    @property
    def factor(self) -> float:
        """The adaptive multiplier of the base rate, in ``[MIN_FACTOR, 1]``."""
        return self._factor

    @property
    def consecutive_throttles(self) -> int:
        """429s since the last answered request (drives the blind backoff)."""
        return self._consecutive

    @property
    def updated(self) -> float:
        """The time of the last update."""
        return self._updated

    def __repr__(self) -> str:
        parts = [
            f"tokens={self._tokens:.3f}/{self._capacity:g}",
            f"rate={self.rate:.4g}/s",
            f"limit={self.limit:g}/{self._period:g}s",
        ]
        if self._learned_limit is not None:
            parts[-1] += " (announced)"
        if self._factor < 1.0:
            parts.append(f"factor={self._factor:.3f}")
        if self._remaining is not None:
            parts.append(f"remaining~{max(0.0, self._remaining):g}")
        if self._paused_until > self._updated:
            parts.append(f"paused_for={self._paused_until - self._updated:.3f}s")
        if self._reset_at is not None and self._reset_at > self._updated:
            parts.append(f"reset_in={self._reset_at - self._updated:.3f}s")
        return f"TokenBucket({', '.join(parts)})"

    # -- time -----------------------------------------------------------------------------

    def advance(self, now: float, *, backlogged: bool = False) -> None:
        """Bring the tokens up to ``now``: pause, then spread until the reset, then base rate.

        ``backlogged``: requests were waiting for the whole time since the last update, so
        each token would have been taken the moment it was complete and the capacity cannot
        have bound; tokens a late timer did not hand out in time are then not lost (above
        the capacity until `clamp`).
        """
        t = self._updated
        if now <= t:
            return
        tokens = self._tokens
        cap = math.inf if backlogged else self._capacity
        if self._paused_until > t:
            if now < self._paused_until:
                self._updated = now
                return
            t = self._paused_until
            tokens = max(tokens, 1.0)  # the pause is over: one probe, then the refill rate
        spread = self._spread_rate
        reset_at = self._reset_at
        if spread is not None and reset_at is not None:
            if reset_at > t:
                end = now if now < reset_at else reset_at
                tokens += spread * (end - t)
                if tokens > cap:
                    tokens = cap
                t = end
            if t >= reset_at:
                # A fresh window: yesterday's debt is void, one probe may go at once.
                tokens = max(tokens, 1.0)
                self._spread_rate = None
                self._remaining = (
                    float(self._learned_limit) if self._learned_limit is not None else None
                )
                # Answers to requests admitted before now speak of the window that ended.
                self._anchor = None
                if self._calibrated_at is None or self._calibrated_at < reset_at:
                    self._calibrated_at = reset_at
        if now > t:
            tokens += self._base_rate * self._factor * (now - t)
            if tokens > cap:
                tokens = cap
        self._tokens = tokens
        self._updated = now

    def wait_time(self, now: float, need: float = 1.0) -> float:
        """Seconds from ``now`` until ``need`` requests will have been admitted (0: now).

        ``need`` above 1 answers "when could the ``need``-th request in line go?", the
        requests ahead taking each token as it comes (so the capacity never binds).
        """
        self.advance(now)
        have = self._tokens
        left = need
        t = now

        def consume() -> None:
            nonlocal have, left
            if have >= 1.0 - EPSILON:
                taken = min(left, float(math.floor(have + EPSILON)))
                have -= taken
                left -= taken

        if self._paused_until > t:
            t = self._paused_until
            have = max(have, 1.0)
        consume()
        if left <= EPSILON:
            return t - now
        spread = self._spread_rate
        reset_at = self._reset_at
        if spread is not None and reset_at is not None and reset_at > t:
            if spread > 0.0:
                dt = (left - have) / spread
                if t + dt <= reset_at:
                    return t + dt - now
                have += spread * (reset_at - t)
                # Tokens completed strictly before the reset go now; one completing exactly
                # at the reset is the fresh window's probe (as in advance()).
                taken = min(left, max(0.0, math.ceil(have - EPSILON) - 1.0))
                have -= taken
                left -= taken
            t = reset_at
            have = max(have, 1.0)  # the fresh window's probe
            consume()
            if left <= EPSILON:
                return t - now
        return t + (left - have) / (self._base_rate * self._factor) - now

    def clamp(self) -> None:
        """Drop tokens above the capacity (after a backlog ended: no burst later)."""
        self._tokens = min(self._tokens, self._capacity)

    def try_take(self, now: float, *, backlogged: bool = False) -> float:
        """Take one token if there is one: returns 0.0, else the seconds to wait for one.

        ``backlogged``: see `advance`.
        """
        self.advance(now, backlogged=backlogged)
        if self._tokens < 1.0 - EPSILON or self._paused_until > now:
            wait = self.wait_time(now)
            if wait > 0.0:
                return wait
        self._tokens -= 1.0
        if self._remaining is not None:
            self._remaining -= 1.0
        return 0.0

    def refund(self, now: float) -> None:
        """Give back a token taken for a request that was never sent.

        During a pause there is nothing to give back to: the pause ends with a fresh token.
        """
        self.advance(now)
        if self._paused_until <= now:
            self._tokens = min(self._capacity, self._tokens + 1.0)
        if self._remaining is not None:
            self._remaining += 1.0

    # -- feedback -------------------------------------------------------------------------

    def observe(
        self,
        state: RateLimitState,
        *,
        in_flight: int,
        now: float,
        admitted_at: float | None = None,
    ) -> None:
        """Calibrate from what one response said.

        Args:
            state: the parsed rate-limit headers.
            in_flight: requests admitted on this budget and still unanswered, not counting
                the one this response answers.
            now: when the response arrived.
            admitted_at: when the answered request was admitted; used to tell stale answers
                (overtaken by a later one) from fresh ones. None: treat as fresh.
        """
        self.advance(now)
        remaining = state.remaining
        reset_after = state.reset_after
        calibrated_at = self._calibrated_at
        fresh = admitted_at is None or calibrated_at is None or admitted_at >= calibrated_at
        if fresh and admitted_at is not None:
            self._calibrated_at = admitted_at
        limit = state.limit
        if fresh and limit is not None and limit >= 1 and limit != self._learned_limit:
            self._learned_limit = limit
            self._derive()
            self._tokens = min(self._tokens, self._capacity)
        period = self._period
        rolled = False
        if fresh and remaining is not None:
            rolled = (
                self._remaining is not None and remaining - in_flight > self._remaining + EPSILON
            )
            anchor = self._anchor
            if anchor is None or anchor + period <= now or rolled:
                self._anchor = now  # the first answer of this window (module docstring)
        if reset_after is not None and not self._period_refuted:
            # The earliest the server's window can end, whatever it rounded up, against the
            # latest a window of ``period`` can: beyond it, ``period`` is too short.
            earliest = now + reset_after - (2.0 * ROUNDING if state.reset_is_epoch else ROUNDING)
            latest = (now if self._anchor is None else self._anchor) + period
            if earliest > latest:
                self._period_refuted = True
        new_reset = None
        paced = False  # the reset is our bound, not the server's word: spend at most the base rate
        if fresh:
            bound = (
                self._anchor + period
                if self._anchor is not None and self._period_bounds_windows()
                else None
            )
            if reset_after is not None:
                new_reset = now + reset_after + self._reset_margin(state)
                if bound is not None and bound < new_reset:
                    new_reset = bound
            elif remaining is not None and bound is not None:
                # A count without a reset: what is left must last until the window ends,
                # which it does by the bound, or by the reset already announced for it.
                pending = self._reset_at
                if not rolled and pending is not None and now < pending < bound:
                    new_reset = pending
                else:
                    new_reset = bound
                    paced = True
            if new_reset is not None:
                self._reset_at = new_reset
        if remaining is not None:
            avail = float(remaining - in_flight)
            if fresh:
                if (
                    new_reset is None
                    and self._spread_rate is not None
                    and self._remaining is not None
                    and avail > self._remaining + EPSILON
                ):
                    # More left than we thought: the window has rolled over before the reset
                    # we expected, so that reset is stale and the new one unknown. Pace
                    # blind (safe for any window) until a response says when it ends.
                    self._spread_rate = None
                    self._reset_at = None
                self._remaining = avail
                tokens = self._tokens if self._tokens > 0.0 else 0.0  # a debt is forgiven
                self._tokens = avail if tokens > avail else tokens
            else:
                if self._tokens > avail:
                    self._tokens = avail
                if self._remaining is None or avail < self._remaining:
                    self._remaining = avail
        elif new_reset is not None and self._remaining is not None:
            avail = self._remaining  # a new reset without a count: respread our estimate
        else:
            return
        if new_reset is not None:
            end = new_reset
        elif self._spread_rate is not None and self._reset_at is not None:
            end = self._reset_at
        else:
            return
        start = max(now, self._paused_until)
        start_tokens = self._tokens if start <= now else max(self._tokens, 1.0)
        horizon = end - start
        if horizon <= EPSILON:
            if fresh:
                self._spread_rate = None
            return
        spread = max(0.0, avail - start_tokens + 1.0) / horizon
        if paced:
            spread = min(spread, self._base_rate * self._factor)
        if fresh or self._spread_rate is None:
            self._spread_rate = spread
        else:
            self._spread_rate = min(self._spread_rate, spread)

    def _reset_margin(self, state: RateLimitState) -> float:
        """The margin on an announced reset: more when it was a possibly truncated epoch."""
        if state.reset_is_epoch:
            return self._wait_margin + self._epoch_margin
        return self._wait_margin

    def _retry_margin(self, state: RateLimitState) -> float:
        """The margin on a Retry-After: more when it was a possibly truncated HTTP date."""
        if state.retry_is_date:
            return self._wait_margin + self._epoch_margin
        return self._wait_margin

    def _period_bounds_windows(self) -> bool:
        """Whether ``period`` may be trusted as an upper bound of the server's window: the
        server has not announced a limit other than the configured one, nor a reset longer
        than the period (module docstring)."""
        return not self._period_refuted and (
            self._learned_limit is None or self._learned_limit == self._limit
        )

    def backoff(self) -> float:
        """The blind pause after the current run of 429s: 1, 2, 4... s, capped at a period."""
        exponent = min(max(self._consecutive - 1, 0), 30)
        return min(self._period, BACKOFF_BASE * 2.0**exponent)

    def pause_until(self, until: float, *, now: float) -> None:
        """Admit nothing before ``until`` (a later pause already in force is kept)."""
        self.advance(now)
        if until > self._paused_until and until > now:
            self._paused_until = until
            self._tokens = min(self._tokens, 0.0)

    def throttle(
        self,
        state: RateLimitState | None,
        *,
        in_flight: int,
        now: float,
        admitted_at: float | None = None,
    ) -> float:
        """Handle a 429: calibrate, lower the adaptive rate, pause the budget.

        Returns:
            The time until which the budget is paused.
        """
        if state is not None:
            self.observe(state, in_flight=in_flight, now=now, admitted_at=admitted_at)
        else:
            self.advance(now)
        echo = (
            admitted_at is not None
            and self._throttled_at is not None
            and admitted_at <= self._throttled_at
        )
        if not echo:
            self._consecutive += 1
            self._throttled_at = now
            if self._adaptive:
                self._factor = max(MIN_FACTOR, self._factor * DECREASE)
        if state is not None and state.retry_after is not None:
            delay = state.retry_after + self._retry_margin(state)
        elif state is not None and state.reset_after is not None:
            delay = state.reset_after + self._reset_margin(state)
        else:
            delay = self.backoff()
        self.pause_until(now + delay, now=now)
        return self._paused_until

    def succeed(self, *, now: float, admitted_at: float | None = None) -> None:
        """Note an answered request that was not throttled (additive increase)."""
        if (
            admitted_at is not None
            and self._throttled_at is not None
            and admitted_at <= self._throttled_at
        ):
            return  # admitted before the last 429: says nothing about the rate since
        self._consecutive = 0
        if self._adaptive and self._factor < 1.0:
            self.advance(now)  # tokens accrued so far at the old rate
            self._factor = min(1.0, self._factor + INCREASE)

    def record(
        self,
        status: int | None,
        state: RateLimitState | None,
        *,
        in_flight: int,
        now: float,
        admitted_at: float | None = None,
    ) -> None:
        """Apply one finished request: a 429, an answer, or (``status=None``) no answer.

        With no answer the token stays spent: the request may have reached the server.
        A 5xx answer calibrates from its headers but does not raise the adaptive rate.
        """
        if status == 429:
            self.throttle(state, in_flight=in_flight, now=now, admitted_at=admitted_at)
            return
        if state is not None:
            self.observe(state, in_flight=in_flight, now=now, admitted_at=admitted_at)
        if status is not None and status < 500:
            self.succeed(now=now, admitted_at=admitted_at)

    # -- persistence ----------------------------------------------------------------------

    def snapshot(self) -> BucketSnapshot:
        """What the bucket learned, as plain values."""
        return BucketSnapshot(
            tokens=self._tokens,
            updated=self._updated,
            paused_until=self._paused_until,
            reset_at=self._reset_at,
            spread_rate=self._spread_rate,
            learned_limit=self._learned_limit,
            remaining=self._remaining,
            factor=self._factor,
            throttled_at=self._throttled_at,
            consecutive=self._consecutive,
            calibrated_at=self._calibrated_at,
            anchor=self._anchor,
            period_refuted=self._period_refuted,
        )

    def restore(self, snapshot: BucketSnapshot) -> None:
        """Adopt a snapshot (from Redis, or another bucket), keeping this bucket's settings."""
        self._learned_limit = snapshot.learned_limit
        self._derive()
        self._tokens = min(snapshot.tokens, self._capacity)
        self._updated = snapshot.updated
        self._paused_until = snapshot.paused_until
        self._reset_at = snapshot.reset_at
        self._spread_rate = snapshot.spread_rate
        self._remaining = snapshot.remaining
        self._factor = min(1.0, max(MIN_FACTOR, snapshot.factor))
        self._throttled_at = snapshot.throttled_at
        self._consecutive = snapshot.consecutive
        self._calibrated_at = snapshot.calibrated_at
        self._anchor = snapshot.anchor
        self._period_refuted = snapshot.period_refuted
