"""A hand-driven clock for tests of code that takes a ``clock=`` callable."""

from __future__ import annotations

__all__ = ["ManualClock"]


class ManualClock:
    """A clock that moves only when the test says so.

    Pass it wherever the library (or [FakeDocument360][d360_async.testing.FakeDocument360]) takes
    ``clock=``, then [advance][d360_async.testing.ManualClock.advance] it to make lifecycles
    progress without sleeping:

    ```python
    clock = ManualClock()
    async with FakeDocument360(clock=clock) as fake:
        ...
        clock.advance(30)  # every seeded operation is now 30 s older
    ```
    """

    __slots__ = ("now",)

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        """The current time in seconds; [advance][d360_async.testing.ManualClock.advance] it."""

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward; ``seconds`` must not be negative."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self.now += seconds

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now!r})"
