"""One budget shared by many processes: a replica of one [Budget][] per process, fed by one log.

The Redis limiter does not port the budget's arithmetic to another language, nor ship its
state around. Every process sharing a key keeps its own copy of the same `Budget` and feeds it
the same events in the same order, read from one log in Redis:

* **attempt**: a process asks for an admission. It is an event, not a decision: whether it
  is granted is what the budget says when the event is applied, and since every replica holds
  the same state at that point, every replica gives the same answer. The process that appended
  it learns its own answer by applying the log up to its event, in the same round trip.
* **record**: the answer to an admitted request (status and rate-limit headers), so every
  replica calibrates from every process's answers.
* **refund**: an admission that was never sent.

Every event carries the time Redis appended it (Redis ``TIME``): the replicas apply events at
those times, never at their own clocks' readings, so they agree to the bit. Between events a
process only *reads* its replica, and a read changes nothing: it asks the budget how long the
wait was at the latest event's time and counts the time since off it.

A request whose answer never comes (its process died) stops counting as unanswered
`in_flight_timeout` seconds after it was admitted, decided from event times, so every replica
lets it go at the same event.

A process that joins late, or fell behind what the log still holds, applies what is left from
where the log starts; answers to requests it never saw count as answers to the latest admission
(the same rule the in-process limiter uses for a ticket it did not issue). It may then differ
from the others for a while, until fresh answers recalibrate it: the server's count is the
authority either way.

Pure: no I/O and no clock. [Replica.ingest][] takes what the log returned.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import attrs

from d360_async._core._ratelimit._budget import Budget
from d360_async._core._ratelimit._headers import RateLimitState

__all__ = [
    "ATTEMPT",
    "RECORD",
    "REFUND",
    "Replica",
    "Take",
    "encode_record",
    "encode_refund",
]

ATTEMPT = "A"
"""An event asking for one admission."""
RECORD = "R"
"""An event carrying an admitted request's answer."""
REFUND = "F"
"""An event giving an unsent admission back."""

_NONE = "-"


def _num(value: float | int | None) -> str:
    if value is None:
        return _NONE
    return repr(float(value)) if isinstance(value, float) else str(value)


def _float(text: str) -> float | None:
    if text == _NONE:
        return None
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def _int(text: str) -> int | None:
    return None if text == _NONE else int(text)


def encode_record(take: str, status: int | None, state: RateLimitState | None) -> str:
    """The event of an answer to admission `take` (`status` None: no answer came)."""
    if state is None:
        return f"{RECORD} {take} {_num(status)} {_NONE}"
    flags = ("e" if state.reset_is_epoch else "") + ("d" if state.retry_is_date else "")
    fields = (
        _num(state.limit),
        _num(state.remaining),
        _num(state.reset_after),
        _num(state.retry_after),
        _num(state.window),
        _num(state.date),
        flags or _NONE,
    )
    return f"{RECORD} {take} {_num(status)} " + " ".join(fields)


def encode_refund(take: str) -> str:
    """The event of admission `take` given back unsent."""
    return f"{REFUND} {take}"


def _decode_state(fields: Sequence[str]) -> RateLimitState | None:
    if fields == [_NONE]:
        return None
    if len(fields) != 7:
        raise ValueError(f"a record needs 7 header fields, got {len(fields)}")
    limit, remaining, reset_after, retry_after, window, date, flags = fields
    return RateLimitState(
        limit=_int(limit),
        remaining=_int(remaining),
        reset_after=_float(reset_after),
        retry_after=_float(retry_after),
        window=_float(window),
        date=_float(date),
        reset_is_epoch="e" in flags,
        retry_is_date="d" in flags,
    )


@attrs.define(slots=True)
class Take:
    """An admission granted by the shared budget.

    Attributes:
        id: its name in the log (``"<epoch>:<index>"``), used by its record or refund.
        seq: its admission number in this replica's budget.
        sent: when it was granted, on the shared (Redis) clock.
    """

    id: str
    seq: int
    sent: float


