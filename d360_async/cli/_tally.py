"""Bookkeeping for a command that watches many operations: pure, no I/O, clock passed in.

The tally knows every operation by its target key, the phase it was last seen in, how often it
was polled and how it ended.  Displays and the final summary read from it; the exit code is
decided here.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from d360_async import Phase

from ._exit import ExitCode

__all__ = ["OUTCOMES", "PHASE_ORDER", "OperationRecord", "Tally", "percentile"]

# Phases in the order a display lists them; ``None`` (not seen yet) is shown as "waiting".
PHASE_ORDER: Final[tuple[Phase, ...]] = (
    Phase.PENDING,
    Phase.RUNNING,
    Phase.UNKNOWN,
    Phase.SUCCEEDED,
    Phase.FAILED,
    Phase.CANCELLED,
)

# How an operation may end, as reported in summaries and the JSON ``summary`` line.
OUTCOMES: Final[tuple[str, ...]] = ("succeeded", "failed", "cancelled", "timed_out", "error")


@attrs.define(slots=True)
class OperationRecord:
    """What is known of one watched operation."""

    key: str
    group: str
    ident: str
    phase: Phase | None = None
    raw_status: object = None
    polls: int = 0
    outcome: str | None = None
    ended_at: float | None = None
    error: str | None = None
    stalled: bool = False


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile of ``values`` (nearest rank), or ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class Tally:
    """Counts per phase and per outcome over a fixed set of operations.

    Args:
        operations: ``(key, group, ident)`` per operation: the target key, the group it is
            summarised under (its kind) and the id the user knows it by.
        started_at: a reading of the clock that ``now`` arguments also come from.
        expected: how many operations there will be in the end, when some are still being
            started (they count as "waiting" until `add` registers them).
    """

    __slots__ = ("_expected", "_records", "_started_at", "_transitions", "auth_failed")

    def __init__(
        self,
        operations: Iterable[tuple[str, str, str]],
        *,
        started_at: float,
        expected: int = 0,
    ) -> None:
        self._records: dict[str, OperationRecord] = {}
        for key, group, ident in operations:
            if key in self._records:
                continue
            self._records[key] = OperationRecord(key=key, group=group, ident=ident)
        self._started_at = started_at
        self._expected = expected
        self._transitions = 0
        #: Set when an operation ended because the credential was refused (exit code 3).
        self.auth_failed = False

    # -- updates -----------------------------------------------------------------------------

    def get(self, key: str) -> OperationRecord:
        """The record of ``key``; ``KeyError`` if it was not part of the tally."""
        return self._records[key]

    def add(self, key: str, group: str, ident: str) -> OperationRecord:
        """Add an operation after the start (no-op if known)."""
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = OperationRecord(key=key, group=group, ident=ident)
        return record

    def observe(
        self,
        key: str,
        *,
        phase: Phase | None,
        raw_status: object,
        polls: int,
        now: float,
        error: str | None = None,
        timed_out: bool = False,
        stalled: bool = False,
    ) -> OperationRecord:
        """Record one transition of ``key``."""
        record = self._records[key]
        self._transitions += 1
        record.polls = max(record.polls, polls)
        if phase is not None:
            record.phase = phase
            record.raw_status = raw_status
        record.stalled = stalled
        if record.outcome is not None:
            return record
        if error is not None:
            record.outcome, record.error, record.ended_at = "error", error, now
        elif timed_out:
            record.outcome, record.ended_at = "timed_out", now
        elif phase is not None and phase.is_terminal:
            record.outcome, record.ended_at = phase.value, now
        return record

    def fail(self, key: str, group: str, ident: str, *, error: str, now: float) -> None:
        """Record an operation that could not even be started."""
        record = self.add(key, group, ident)
        record.outcome, record.error, record.ended_at = "error", error, now

    def give_up(self, now: float) -> None:
        """Mark every operation still open as timed out (the whole command's deadline)."""
        for record in self._records.values():
            if record.outcome is None:
                record.outcome, record.ended_at = "timed_out", now

    # -- reading -----------------------------------------------------------------------------

    @property
    def records(self) -> list[OperationRecord]:
        return list(self._records.values())

    @property
    def total(self) -> int:
        return max(len(self._records), self._expected)

    @property
    def done(self) -> int:
        return sum(1 for r in self._records.values() if r.outcome is not None)

    @property
    def transitions(self) -> int:
        return self._transitions

    @property
    def polls(self) -> int:
        return sum(r.polls for r in self._records.values())

    def by_phase(self) -> dict[str, int]:
        """Operations per current phase; ``"waiting"`` for those not seen yet."""
        counts: Counter[str] = Counter(
            "waiting" if r.phase is None else r.phase.value for r in self._records.values()
        )
        not_started = max(0, self._expected - len(self._records))
        ordered = {"waiting": counts.get("waiting", 0) + not_started}
        ordered.update({p.value: counts.get(p.value, 0) for p in PHASE_ORDER})
        return ordered

    def by_outcome(self, group: str | None = None) -> dict[str, int]:
        """Operations per outcome (``"open"`` for those not ended), optionally for one group."""
        counts: Counter[str] = Counter(
            r.outcome or "open" for r in self._records.values() if group is None or r.group == group
        )
        result = {name: counts.get(name, 0) for name in OUTCOMES}
        result["open"] = counts.get("open", 0)
        return result

    def groups(self) -> list[str]:
        """Group names in first-seen order."""
        return list(dict.fromkeys(r.group for r in self._records.values()))

    def elapsed(self, now: float) -> float:
        return max(0.0, now - self._started_at)

    def eta(self, now: float) -> float | None:
        """Seconds until every operation has ended, at the pace seen so far (``None``: no idea)."""
        done, total = self.done, self.total
        if done >= total:
            return 0.0
        elapsed = self.elapsed(now)
        if done == 0 or elapsed <= 0:
            return None
        return elapsed / done * (total - done)

    def exit_code(self) -> ExitCode:
        """0 when every operation succeeded; 3 when a credential was refused; else 1."""
        if self.auth_failed:
            return ExitCode.AUTH
        ok = len(self._records) >= self._expected and all(
            r.outcome == "succeeded" for r in self._records.values()
        )
        return ExitCode.OK if ok else ExitCode.FAILED

    def summary(self, now: float) -> dict[str, object]:
        """The figures of the final ``summary`` line."""
        outcomes = self.by_outcome()
        return {
            "total": self.total,
            **{name: outcomes[name] for name in OUTCOMES},
            "unfinished": outcomes["open"],
            "transitions": self._transitions,
            "polls": self.polls,
            "elapsed": round(self.elapsed(now), 3),
            "exit_code": int(self.exit_code()),
        }
