"""The in-process rate limiter: one token bucket and one wake-up timer per key.

How a key is served (see `_bucket` for the arithmetic):

* ``acquire`` takes a token at once when the bucket has one and nobody of the same or a better
  priority is queued; otherwise the caller queues: one FIFO per [Priority][d360_async.Priority], and
  a [Priority.DIRECT][d360_async.Priority.DIRECT] waiter always goes before a
  [Priority.POLL][d360_async.Priority.POLL] one.
* Each key has at most one timer, armed for when the bucket will next hold a token. When it
  fires, waiters are admitted one per token, head first, and the timer is re-armed for the
  next. No waiter polls and no task runs in the background, so there is nothing to leak:
  admission costs a deque append and pop, and O(1) bucket arithmetic.
* ``complete`` feeds the answer to the bucket (calibration, or a 429 pause of the whole key) and
  re-arms the timer when the next token's time moved. After a pause the bucket holds a single
  token and refills at its rate, so queued callers are released paced, not all at once.
* A cancelled waiter stays in its queue as a cancelled future and is skipped when it reaches
  the head (O(1) cancellation); one cancelled *after* being admitted, before it could resume,
  gives its token back, so no admission is lost and none is spent on nothing.
"""

from __future__ import annotations

import asyncio
import math
import time
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from d360_async._clock import Clock, SystemClock, TimerHandle, as_clock
from d360_async._core._ratelimit._budget import Budget
from d360_async._core._ratelimit._headers import RateLimitState
from d360_async._core._ratelimit._protocol import LimiterStats, Priority, RateLimitKey, Ticket

__all__ = [
    "EPOCH_RESOLUTION",
    "CallLater",
    "LocalRateLimiter",
    "RateLimitConfig",
    "TimerHandle",
    "as_rate_limit_config",
    "budget_stats",
]

EPOCH_RESOLUTION = 1.0
"""Seconds a reset sent as a whole-second epoch may be early by, if the server truncated it."""


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive number, got {value!r}")


def _burst(instance: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"burst must be at least 1, got {value!r}")


