"""What the watch needs from anything it can follow: the [Target][d360_async.Target] protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import attrs

from d360_async._core._phase import Phase
from d360_async._core._ratelimit._protocol import RateLimiter, RateLimitKey, Ticket
from d360_async._core._status import RawStatus

__all__ = ["Observation", "Target"]

S = TypeVar("S")


@attrs.frozen(slots=True)
class Observation(Generic[S]):
    """The outcome of one successful status poll.

    Attributes:
        phase: the normalised phase.
        raw_status: the vendor's own status value (string or integer), JSON-serialisable.
        snapshot: the typed model the poll returned (an ``Export``, a ``DriveTask``...).
        warnings: anything odd about the answer that was not worth an exception, such as the
            V2 ``is_complete``/``status`` disagreement.
    """

    phase: Phase
    raw_status: RawStatus | None
    snapshot: S
    warnings: tuple[str, ...] = ()


@runtime_checkable
class Target(Protocol[S]):
    """One long-running operation that a watch can follow.

    Every status-bearing resource builds these with ``.target(...)``; users may implement the
    protocol for anything else.
    """

    @property
    def key(self) -> str:
        """Unique and stable identity, e.g. ``"v3.export/<project>/<export>"``."""
        ...

    @property
    def kind(self) -> str:
        """Operation kind for learning durations, e.g. ``"v3.export"``, ``"v2.delete_file"``."""
        ...

    @property
    def rate_key(self) -> RateLimitKey:
        """The rate-limit budget this target's polls draw from."""
        ...

    @property
    def limiter(self) -> RateLimiter:
        """The limiter this target's polls go through."""
        ...

    async def poll(self, *, ticket: Ticket | None = None) -> Observation[S]:
        """Fetch the status once.

        ``ticket`` is a rate-limit admission the caller already holds for
        [rate_key][d360_async.Target.rate_key]; when given, the first attempt is sent without
        acquiring again.  Raises a [D360Error][d360_async.D360Error] on failure (after the client's
        own retries).
        """
        ...

    def to_spec(self) -> Mapping[str, Any]:
        """A JSON-serialisable description, used in watch checkpoints."""
        ...
