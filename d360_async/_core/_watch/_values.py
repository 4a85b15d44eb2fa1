"""The watch's values: what it hands the caller ([Transition][d360_async.Transition],
[TargetFinished][d360_async.TargetFinished]) and what it reports about itself
([Outage][d360_async.Outage], [WatchStats][d360_async.WatchStats]). Plain frozen data, no I/O.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Generic, TypeVar

import attrs

from d360_async._core._errors import D360Error
from d360_async._core._phase import Phase
from d360_async._core._status import RawStatus
from d360_async._core._target_protocol import Target

__all__ = ["Eta", "Outage", "TargetFinished", "Transition", "TransitionKind", "WatchStats"]

S = TypeVar("S")


@attrs.frozen(slots=True)
class Eta:
    """When a watched operation is expected to finish, from the learned durations of its kind.

    Attributes:
        seconds: expected seconds from the moment it was computed until the operation
            finishes.
        low: 10th percentile of those seconds.
        high: 90th percentile: the operation finishes in ``[low, high]`` with 80 % chance.
        samples: finished durations the estimate rests on.
    """

    seconds: float
    low: float
    high: float
    samples: int

    def __str__(self) -> str:
        return f"~{_span(self.seconds)} (80 %: {_span(self.low)}-{_span(self.high)})"


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


class TransitionKind(enum.Enum):
    """Why a transition was yielded."""

    CHANGED = "changed"
    """The status differs from the last one delivered (or was seen for the first time)."""
    STALLED = "stalled"
    """No change for ``PollPolicy.stall_after``; the target is still watched."""
    ERROR = "error"
    """The target ended on a non-retryable error, carried in ``Transition.error``."""
    TIMED_OUT = "timed_out"
    """The target's own deadline, or the whole watch's, passed before it finished."""

    def __str__(self) -> str:
        return self.value


@attrs.frozen(slots=True)
class Transition(Generic[S]):
    """One thing that happened to one watched target.

    Attributes:
        target: the target it happened to.
        kind: CHANGED, STALLED, ERROR or TIMED_OUT.
        previous: for CHANGED, the phase before the change (None on first sight); for the
            other kinds, the last phase seen (None if never seen).
        phase: the current phase (for the other kinds: the last one seen, or UNKNOWN if the
            target was never seen).
        raw_status: the vendor's own status value behind ``phase``.
        snapshot: the typed model of the last successful poll (None if there was none).
        observed_at: when it was observed (aware, UTC).
        polls: polls made for this target so far (including failed ones).
        warnings: oddities of the answer worth knowing (e.g. a V2 status/is_complete mismatch).
        error: for ERROR the exception that ended the target; for STALLED the last transient
            error, if the last poll failed.
        final: nothing more will be yielded for this target (terminal phase, ``until=``
            returned True, ERROR, or TIMED_OUT).
        eta: when the target is expected to finish, counted from ``observed_at``, with an
            80 % interval, from the durations learned for its kind and phase; None once
            final, and while nothing of its kind has been seen to finish.
    """

    target: Target[S]
    kind: TransitionKind
    previous: Phase | None
    phase: Phase
    raw_status: RawStatus | None
    snapshot: S | None
    observed_at: datetime
    polls: int
    warnings: tuple[str, ...] = ()
    error: D360Error | None = None
    final: bool = False
    eta: Eta | None = None

    @property
    def key(self) -> str:
        """The target's key."""
        return self.target.key


@attrs.frozen(slots=True)
class TargetFinished:
    """A watched target will yield nothing more: the event of ``Hooks.on_target_finished``.

    Added in version 0.1.0.

    Attributes:
        key: the target's key.
        kind: the target's kind (``"v3.export"``...).
        phase: the last phase seen (None if the target was never seen).
        polls: polls made for it (including failed ones).
        first_seen_at: when the watch first saw it (None if never seen by this watch, for
            instance a target resumed from a checkpoint already seen before).
        finished_at: when it finished.
        transition: its final transition; None when it was removed with
            [Watch.remove][d360_async.Watch.remove] or abandoned.
        abandoned: the watch's ``async with`` block was left before the target finished (a
            ``break``, an exception, a cancellation).
    """

    key: str
    kind: str
    phase: Phase | None
    polls: int
    first_seen_at: datetime | None
    finished_at: datetime
    transition: Transition[Any] | None
    abandoned: bool = False

    @property
    def removed(self) -> bool:
        """Whether it was removed rather than finished."""
        return self.transition is None and not self.abandoned


@attrs.frozen(slots=True)
class Outage:
    """One outage of a rate-limit key, as the watch's circuit breaker saw it.

    Attributes:
        key: the rate-limit key (``host|token fingerprint|project``), safe to log.
        started_at: when the circuit opened (aware, UTC).
        ended_at: when a probe reached the server again; None while it lasts.
        failures: polls that failed to connect, from the ones that opened it to the end.
        probes: probe polls sent while it was open.
    """

    key: str
    started_at: datetime
    ended_at: datetime | None = None
    failures: int = 0
    probes: int = 0

    @property
    def ongoing(self) -> bool:
        """The key is still unreachable."""
        return self.ended_at is None


@attrs.frozen(slots=True)
class WatchStats:
    """What a watch has done so far ([Watch.stats][d360_async.Watch.stats]).

    Attributes:
        polls: polls started (including failed ones).
        live: targets whose final transition has not been handed over yet.
        finished: final transitions handed over.
        forgotten: finished targets a ``keep_open`` watch dropped once delivered.
        idle_seconds: time a rate-limit budget had a token free while every waiting target
            of it was held back (by the shortest duration its kind has shown, or by its
            minimum interval), summed over budgets.
        idle_budget: polls those budgets would have allowed meanwhile (their sustainable
            rate times ``idle_seconds``): budget left for others to use.
        shared: polls made for this watch's targets by someone else (another watch of the
            same client, or another process through an
            [ObservationHub][d360_async.ObservationHub]) whose results this watch used
            instead of polling; not counted in ``polls``.
    """

    polls: int
    live: int
    finished: int
    forgotten: int
    idle_seconds: float
    idle_budget: float
    shared: int = 0