def _fraction(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{attribute.name} must be in [0, 1), got {value!r}")


def _margin(
    instance: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"wait_margin must be >= 0 seconds, got {value!r}")


@attrs.frozen(slots=True, kw_only=True)
class RateLimitConfig:
    """How a limiter paces one budget until (and besides what) the server says.

    Attributes:
        rate: requests allowed per ``period`` when the server does not announce its limit.
            The default, 60 per minute, is the vendor's lowest paid plan; Enterprise and Trial
            allow 100.
        period: the server's window, in seconds.
        burst: how many requests may leave back to back after an idle spell. ``None`` means 1,
            which lets the limiter run at the full rate without ever exceeding ``rate`` in any
            window; a larger burst lowers the sustained rate by ``burst - 1`` per period.
        adaptive: lower the rate after a 429 and raise it slowly while requests succeed
            (AIMD), for servers that send no rate-limit headers.
        use_headers: calibrate from ``X-RateLimit-*``. ``Retry-After`` on a 429 is honoured
            either way.
        safety_margin: fraction of the configured ``rate`` left unused until the server
            announces its own limit, against network jitter moving requests into the same
            window. An announced ``X-RateLimit-Limit`` is used in full: from then on every
            answer's ``X-RateLimit-Remaining`` says exactly what is left.
        wait_margin: seconds added to every wait the server announces (reset, Retry-After),
            against rounding of those values. ``None`` (the default) sizes the margin by how
            the value was sent: a reset sent as an epoch (or a Retry-After sent as an HTTP
            date) gets one second, its resolution, because a point in time is commonly
            truncated to the second and may then be up to a second early; a value sent as a
            number of seconds gets none, because a wait is rounded up (a server that said
            "0" while still refusing would be broken). Either way the reset is also bounded
            by ``period`` after the first answer of the window (see `_bucket`), which
            needs no margin, so the margin costs nothing while ``rate`` and ``period``
            describe the server. Set a number to add exactly that to every announced wait.

    Added in version 0.1.0."""

    rate: float = attrs.field(default=60.0, validator=_positive)
    period: float = attrs.field(default=60.0, validator=_positive)
    burst: int | None = attrs.field(default=None, validator=_burst)
    adaptive: bool = True
    use_headers: bool = True
    safety_margin: float = attrs.field(default=0.03, validator=_fraction)
    wait_margin: float | None = attrs.field(default=None, validator=_margin)

    @property
    def effective_burst(self) -> int:
        """``burst``, with ``None`` resolved."""
        return 1 if self.burst is None else self.burst

    @property
    def effective_wait_margin(self) -> float:
        """Seconds added to every announced wait: ``wait_margin``, or 0 when ``None``."""
        return 0.0 if self.wait_margin is None else self.wait_margin

    @property
    def effective_epoch_margin(self) -> float:
        """Seconds added besides to a wait announced as a point in time: the resolution of
        an epoch, `EPOCH_RESOLUTION`, when ``wait_margin`` is ``None``, else 0."""
        return EPOCH_RESOLUTION if self.wait_margin is None else 0.0

    def pacing(self) -> dict[str, Any]:
        """The keyword arguments a budget (or the Redis limiter's bucket) is built with."""
        return {
            "burst": self.effective_burst,
            "safety_margin": self.safety_margin,
            "wait_margin": self.effective_wait_margin,
            "epoch_margin": self.effective_epoch_margin,
            "adaptive": self.adaptive,
        }

    def new_bucket(self, now: float) -> Budget:
        """A fresh budget with these settings: the configured rate is its prior."""
        return Budget(self.rate, self.period, now=now, **self.pacing())

    def headers_in_use(
        self, status: int | None, state: RateLimitState | None
    ) -> RateLimitState | None:
        """What of ``state`` the limiter may act on: everything, or only a 429's Retry-After."""
        if state is None or self.use_headers:
            return state
        if status == 429 and state.retry_after is not None:
            return RateLimitState(retry_after=state.retry_after, retry_is_date=state.retry_is_date)
        return None


def as_rate_limit_config(value: object) -> RateLimitConfig | None:
    """What a `rate_limit=` argument means: `None` (the default prior), a number of requests
    per minute, or a [RateLimitConfig][d360_async.RateLimitConfig].

    Raises:
        TypeError: anything else (a tuple, a string, a bool), naming what is accepted.
        ValueError: a number that is not a positive, finite rate.
    """
    if value is None or isinstance(value, RateLimitConfig):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            "rate_limit= takes requests per minute (a number), a RateLimitConfig, or None; "
            f"got {type(value).__name__}"
        )
    return RateLimitConfig(rate=float(value))


CallLater = Callable[[float, Callable[[], None]], TimerHandle]
"""Run a callback after a delay in seconds (deprecated: the clock's ``call_later`` is used)."""

_Waiter = tuple["asyncio.Future[Ticket]", float]


class _Lane:
    """Everything the limiter keeps for one key."""

    __slots__ = (
        "bucket",
        "in_flight",
        "key",
        "on_timer",
        "queued",
        "queues",
        "requests",
        "throttled",
        "timer",
        "timer_at",
        "timer_loop",
        "total_wait",
        "waiting",
        "waits",
    )

    def __init__(self, key: RateLimitKey, bucket: Budget) -> None:
        self.key = key
        self.bucket = bucket
        self.queues: tuple[deque[_Waiter], ...] = tuple(deque() for _ in Priority)
        self.waiting = [0] * len(Priority)  # live waiters per priority
        self.queued = 0  # live waiters in all: sum(waiting), kept for the fast path
        self.in_flight = 0
        self.timer: TimerHandle | None = None
        self.timer_at = math.inf
        self.timer_loop: asyncio.AbstractEventLoop | None = None
        self.on_timer: Callable[[], None] = _noop
        self.requests = 0
        self.waits = 0
        self.total_wait = 0.0
        self.throttled = 0

    def ahead(self, priority: int) -> int:
        """Live waiters that would be served before a newcomer at ``priority``."""
        if not self.queued:
            return 0
        return sum(self.waiting[: priority + 1])

    def head(self) -> tuple[_Waiter, int] | None:
        """The next live waiter and its priority; drops cancelled ones on the way."""
        for priority, queue in enumerate(self.queues):
            while queue:
                waiter = queue[0]
                if not waiter[0].done():
                    return waiter, priority
                queue.popleft()
        return None

    def admit(self, now: float, waited: float, priority: int) -> Ticket:
        self.in_flight += 1
        self.requests += 1
        if waited > 0.0:
            self.waits += 1
            self.total_wait += waited
        return Ticket(self.key, now, waited, _PRIORITIES[priority], seq=self.bucket.seq)

    def now(self, now: float) -> float:
        """Bring the bucket up to ``now`` (without the cap while callers wait); returns it."""
        self.bucket.advance(now, backlogged=self.queued > 0)
        return now

    def enqueue(self, waiter: _Waiter, priority: int) -> None:
        self.queues[priority].append(waiter)
        self.waiting[priority] += 1
        self.queued += 1

    def dequeued(self, priority: int) -> None:
        """A live waiter left its queue (admitted, or cancelled while queued)."""
        self.waiting[priority] -= 1
        self.queued -= 1

    def clear(self) -> None:
        self.waiting = [0] * len(Priority)
        self.queued = 0

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.timer_at = math.inf