class Replica:
    """This process's copy of one shared budget (module docstring).

    Args:
        new_budget: builds the budget at the time of the first event applied.
        in_flight_timeout: seconds after which an admission never answered stops counting
            as unanswered.
    """

    __slots__ = (
        "_in_flight_timeout",
        "_new_budget",
        "_takes",
        "budget",
        "epoch",
        "lost",
        "next_index",
        "now",
        "skipped",
    )

    def __init__(self, new_budget: Callable[[float], Budget], *, in_flight_timeout: float) -> None:
        self._new_budget = new_budget
        self._in_flight_timeout = in_flight_timeout
        self._takes: dict[str, Take] = {}  # unanswered admissions, in admission order
        self.budget: Budget | None = None
        self.epoch = ""
        """The log's identity; a new one (the key expired and was created again) is followed
        from its start."""
        self.next_index = 0
        """The index of the next event to apply: where the next read of the log starts."""
        self.now = -math.inf
        """The time of the latest event applied (shared clock)."""
        self.lost = 0
        """Events this replica never saw (it fell behind what the log held)."""
        self.skipped = 0
        """Events it could not read (written by something else), skipped by every replica."""

    @property
    def unanswered(self) -> int:
        """Admissions of any process that were granted and not answered yet."""
        return len(self._takes)

    def ingest(
        self,
        epoch: str,
        base: int,
        lines: Iterable[str | bytes],
        *,
        asked_from: int,
        asked_epoch: str,
        mine: int | None = None,
    ) -> Take | None:
        """Apply what one read of the log returned; return the outcome of event `mine`.

        Reads may overlap (an attempt and a record in flight at once): lines this replica
        already applied are skipped, so each event is applied once, in log order.

        Args:
            epoch: the log's identity.
            base: the index of the log's first line still held.
            lines: ``"<time> <event>"`` lines: from `asked_from` on, or from `base` when the
                log starts later or is another one than `asked_epoch`.
            asked_from: the index the read asked to start at.
            asked_epoch: the epoch the read was sent with.
            mine: the index of the event this process appended in the same call, if any.

        Returns:
            The admission, when event `mine` was an attempt the budget granted; else None.
        """
        start = asked_from if asked_epoch == epoch and asked_from >= base else base
        if epoch != self.epoch:
            self.epoch = epoch
            self.next_index = base
        elif self.next_index < start:
            self.lost += start - self.next_index
            self.next_index = start
        for offset, raw in enumerate(lines):
            index = start + offset
            if index < self.next_index:
                continue  # applied from an overlapping read
            self._apply(index, raw.decode() if isinstance(raw, bytes) else raw)
        if mine is None or mine < 0:
            return None
        # Looked up rather than caught on the way: an overlapping read may have applied it.
        return self._takes.get(f"{epoch}:{mine}")

    def wait_time(self, now: float, need: float = 1.0) -> float:
        """Seconds from `now` (shared clock) until `need` attempts would have been granted, as
        far as this replica knows (0.0 before the first event).

        Read at the latest event's time, so that reading leaves the replica as it was.
        """
        budget = self.budget
        if budget is None:
            return 0.0
        return max(0.0, budget.wait_time(self.now, need) - max(0.0, now - self.now))

    def server_wait(self, now: float) -> float:
        """[Budget.server_wait][] as far as this replica knows, read at the latest event's
        time like [wait_time][] (0.0 before the first event)."""
        budget = self.budget
        if budget is None:
            return 0.0
        return max(0.0, budget.server_wait(self.now) - max(0.0, now - self.now))

    # -- applying -------------------------------------------------------------------------

    def _apply(self, index: int, line: str) -> None:
        self.next_index = index + 1
        try:
            stamp_text, kind, *fields = line.split(" ")
            stamp = float(stamp_text)
            if not math.isfinite(stamp):
                raise ValueError("not a finite time")
            now = max(stamp, self.now)
            if kind == ATTEMPT:
                if fields:
                    raise ValueError("an attempt has no fields")
                self._advance_to(now)
                self._attempt(index, now)
                return
            if kind == RECORD:
                take_id, status_text, *state_fields = fields
                status = _int(status_text)
                state = _decode_state(state_fields)
                self._advance_to(now)
                self._record(take_id, status, state, now)
                return
            if kind == REFUND:
                (take_id,) = fields
                self._advance_to(now)
                self._refund(take_id, now)
                return
            raise ValueError(f"unknown event {kind!r}")
        except ValueError:
            # Not an event this library wrote: every replica skips it alike.
            self.skipped += 1

    def _advance_to(self, now: float) -> Budget:
        self.now = now
        budget = self.budget
        if budget is None:
            budget = self.budget = self._new_budget(now)
        # Admissions whose process never answered: let them go, at the same event everywhere.
        limit = now - self._in_flight_timeout
        takes = self._takes
        while takes:
            take_id, take = next(iter(takes.items()))
            if take.sent > limit:
                break
            del takes[take_id]
            budget.record(None, None, now=now, sent=take.sent, seq=take.seq)
        # Every event moves the budget's clock, whether or not it touches the budget (a
        # refund of an attempt this replica refused): a read between events then finds
        # nothing to bring up to date, and leaves the replica as it was.
        budget.advance(now)
        return budget

    def _attempt(self, index: int, now: float) -> None:
        budget = self.budget
        assert budget is not None
        if budget.try_take(now) == 0.0:
            take = Take(f"{self.epoch}:{index}", budget.seq, now)
            self._takes[take.id] = take

    def _record(
        self, take_id: str, status: int | None, state: RateLimitState | None, now: float
    ) -> None:
        budget = self.budget
        assert budget is not None
        take = self._takes.pop(take_id, None)
        if take is None:
            # An admission this replica never saw: it counts as the latest one.
            budget.record(status, state, now=now, sent=now, seq=budget.seq)
        else:
            budget.record(status, state, now=now, sent=take.sent, seq=take.seq)

    def _refund(self, take_id: str, now: float) -> None:
        budget = self.budget
        assert budget is not None
        take = self._takes.pop(take_id, None)
        if take is not None:
            budget.refund(now, take.seq)
