"""Where time comes from: one [Clock][d360_async.Clock] for everything that reads it or waits.

The transport (retry back-off), the limiters (wake-up timers, stats), the watch (its scheduler
and timeouts) and [FakeDocument360][d360_async.testing.FakeDocument360] (lifecycles, windows,
simulated latency) all take ``clock=``. [SystemClock][d360_async.SystemClock] is the real one;
[ManualClock][d360_async.testing.ManualClock] moves only when a test says so, and drives every
one of them at once, so minutes of rate limiting run in milliseconds.

Pure code takes time as numbers (``now=``) and never sees a clock.

Rules: a clock's ``monotonic()`` never goes backwards; ``time()`` is wall-clock epoch seconds
and moves with it (a fake clock keeps a fixed offset between the two); ``sleep`` and
``call_later`` wait on the clock's own time.
"""

from __future__ import annotations

import asyncio
import math
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "TimerHandle", "as_clock", "reading", "utc_datetime"]


class TimerHandle(Protocol):
    """What [Clock.call_later][d360_async.Clock.call_later] returns: ``asyncio.TimerHandle``
    fits."""

    def cancel(self) -> None:
        """Stop the callback from running (no-op once it ran)."""
        ...


@runtime_checkable
class Clock(Protocol):
    """A source of time that can also wait: the one way time enters d360-async.

    Pass one as ``clock=`` to [Client][d360_async.Client],
    [LocalRateLimiter][d360_async.LocalRateLimiter], `RedisRateLimiter`,
    [Client.watch][d360_async.Client.watch] and
    [FakeDocument360][d360_async.testing.FakeDocument360]; by default each uses
    [SystemClock][d360_async.SystemClock]. Tests use
    [ManualClock][d360_async.testing.ManualClock].

    Added in version 0.1.0.
    """

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for intervals and deadlines)."""
        ...

    def time(self) -> float:
        """Wall-clock UTC epoch seconds (for ``Date`` headers, epochs and timestamps)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock; ``0`` or less only yields, ``math.inf`` waits until
        cancelled."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` (on the running event loop) once ``delay`` seconds of this clock
        have passed; a wake-up that needs no task, as the limiters use."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time``, ``asyncio.sleep`` and the running
    loop's ``call_later``.

    Added in version 0.1.0.
    """

    __slots__ = ()

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def time(self) -> float:
        """``time.time()``."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``; ``math.inf`` sleeps until cancelled."""
        if math.isinf(seconds) and seconds > 0:
            await asyncio.get_running_loop().create_future()
        else:
            await asyncio.sleep(max(0.0, seconds))

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """``call_later`` of the running event loop."""
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback)

    def __repr__(self) -> str:
        return "SystemClock()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SystemClock)

    def __hash__(self) -> int:
        return hash(SystemClock)


SYSTEM_CLOCK = SystemClock()
"""The one real clock every component defaults to."""


def utc_datetime(clock: Clock) -> datetime:
    """The clock's wall time as an aware UTC datetime."""
    return datetime.fromtimestamp(clock.time(), UTC)


class _ReadingClock:
    """A function of seconds seen as a [Clock][d360_async.Clock]: it is read for
    ``monotonic()``; wall time moves with it from ``base.time()`` at wrapping; waits are
    ``base``'s (the function must run at ``base``'s rate)."""

    __slots__ = ("_base", "_offset", "_read")

    def __init__(self, read: Callable[[], float], base: Clock) -> None:
        self._read = read
        self._base = base
        self._offset = base.time() - read()

    def monotonic(self) -> float:
        return self._read()

    def time(self) -> float:
        return self._read() + self._offset

    async def sleep(self, seconds: float) -> None:
        await self._base.sleep(seconds)

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return self._base.call_later(delay, callback)

    def __repr__(self) -> str:
        return f"<clock reading {self._read!r}>"


def reading(read: Callable[[], float], base: Clock) -> Clock:
    """A clock read from ``read`` (e.g. ``base`` moved onto another time line) that waits on
    ``base``."""
    return _ReadingClock(read, base)


def as_clock(value: Clock | Callable[[], float] | None, *, owner: str) -> Clock:
    """What a ``clock=`` argument means: `None` is the [SystemClock][d360_async.SystemClock],
    a [Clock][d360_async.Clock] is itself, and a bare function returning seconds (the first
    way of injecting time) still works but is deprecated.

    Raises:
        TypeError: anything else.
    """
    if value is None:
        return SYSTEM_CLOCK
    if isinstance(value, Clock):
        return value
    if callable(value):
        warnings.warn(
            f"{owner}(clock=<function>) is deprecated: pass a d360_async.Clock "
            "(d360_async.SystemClock, or d360_async.testing.ManualClock in tests)",
            DeprecationWarning,
            stacklevel=3,
        )
        return _ReadingClock(value, SYSTEM_CLOCK)
    raise TypeError(f"{owner}(clock=...) takes a d360_async.Clock, got {type(value).__name__}")