def _noop() -> None:
    return None


def _at_once(lane: _Lane, now: float, level: int) -> Ticket | None:
    """Admit at ``now`` if nobody of the same or a better priority waits and the budget
    allows it at once."""
    if lane.ahead(level) == 0 and lane.bucket.try_take(lane.now(now)) == 0.0:
        return lane.admit(now, 0.0, level)
    return None


_PRIORITIES: tuple[Priority, ...] = tuple(Priority)


class LocalRateLimiter:
    """A `RateLimiter` for one process (module docstring).

    Args:
        config: the pacing settings shared by every key (default: 60 per minute).
        clock: where time comes from ([Clock][d360_async.Clock]): its ``monotonic()`` paces the
            keys and its ``call_later`` arms the per-key wake-up. Default: the
            [SystemClock][d360_async.SystemClock]; tests pass a
            [ManualClock][d360_async.testing.ManualClock].
        call_later: deprecated; the clock's ``call_later`` is used.

    A limiter belongs to the event loop it is first used on. Share one between clients with
    the same token (``Client(rate_limiter=...)``); use `RedisRateLimiter` to
    share a budget between processes.

    Added in version 0.1.0."""

    __slots__ = (
        "_call_later",
        "_clock",
        "_closed",
        "_config",
        "_default_budget",
        "_lanes",
        "_now",
    )

    def __init__(
        self,
        config: RateLimitConfig | None = None,
        *,
        clock: Clock | Callable[[], float] | None = None,
        call_later: CallLater | None = None,
    ) -> None:
        self._config = config if config is not None else RateLimitConfig()
        self._clock: Clock = as_clock(clock, owner="LocalRateLimiter")
        # The function itself for the real clock: the limiter reads it twice per request.
        self._now: Callable[[], float] = (
            time.monotonic if type(self._clock) is SystemClock else self._clock.monotonic
        )
        if call_later is not None:
            warnings.warn(
                "LocalRateLimiter(call_later=...) is deprecated: pass a d360_async.Clock, "
                "whose call_later is used",
                DeprecationWarning,
                stacklevel=2,
            )
        self._call_later = call_later
        self._lanes: dict[RateLimitKey, _Lane] = {}
        self._closed = False
        self._default_budget = self._config.new_bucket(0.0).sustainable_rate

    @property
    def config(self) -> RateLimitConfig:
        """The settings every key is paced with."""
        return self._config

    @property
    def closed(self) -> bool:
        """True once [aclose][d360_async.LocalRateLimiter.aclose] was called."""
        return self._closed

    def __repr__(self) -> str:
        queued = sum(lane.queued for lane in self._lanes.values())
        in_flight = sum(lane.in_flight for lane in self._lanes.values())
        state = "closed" if self._closed else f"keys={len(self._lanes)}"
        return (
            f"LocalRateLimiter(rate={self._config.rate:g}/{self._config.period:g}s, {state}, "
            f"in_flight={in_flight}, queued={queued})"
        )

    async def __aenter__(self) -> LocalRateLimiter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the protocol ---------------------------------------------------------------------

    async def acquire(self, key: RateLimitKey, *, priority: Priority = Priority.DIRECT) -> Ticket:
        """Wait until a request on ``key`` may be sent, then return its ticket.

        Raises:
            RuntimeError: the limiter is (or gets) closed.
        """
        if self._closed:
            raise RuntimeError("the rate limiter is closed")
        lane = self._lanes.get(key) or self._lane(key)
        now = self._now()
        level = int(priority)
        ticket = _at_once(lane, now, level)
        if ticket is not None:
            return ticket
        future: asyncio.Future[Ticket] = asyncio.get_running_loop().create_future()
        lane.enqueue((future, now), level)
        self._dispatch(lane)
        try:
            return await future
        except asyncio.CancelledError:
            if not future.done() or future.cancelled():
                future.cancel()
                if not self._closed:
                    lane.dequeued(level)
            elif future.exception() is None:
                # Admitted, but cancelled before it could resume: the request will never be
                # sent, so the token goes to the next waiter.
                self._give_back(lane, future.result())
            raise

    def try_acquire(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> Ticket | None:
        """The ticket [acquire][d360_async.LocalRateLimiter.acquire] would hand out at once,
        or None (nothing taken) when it would wait or the limiter is closed.

        The transport asks this first: a request admitted at once needs no look at how long
        the wait would be, nor a coroutine.
        """
        if self._closed:
            return None
        return _at_once(self._lanes.get(key) or self._lane(key), self._now(), int(priority))

    async def complete(
        self, ticket: Ticket, *, status: int | None, state: RateLimitState | None
    ) -> None:
        """Settle a ticket: calibrate from the answer, or pause the key on a 429.

        ``status=None`` means no answer came back; the token stays spent because the request
        may have reached the server.

        Raises:
            RuntimeError: the ticket was already completed.
            ValueError: the ticket was not issued by this limiter.
        """
        self.settle(ticket, status=status, state=state)

    def settle(self, ticket: Ticket, *, status: int | None, state: RateLimitState | None) -> None:
        """[complete][d360_async.LocalRateLimiter.complete] without the coroutine, for callers
        outside a coroutine."""
        if ticket.completed:
            raise RuntimeError(f"ticket for {ticket.key} completed twice")
        lane = self._lanes.get(ticket.key)
        if lane is None:
            raise ValueError(f"ticket for {ticket.key} was not issued by this limiter")
        ticket.completed = True
        lane.in_flight -= 1
        if status == 429:
            lane.throttled += 1
        config = self._config
        lane.bucket.record(
            status,
            state if state is None or config.use_headers else config.headers_in_use(status, state),
            now=lane.now(self._now()),
            sent=ticket.admitted_at,
            seq=ticket.seq,
        )
        if lane.queued and not self._closed:
            self._dispatch(lane)

    def stats(self) -> list[LimiterStats]:
        """Counters and estimates for every key seen so far."""
        now = self._now()
        return [self._stats(lane, now) for lane in self._lanes.values()]

    def has_capacity(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> bool:
        """Whether [acquire][d360_async.LocalRateLimiter.acquire] at ``priority`` would be admitted
        now, without waiting."""
        if self._closed:
            return False
        lane = self._lanes.get(key)
        if lane is None:
            return True
        if lane.ahead(int(priority)):
            return False
        return lane.bucket.wait_time(lane.now(self._now())) == 0.0

    def next_available(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> float:
        """Seconds until an [acquire][d360_async.LocalRateLimiter.acquire] at ``priority`` would be
        admitted (0: now).

        Counts the callers queued ahead; later arrivals of a better priority, or responses
        that recalibrate the bucket, can change the answer.
        """
        lane = self._lanes.get(key)
        if lane is None:
            return 0.0
        need = lane.ahead(int(priority)) + 1
        return lane.bucket.wait_time(lane.now(self._now()), float(need))

    def paused_for(self, key: RateLimitKey) -> float:
        """Seconds until the server lets ``key`` spend again, as it said (see the protocol)."""
        lane = self._lanes.get(key)
        if lane is None:
            return 0.0
        return lane.bucket.server_wait(lane.now(self._now()))

    def budget(self, key: RateLimitKey) -> float:
        """The sustainable requests per second on ``key`` (see the protocol)."""
        lane = self._lanes.get(key)
        if lane is None:
            return self._default_budget
        return lane.bucket.sustainable_rate

    async def aclose(self) -> None:
        """Stop every timer and fail every queued ``acquire`` with `RuntimeError`.

        Idempotent. Tickets already handed out may still be completed (it is a no-op).
        """
        if self._closed:
            return
        self._closed = True
        for lane in self._lanes.values():
            lane.stop_timer()
            for queue in lane.queues:
                while queue:
                    future, _ = queue.popleft()
                    if not future.done():
                        future.set_exception(RuntimeError("the rate limiter was closed"))
            lane.clear()

    # -- internals ------------------------------------------------------------------------

    def _lane(self, key: RateLimitKey) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            lane = _Lane(key, self._config.new_bucket(self._now()))
            lane.on_timer = lambda: self._on_timer(lane)
            self._lanes[key] = lane
        return lane

    def _on_timer(self, lane: _Lane) -> None:
        lane.timer = None
        lane.timer_at = math.inf
        if not self._closed:
            self._dispatch(lane)

    def _dispatch(self, lane: _Lane) -> None:
        """Admit waiters while the bucket has tokens; then arm the timer for the next one."""
        now = self._now()
        bucket = lane.bucket
        while True:
            head = lane.head()
            if head is None:
                bucket.clamp()
                lane.stop_timer()
                return
            # Someone has waited since the bucket was last updated (an arrival to an empty
            # queue updates it first), so a late timer must not cost tokens.
            wait = bucket.try_take(now, backlogged=True)
            if wait > 0.0:
                self._arm(lane, now, wait, head[0][0].get_loop())
                return
            (future, enqueued), level = head
            lane.queues[level].popleft()
            lane.dequeued(level)
            future.set_result(lane.admit(now, now - enqueued, level))

    def _arm(self, lane: _Lane, now: float, wait: float, loop: asyncio.AbstractEventLoop) -> None:
        """Make sure the lane wakes up by ``now + wait``, on the loop its waiters run on."""
        deadline = now + wait
        if lane.timer is not None:
            if lane.timer_at <= deadline and lane.timer_loop is loop:
                return  # an earlier wake-up is set; it re-arms for the rest
            lane.timer.cancel()
        if self._call_later is not None:
            call_later = self._call_later
        elif isinstance(self._clock, SystemClock):
            call_later = loop.call_later  # the waiters' loop, even when settled from elsewhere
        else:
            call_later = self._clock.call_later
        lane.timer_at = deadline
        lane.timer_loop = loop
        lane.timer = call_later(wait, lane.on_timer)

    def _give_back(self, lane: _Lane, ticket: Ticket) -> None:
        ticket.completed = True
        lane.in_flight -= 1
        lane.requests -= 1
        lane.bucket.refund(lane.now(self._now()), ticket.seq)
        if not self._closed:
            self._dispatch(lane)

    def _stats(self, lane: _Lane, now: float) -> LimiterStats:
        return budget_stats(
            lane.key,
            lane.bucket,
            lane.now(now),
            requests=lane.requests,
            waits=lane.waits,
            total_wait=lane.total_wait,
            throttled=lane.throttled,
            in_flight=lane.in_flight,
            queued=lane.queued,
        )

    # -- for the Redis limiter's fallback -------------------------------------------------

    def _adopt(self, key: RateLimitKey, budget: Budget) -> None:
        """Carry `key` on with `budget` (a Redis limiter's replica, on this limiter's clock)."""
        lane = self._lane(key)
        lane.bucket = budget
        if lane.queued:
            self._dispatch(lane)

    def _record(
        self,
        key: RateLimitKey,
        status: int | None,
        state: RateLimitState | None,
        *,
        sent: float,
        seq: int,
    ) -> None:
        """Apply an answer to a request this limiter did not admit (a Redis ticket admitted
        by the budget this limiter has adopted)."""
        if self._closed:
            return
        lane = self._lane(key)
        lane.bucket.record(status, state, now=lane.now(self._now()), sent=sent, seq=seq)
        if lane.queued:
            self._dispatch(lane)


def budget_stats(
    key: RateLimitKey,
    bucket: Budget,
    now: float,
    *,
    requests: int,
    waits: int,
    total_wait: float,
    throttled: int,
    in_flight: int,
    queued: int,
) -> LimiterStats:
    """One key's [LimiterStats][d360_async.LimiterStats]: the counters given, the estimate
    read from `bucket` as it stands (brought up to date by the caller, or not at all)."""
    reset_at = bucket.reset_at
    return LimiterStats(
        key=key,
        requests=requests,
        waits=waits,
        total_wait=total_wait,
        throttled=throttled,
        limit=bucket.learned_limit,
        remaining=bucket.remaining,
        reset_after=reset_at - now if reset_at is not None and reset_at > now else None,
        rate=bucket.rate,
        in_flight=in_flight,
        queued=queued,
        paused_for=max(0.0, bucket.paused_until - now),
        budget=bucket.sustainable_rate,
        policy=bucket.estimate(),
    )
