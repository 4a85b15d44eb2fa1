"""A hand-driven [Clock][d360_async.Clock] for tests: time moves only when the test says so.

How it drives sleeping code:

* Every wait (``sleep``, ``call_later``) is a timer in one heap, ordered by deadline.
* [advance][d360_async.testing.ManualClock.advance] moves time at once and fires the timers due
  on the way, each at its own deadline; the tasks they wake run when the test next awaits.
* [run_for][d360_async.testing.ManualClock.run_for] does the same but lets the woken tasks run
  (until every task waits again) before moving on to the next timer, as real time would.
* [run][d360_async.testing.ManualClock.run] and
  [autoadvance][d360_async.testing.ManualClock.autoadvance] jump to the next timer whenever every
  task waits: the code under test runs as fast as the machine allows, and its timing is exact.

"Every task waits" is read from asyncio's tasks; I/O between in-process parties (a client and
a [FakeDocument360][d360_async.testing.FakeDocument360] on 127.0.0.1) is delivered while the
clock lets the loop spin, so it counts as running. A wait on another process (redis-server) does
not: drive such tests on the real clock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

__all__ = ["ManualClock"]

T = TypeVar("T")

_WALL_START = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
_SETTLE_ROUNDS = 10_000
_SPINS = 3  # loop iterations per look at the tasks: lets ready I/O callbacks run
_QUIET = 2  # looks in a row that must find every task waiting and no callback due (I/O that was
# ready when the first looked has been read by the second)
_PATIENCE = 0.5  # real seconds without any timer before a block is failed as deadlocked
_PATIENCE_STEP = 0.005


class _Timer:
    """One entry of the heap; ``cancel`` like ``asyncio.TimerHandle``."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<ManualClock timer at {self.when!r}{state}>"


class ManualClock:
    """A [Clock][d360_async.Clock] that moves only when the test says so.

    Give the same clock to everything under test (the fake server, the client, its limiter,
    the watch) and they share one time line:

    ```python
    from d360_async import Client, Phase
    from d360_async.testing import FakeDocument360, ManualClock

    async def test_export_finishes() -> None:
        clock = ManualClock()
        async with FakeDocument360(clock=clock) as fake:
            [export_id] = fake.seed("v3.export", pending=60.0, running=600.0, failure_ratio=0.0)
            async with Client(api_token=fake.api_token, base_url=fake.url, clock=clock) as client:
                target = client.exports.target(fake.project_id, export_id)
                final = await clock.run(client.wait(target))
        assert final.phase is Phase.SUCCEEDED
    ```

    [run][d360_async.testing.ManualClock.run] finishes in milliseconds however long the export
    takes on the clock. To step by hand, [advance][d360_async.testing.ManualClock.advance] (no
    task runs meanwhile) or ``await`` [run_for][d360_async.testing.ManualClock.run_for].

    Calling the clock (``clock()``) reads ``monotonic()``, so it still fits code written for
    a bare ``clock=`` function.

    Args:
        start: the first ``monotonic()`` reading.
        wall: the wall time (epoch seconds) at ``start``; default 2030-01-01T00:00:00Z.

    Added in version 0.1.0.
    """

    __slots__ = ("_seq", "_timers", "_wall_offset", "now")

    def __init__(self, start: float = 1000.0, *, wall: float = _WALL_START) -> None:
        if not math.isfinite(start) or not math.isfinite(wall):
            raise ValueError("start and wall must be finite")
        self.now = start
        """The current ``monotonic()`` reading; move it with
        [advance][d360_async.testing.ManualClock.advance]."""
        self._wall_offset = wall - start
        self._timers: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now!r}, timers={self.pending})"

    # -- the Clock protocol -----------------------------------------------------------------

    def monotonic(self) -> float:
        """The current reading, `now`."""
        return self.now

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        """Wall-clock epoch seconds: ``wall`` plus the time moved since ``start``."""
        return self.now + self._wall_offset

    def utcnow(self) -> datetime:
        """[time][d360_async.testing.ManualClock.time] as an aware UTC datetime."""
        return datetime.fromtimestamp(self.time(), UTC)

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        """Run ``callback`` once the clock has moved ``delay`` seconds on."""
        when = self.now + max(0.0, delay)
        timer = _Timer(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has moved ``seconds`` on (``0`` or less: yield once;
        ``math.inf``: until cancelled)."""
        if not seconds > 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if math.isinf(seconds):
            await future
            return

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = self.call_later(seconds, wake)
        try:
            await future
        finally:
            timer.cancel()

    # -- moving time by hand ------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Timers (sleepers included) armed and not cancelled."""
        return sum(1 for _, _, timer in self._timers if not timer.cancelled)

    def next_deadline(self) -> float | None:
        """When the next timer fires, or ``None`` when none is armed."""
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` at once, firing each timer due on the way at its own
        deadline; the tasks they wake run when the test next awaits.

        Raises:
            ValueError: ``seconds`` is negative (a clock cannot go backwards).
        """
        if not seconds >= 0:
            raise ValueError("a clock cannot go backwards")
        target = self.now + seconds
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            self.fire_due()
        self.now = target

    async def settle(self) -> None:
        """Let every other task run until all of them wait (on a timer, an event, I/O); time
        does not move.

        Raises:
            RuntimeError: the tasks never all wait (something spins on ``sleep(0)``).
        """
        me = asyncio.current_task()
        loop = asyncio.get_running_loop()
        quiet = 0
        for _ in range(_SETTLE_ROUNDS):
            for _ in range(_SPINS):
                await asyncio.sleep(0)
            if _no_callbacks(loop) and all(
                task is me or _waiting(task) for task in asyncio.all_tasks()
            ):
                quiet += 1
                if quiet == _QUIET:
                    return
            else:
                quiet = 0
        raise RuntimeError("the tasks never settle: something spins without waiting")

    async def run_for(self, seconds: float) -> None:
        """Let ``seconds`` pass as a running program would see them: each timer on the way fires
        at its own deadline and the tasks it wakes run (until all wait) before time moves on.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if not seconds >= 0:
            raise ValueError("a clock cannot go backwards")
        target = self.now + seconds
        await self.settle()
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            self.fire_due()
            await self.settle()
        self.now = target
        await self.settle()

    # -- moving time automatically ------------------------------------------------------------

    @asynccontextmanager
    async def autoadvance(self, *, horizon: float = 1e6) -> AsyncIterator[None]:
        """While the block runs, jump to the next timer whenever every task waits.

        ```python
        async with clock.autoadvance():
            await client.exports.get(project, export_id)  # retries back off on the clock
        ```

        Args:
            horizon: virtual seconds after which the block is failed as hanging.

        Raises:
            AssertionError: every task waits and no timer is armed for half a second of real
                time (a deadlock), or the block still runs ``horizon`` seconds on; the block is
                cancelled first.
        """
        body = asyncio.current_task()
        if body is None:
            raise RuntimeError("autoadvance needs a running task")
        failure: list[BaseException] = []
        driver = asyncio.ensure_future(self._drive(self.now + horizon, horizon, body, failure))
        try:
            yield
        except asyncio.CancelledError:
            if failure:
                body.uncancel()
                raise failure[0] from None
            raise
        finally:
            if not driver.done():
                driver.cancel()
            await asyncio.gather(driver, return_exceptions=True)
        if failure:
            raise failure[0]

    async def run(
        self, main: Awaitable[T] | Callable[[], Awaitable[T]], *, horizon: float = 1e6
    ) -> T:
        """Await ``main`` (an awaitable, or a function returning one) while
        [autoadvance][d360_async.testing.ManualClock.autoadvance] moves time; returns its
        result."""
        async with self.autoadvance(horizon=horizon):
            awaitable = main if isinstance(main, Awaitable) else main()
            return await awaitable
        raise AssertionError("unreachable")  # pragma: no cover - mypy: the block may swallow

    # -- internals ------------------------------------------------------------------------

    def fire_due(self) -> None:
        """Run the callbacks of the timers due at the current reading, without letting any task
        run: after setting `now` by hand, this is a loop that wakes late."""
        timers = self._timers
        while timers and timers[0][0] <= self.now:
            _, _, timer = heapq.heappop(timers)
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()

    async def _drive(
        self, limit: float, horizon: float, body: asyncio.Task[Any], failure: list[BaseException]
    ) -> None:
        try:
            while True:
                await self.settle()
                deadline = self.next_deadline()
                waited = 0.0
                while deadline is None and waited < _PATIENCE:
                    # Nothing to jump to: a thread or another process may still answer.
                    await asyncio.sleep(_PATIENCE_STEP)
                    waited += _PATIENCE_STEP
                    await self.settle()
                    deadline = self.next_deadline()
                if deadline is None:
                    raise AssertionError("deadlock: every task waits and no timer is armed")
                if deadline > limit:
                    raise AssertionError(f"still running after {horizon:g} virtual seconds")
                self.now = max(self.now, deadline)
                self.fire_due()
        except AssertionError as exc:
            failure.append(exc)
            body.cancel()


def _no_callbacks(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether no callback is scheduled to run soon (a transport being set up, a future's
    done-callbacks): asyncio's ready queue, where the loop exposes it."""
    ready = getattr(loop, "_ready", None)
    return not ready


def _waiting(task: asyncio.Task[Any]) -> bool:
    """Whether ``task`` waits on a future that is not done yet (it cannot run by itself)."""
    waiter = getattr(task, "_fut_waiter", None)
    return waiter is not None and not waiter.done()
