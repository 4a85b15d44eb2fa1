"""The poll scheduler: which target to poll next, and when.  Pure: no I/O, no asyncio.

Time is a float passed in by the caller (the watch uses a monotonic clock; tests use a fake one),
so every decision can be replayed and property-tested without an event loop.

Vocabulary:

* A **group** is one rate-limit budget (in the watch: a limiter and a rate key).  Poll tokens are
  spent per group, and the question the scheduler answers is *"a token for group G is available
  now: which target of G gets it?"* (:meth:`Scheduler.select`).
* A **lane** is the queue of one ``(group, kind, phase)``: all waiting targets of one operation
  kind in one phase (``None`` for targets not yet seen).  Each lane is a min-heap keyed by the
  target's next due time, so the earliest-due target of a lane is at its head.
* A **duration model** is what the scheduler has learned, per ``(kind, phase)``, about how long
  operations stay in that phase (and per ``kind``, how long they take from joining the watch to
  finishing).  It is a Kaplan-Meier survival estimate on log-spaced buckets that counts both
  finished phases (events) and operations still in the phase (right-censored), so operations
  still running are not forgotten and the estimate is not biased towards the quick ones.

The algorithm, written once:

1. **Due times.**  After each poll a target is due again after an interval: jittered backoff
   (``PollPolicy``), shortened, once its ``(kind, phase)`` has a trained model, to the time until
   the model gives a :data:`CHANGE_CHANCE` probability that the phase has ended (never below the
   policy's ``interval``); so polls cluster around the ages at which this kind has finished
   before instead of thinning out exactly when a change becomes likely.
2. **Floor.**  A target is never due before its phase start plus the shortest duration seen for
   its ``(kind, phase)`` (counting only durations measured precisely), because a poll then cannot
   see a change.  The only exception is a token that has no due target at all to go to (see 4).
3. **Selection.**  Among the heads of the group's lanes that are due, the token goes to the
   one with the largest score: the *expected time the operation's end has gone undetected*,
   weighted to prefer RUNNING over PENDING (:data:`PHASE_WEIGHT`), plus an ageing term
   proportional to how long it has been overdue.  A RUNNING target whose kind has a trained
   RUNNING model is judged by that model from the start of its run; every other target that
   joined when it started (not yet seen, PENDING, UNKNOWN, or RUNNING before any run of its
   kind was seen to end) by its kind's join-to-finish model, given that it had not finished at
   its last poll.  So polls go where a *finish* is likely, not to a pending target only because
   its pending phase may be over (that change is not what callers wait for).  This is the greedy
   rule that the design's reference scheduler uses, evaluated on lane heads only, so a
   selection costs O(lanes + log n) instead of O(n).
4. **No waste.**  The watch waits until something is due before it acquires a token; if a token
   is nevertheless held and nothing is due, it goes to the earliest-due target.
5. **No starvation.**  Within a lane, targets are served earliest-due first, and a target
   re-queued after a poll is always due later than the poll, so everything queued before it is
   served first.  Across lanes the ageing term grows without bound while a head waits, so every
   lane head is eventually chosen.  When the budget cannot poll every target at its desired
   interval, every target falls behind by the same backlog: intervals stretch, nobody starves.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_right
from collections.abc import Hashable, Iterable
from typing import Final

import attrs

from .._phase import Phase
from .._target import RawStatus
from ._policy import PollPolicy

__all__ = [
    "AGEING",
    "CHANGE_CHANCE",
    "MIN_SAMPLES",
    "PHASE_WEIGHT",
    "PRIOR_MEAN",
    "REKEY_FRACTION",
    "STALE_FRACTION",
    "DurationModel",
    "PollOutcome",
    "Scheduler",
    "TargetState",
]

CHANGE_CHANCE: Final = 0.2
"""Adaptive intervals aim for this probability that the phase ended since the previous poll."""

MIN_SAMPLES: Final = 3
"""Durations a ``(kind, phase)`` needs before its model drives intervals and floors."""

AGEING: Final = 0.2
"""Score added per second a lane head is overdue; guarantees that every lane is served."""

PRIOR_MEAN: Final = 60.0
"""Mean duration (seconds) assumed beyond what has been observed, before anything is known."""

PHASE_WEIGHT: Final[dict[Phase | None, float]] = {
    None: 1.0,  # judged by time to finish, which is what callers wait for
    Phase.RUNNING: 1.0,
    Phase.PENDING: 0.5,  # the change a pending poll can see is only the start of the work
    Phase.UNKNOWN: 0.5,
}
"""How much a change in each phase is worth relative to a finished operation.

Applied to whichever model judges the target (see the module docstring, point 3)."""

_PRECISE: Final = 0.5
"""A measured duration counts towards the floor when its uncertainty is at most this fraction."""

STALE_FRACTION: Final = 1 / 64
"""How far a duration model may drift before its survival curve is rebuilt.

Rebuilding costs O(buckets), and with thousands of targets the censored counts change on almost
every poll.  The curve is rebuilt when read only once the finished durations recorded since the
last rebuild exceed this fraction of all finished durations, or the censored entries added,
moved or withdrawn exceed this fraction of all censored entries.  Below 1 / STALE_FRACTION
entries of either sort every change counts (the curve is exact), so small watches, and the
first few completions of any watch, decide exactly as with an eager rebuild."""

REKEY_FRACTION: Final = 1 / 32
"""A new record low re-keys the waiting targets only if it undercuts the floor they were keyed
with by more than this fraction.  Lows arrive in long runs of tiny steps once many operations
finish, and each re-key costs O(lane); a target queued meanwhile waits at most this fraction of
the floor too long, and is never polled earlier than the shortest duration seen."""

# Log-spaced histogram buckets: [0, 0.25), [0.25, 0.3125), ... growing by 25 % up to ~4 months.
_FIRST_EDGE: Final = 0.25
_RATIO: Final = 1.25
_NBUCKETS: Final = 80
_EDGES: Final[tuple[float, ...]] = (0.0, *(_FIRST_EDGE * _RATIO**i for i in range(_NBUCKETS)))
_TINY: Final = 1e-9


def _bucket(age: float) -> int:
    """Index of the histogram bucket holding ``age`` (seconds).

    A binary search of the edges (in C) is exact at the edges and cheaper than a logarithm;
    negative ages fall into the first bucket and the far tail into the last.
    """
    k = bisect_right(_EDGES, age) - 1
    if 0 <= k < _NBUCKETS:
        return k
    return 0 if k < 0 else _NBUCKETS - 1


class DurationModel:
    """What has been learned about how long one ``(kind, phase)`` lasts.

    Durations are rarely known exactly: a phase is seen to end somewhere between two polls and
    to start somewhere between two others, so each finished phase is recorded as an interval
    ``[lo, hi]`` and its unit mass is spread over the buckets it covers.  Operations still in
    the phase are counted at the age they have reached (right-censored), which is what keeps the
    estimate honest while only the quick ones have finished.  The survival curve is rebuilt
    lazily (O(buckets)) when it is read after enough changes (see :data:`STALE_FRACTION`;
    :meth:`refresh` forces it), so reading it is O(1) amortised however many targets move.
    """

    __slots__ = (
        "_cumint",
        "_dirty",
        "_end",
        "_keyed_floor",
        "_moved",
        "_recorded",
        "_surv",
        "_surv_end",
        "_tail_mean",
        "censored",
        "events",
        "floor_samples",
        "floor_version",
        "min_lo",
        "n_censored",
        "n_events",
        "sum_mid",
    )

    def __init__(self) -> None:
        self.events = [0.0] * _NBUCKETS
        self.censored = [0] * _NBUCKETS
        self.n_events = 0
        self.n_censored = 0
        self.sum_mid = 0.0
        self.min_lo = math.inf
        self.floor_samples = 0
        self.floor_version = 0
        self._dirty = True  # the cached curve is too stale to read
        self._recorded = 0  # finished durations recorded since the last rebuild
        self._moved = 0  # censored entries added, moved or withdrawn since the last rebuild
        self._keyed_floor = math.inf  # the floor as of the last floor_version bump
        self._surv: list[float] = []
        self._cumint: list[float] = []
        self._end = 0.0
        self._surv_end = 1.0
        self._tail_mean = PRIOR_MEAN

    def __repr__(self) -> str:
        floor = f"{self.min_lo:.3g}s" if self.floor is not None else "-"
        return (
            f"<DurationModel events={self.n_events} censored={self.n_censored} "
            f"mean={self.mean:.3g}s floor={floor}>"
        )

    # -- recording ---------------------------------------------------------------------------

    @property
    def trained(self) -> bool:
        """True once enough phases have been seen to end for the model to drive intervals."""
        return self.n_events >= MIN_SAMPLES

    @property
    def floor(self) -> float | None:
        """The shortest precisely measured duration, once there are enough of them."""
        return self.min_lo if self.floor_samples >= MIN_SAMPLES else None

    @property
    def mean(self) -> float:
        """Mean of the finished durations (interval midpoints); the prior before any."""
        return self.sum_mid / self.n_events if self.n_events else PRIOR_MEAN

    def add_event(self, lo: float, hi: float) -> bool:
        """Record a phase known to have lasted between ``lo`` and ``hi`` seconds.

        Returns True when queued targets must be re-keyed (``floor_version`` moved on): the
        floor became known, or fell by more than :data:`REKEY_FRACTION` since the last re-key.
        """
        lo = max(0.0, lo)
        hi = max(lo, hi)
        self.n_events += 1
        mid = (lo + hi) / 2
        self.sum_mid += mid
        first, last = _bucket(lo), _bucket(hi)
        if first == last or hi - lo < _TINY:
            self.events[first] += 1.0
        else:
            width = hi - lo
            for k in range(first, last + 1):
                top = _EDGES[k + 1] if k + 1 <= _NBUCKETS - 1 else hi
                overlap = min(hi, top) - max(lo, _EDGES[k])
                if overlap > 0:
                    self.events[k] += overlap / width
        self._recorded += 1
        if self._recorded > STALE_FRACTION * self.n_events:
            self._dirty = True
        if hi - lo <= _PRECISE * mid:
            self.floor_samples += 1
            self.min_lo = min(self.min_lo, lo)
        floor = self.floor
        if floor is not None and (
            math.isinf(self._keyed_floor) or floor < self._keyed_floor * (1.0 - REKEY_FRACTION)
        ):
            self._keyed_floor = floor
            self.floor_version += 1
            return True
        return False

    def add_censored(self, age: float) -> int:
        """Count one operation known to be still in the phase at ``age``; returns its bucket."""
        k = _bucket(max(0.0, age))
        self.censored[k] += 1
        self.n_censored += 1
        self._censored_changed()
        return k

    def remove_censored(self, bucket: int) -> None:
        """Withdraw an entry made by :meth:`add_censored` (the operation moved on)."""
        if bucket >= 0:
            self.censored[bucket] -= 1
            self.n_censored -= 1
            self._censored_changed()

    def move_censored(self, bucket: int, age: float) -> int:
        """Move an operation's censored entry to the age it has now reached."""
        k = _bucket(max(0.0, age))
        if k != bucket:
            if bucket >= 0:
                self.censored[bucket] -= 1
            else:
                self.n_censored += 1
            self.censored[k] += 1
            self._censored_changed()
        return k

    def _censored_changed(self) -> None:
        self._moved += 1
        if self._moved > STALE_FRACTION * self.n_censored:
            self._dirty = True

    def refresh(self) -> None:
        """Rebuild the survival curve now from everything recorded (normally done lazily)."""
        self._refresh()

    # -- reading -------------------------------------------------------------------------------

    def _refresh(self) -> None:
        events, censored = self.events, self.censored
        top = -1
        for k in range(_NBUCKETS - 1, -1, -1):
            if events[k] > _TINY or censored[k]:
                top = k
                break
        surv = [1.0] * (top + 2)
        cumint = [0.0] * (top + 2)
        at_risk = 0.0
        risk = [0.0] * (top + 1)
        for k in range(top, -1, -1):
            at_risk += events[k] + censored[k]
            risk[k] = at_risk
        for k in range(top + 1):
            s = surv[k]
            if risk[k] > _TINY:
                s *= max(0.0, 1.0 - events[k] / risk[k])
            surv[k + 1] = s
            cumint[k + 1] = cumint[k] + (_EDGES[k + 1] - _EDGES[k]) * (surv[k] + s) / 2
        self._surv = surv
        self._cumint = cumint
        self._end = _EDGES[top + 1]
        self._surv_end = surv[top + 1]
        self._tail_mean = max(self.mean, _FIRST_EDGE)
        self._dirty = False
        self._recorded = self._moved = 0

    def survival(self, age: float) -> float:
        """Estimated probability that the phase lasts longer than ``age`` seconds.

        Inside the observed range: the Kaplan-Meier estimate, linear within a bucket.  Beyond
        it: an exponential tail with the observed mean (or :data:`PRIOR_MEAN`).
        """
        if self._dirty:
            self._refresh()
        if age <= 0:
            return 1.0
        if age >= self._end:
            return self._surv_end * math.exp(-(age - self._end) / self._tail_mean)
        k = _bucket(age)
        lo = _EDGES[k]
        s_lo = self._surv[k]
        return s_lo + (self._surv[k + 1] - s_lo) * (age - lo) / (_EDGES[k + 1] - lo)

    def _survival_and_integral(self, age: float) -> tuple[float, float]:
        """:meth:`survival` at ``age`` and its integral from 0 (the curve is fresh)."""
        if age <= 0:
            return 1.0, 0.0
        if age >= self._end:
            m = self._tail_mean
            decay = math.exp(-(age - self._end) / m)
            return self._surv_end * decay, self._cumint[-1] + self._surv_end * m * (1.0 - decay)
        k = _bucket(age)
        lo = _EDGES[k]
        s_lo = self._surv[k]
        s_age = s_lo + (self._surv[k + 1] - s_lo) * (age - lo) / (_EDGES[k + 1] - lo)
        return s_age, self._cumint[k] + (age - lo) * (s_lo + s_age) / 2

    def change_chance(self, age: float, since: float) -> float:
        """Probability that the phase ended before ``age``, given it had not at ``since``."""
        s_since = self.survival(since)
        if s_since < _TINY:
            return 1.0 - math.exp(-max(0.0, age - since) / self._tail_mean)
        return max(0.0, 1.0 - self.survival(age) / s_since)

    def expected_undetected(self, age: float, since: float) -> float:
        """Expected time the end of the phase has gone unnoticed, at ``age``.

        The phase was last seen still going at age ``since``; if it ended at age ``t`` in
        between, ``age - t`` seconds of it are undetected.  This is the quantity the greedy
        reference scheduler maximises.
        """
        dt = age - since
        if dt <= 0:
            return 0.0
        if self._dirty:
            self._refresh()
        s_since, i_since = self._survival_and_integral(since)
        if s_since < _TINY:
            m = self._tail_mean
            return max(0.0, dt - m * (1.0 - math.exp(-dt / m)))
        return max(0.0, dt - (self._survival_and_integral(age)[1] - i_since) / s_since)

    def time_to_chance(self, since: float, chance: float) -> float:
        """Seconds after ``since`` until the chance that the phase has ended reaches ``chance``."""
        if self._dirty:
            self._refresh()
        s_since = self.survival(since)
        if s_since < _TINY:
            return -self._tail_mean * math.log1p(-chance)
        goal = s_since * (1.0 - chance)
        if since < self._end:
            k = _bucket(since)
            while k + 1 < len(self._surv):
                if self._surv[k + 1] <= goal:
                    lo, hi = _EDGES[k], _EDGES[k + 1]
                    s_lo = self.survival(max(lo, since))
                    start = max(lo, since)
                    drop = s_lo - self._surv[k + 1]
                    frac = (s_lo - goal) / drop if drop > _TINY else 1.0
                    return max(0.0, start + frac * (hi - start) - since)
                k += 1
        base = max(since, self._end)
        s_base = self.survival(base)
        return base - since + self._tail_mean * math.log(max(s_base / goal, 1.0))


@attrs.frozen(slots=True)
class PollOutcome:
    """What a poll result means for the caller.

    Attributes:
        changed: the status differs from the last one seen (always true for a first sighting).
        previous: the phase before the change (``None`` on first sight).
        stalled: the target has just crossed ``stall_after`` without a change.
        final: the target is finished (terminal phase or non-retryable error).
        ignored: the target had already ended (removed or timed out) while the poll ran; the
            caller must not report anything from this poll.
    """

    changed: bool = False
    previous: Phase | None = None
    stalled: bool = False
    final: bool = False
    ignored: bool = False


_IGNORED: Final = PollOutcome(ignored=True)


class TargetState:
    """The scheduler's per-target record: a few hundred bytes, so 10,000 targets stay small."""

    __slots__ = (
        "added_at",
        "cens_phase",
        "cens_total",
        "deadline",
        "done",
        "due",
        "errors",
        "expired",
        "fresh",
        "group",
        "in_flight",
        "key",
        "kind",
        "last_change",
        "last_ok",
        "observed",
        "phase",
        "policy",
        "polls",
        "raw",
        "removed",
        "retry_after",
        "seq",
        "stalled",
        "start_hi",
        "start_known",
        "start_lo",
        "streak",
        "when",
    )

    def __init__(
        self,
        key: str,
        kind: str,
        group: Hashable,
        policy: PollPolicy,
        now: float,
    ) -> None:
        self.key = key
        self.kind = kind
        self.group = group
        self.policy = policy
        self.added_at = now
        self.deadline = math.inf
        self.phase: Phase | None = None
        self.raw: RawStatus = None
        self.polls = 0
        self.streak = 0
        self.errors = 0
        self.retry_after = 0.0
        self.last_ok = now  # time of the last successful poll in this session
        self.last_change = now
        self.start_lo = now  # the current phase began in [start_lo, start_hi]
        self.start_hi = now
        self.start_known = False
        self.fresh = True  # joined the watch when it started: ages since added_at are real
        self.observed = False  # a poll succeeded in this session
        self.due = now  # next desired poll time, before the floor
        self.when = now  # heap key: max(due, floor)
        self.seq = -1  # id of this target's valid heap entry; -1 when not queued
        self.cens_phase = -1
        self.cens_total = -1
        self.in_flight = False
        self.done = False
        self.removed = False
        self.expired = False
        self.stalled = False

    def __repr__(self) -> str:
        flags = [
            name
            for name in ("in_flight", "done", "removed", "expired", "stalled")
            if getattr(self, name)
        ]
        return (
            f"<TargetState {self.key!r} kind={self.kind!r} phase={self.phase} raw={self.raw!r} "
            f"polls={self.polls} due={self.when:.3f} {' '.join(flags)}>"
        )

    @property
    def live(self) -> bool:
        """Not finished, removed or timed out."""
        return not self.done


class _Lane:
    """The waiting targets of one ``(group, kind, phase)``, earliest due first."""

    __slots__ = ("floor_version", "heap", "kind", "model", "phase", "total")

    def __init__(
        self, kind: str, phase: Phase | None, model: DurationModel, total: DurationModel
    ) -> None:
        self.kind = kind
        self.phase = phase
        self.model = model  # of (kind, phase)
        self.total = total  # of (kind, None): join to finish
        self.heap: list[tuple[float, int, TargetState]] = []
        self.floor_version = model.floor_version

    def peek(self) -> TargetState | None:
        heap = self.heap
        while heap:
            _, seq, state = heap[0]
            if state.seq == seq:
                return state
            heapq.heappop(heap)  # stale: the target was removed, expired or finished
        return None


class Scheduler:
    """Decides which target of a rate-limit group gets the next poll, and when.

    Not thread-safe and not async: the watch calls it from one event loop, between awaits.
    Every method takes the current time; nothing reads a clock.
    """

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()
        self._groups: dict[Hashable, dict[tuple[str, Phase | None], _Lane]] = {}
        self._models: dict[tuple[str, Phase | None], DurationModel] = {}
        self._deadlines: list[tuple[float, int, TargetState]] = []
        self._seq = 0

    def __repr__(self) -> str:
        queued = sum(len(lane.heap) for lanes in self._groups.values() for lane in lanes.values())
        return f"<Scheduler groups={len(self._groups)} queued~{queued} models={len(self._models)}>"

    # -- models ---------------------------------------------------------------------------------

    def model(self, kind: str, phase: Phase | None) -> DurationModel:
        """The duration model of ``(kind, phase)``; ``phase=None`` is join-to-finish time."""
        found = self._models.get((kind, phase))
        if found is None:
            found = self._models[(kind, phase)] = DurationModel()
        return found

    def models(self) -> dict[tuple[str, Phase | None], DurationModel]:
        """Every model learned so far (for inspection and benchmarks)."""
        return dict(self._models)

    # -- membership -----------------------------------------------------------------------------

    def add(
        self,
        key: str,
        *,
        kind: str,
        group: Hashable,
        policy: PollPolicy,
        now: float,
        phase: Phase | None = None,
        raw: RawStatus = None,
        polls: int = 0,
        restored: bool = False,
    ) -> TargetState:
        """Start scheduling a target; it is first due ``policy.first_delay`` from ``now``.

        ``restored=True`` (with ``phase``/``raw``/``polls`` from a checkpoint) brings back a
        target watched before: its first poll reports a change only if the status differs from
        ``(phase, raw)``, and nothing is assumed about its age (it may have been running for any
        time while nobody watched), so it teaches the duration models nothing until it is seen
        to change phase.
        """
        state = TargetState(key, kind, group, policy, now)
        if restored:
            state.fresh = False
            state.phase = phase
            state.raw = raw
            state.polls = polls
        if policy.target_timeout is not None:
            state.deadline = now + policy.target_timeout
            self._seq += 1
            heapq.heappush(self._deadlines, (state.deadline, self._seq, state))
        state.due = state.when = now + policy.first_delay
        self._push(state)
        return state

    def remove(self, state: TargetState) -> None:
        """Stop scheduling a target; a poll in flight for it will be ignored."""
        state.removed = True
        self._end(state)

    def finish(self, state: TargetState) -> None:
        """End a target for a reason the scheduler does not see (``until=``, a bug)."""
        self._end(state)

    def _end(self, state: TargetState) -> None:
        # Its censored entries stay: a target that leaves mid-phase is right-censored there.
        state.done = True
        state.seq = -1

    # -- time ----------------------------------------------------------------------------------

    def next_due(self, group: Hashable) -> float | None:
        """The earliest time a waiting target of ``group`` is due; None when none is waiting."""
        lanes = self._groups.get(group)
        if not lanes:
            return None
        best: float | None = None
        for lane in lanes.values():
            head = self._head(lane)
            if head is not None and (best is None or head.when < best):
                best = head.when
        return best

    def next_deadline(self) -> float | None:
        """The earliest per-target deadline still pending, if any."""
        heap = self._deadlines
        while heap and heap[0][2].done:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def expire(self, now: float) -> list[TargetState]:
        """End every target whose deadline is ``<= now``; returns them, oldest deadline first.

        A target with a poll in flight is returned too (``in_flight`` set): its poll's result
        will be ignored, and the caller reports the time-out once that poll is over.
        """
        out: list[TargetState] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, state = heapq.heappop(heap)
            if not state.done:
                state.expired = True
                self._end(state)
                out.append(state)
        return out

    def expire_all(self, states: Iterable[TargetState]) -> list[TargetState]:
        """End every live target of ``states`` as timed out (the whole watch's deadline)."""
        out: list[TargetState] = []
        for state in states:
            if not state.done:
                state.expired = True
                self._end(state)
                out.append(state)
        return out

    # -- the poll cycle ---------------------------------------------------------------------------

    def select(self, group: Hashable, now: float) -> TargetState | None:
        """A poll token for ``group`` is available now: the target that should get it.

        Due lane heads compete on :meth:`score`; if none is due, the earliest-due target
        gets the token rather than wasting it.  The chosen target is marked in flight and
        its poll counted; None only when the group has no waiting target at all.
        """
        lanes = self._groups.get(group)
        if not lanes:
            return None
        best_lane: _Lane | None = None
        best_score = -math.inf
        best_when = math.inf
        early_lane: _Lane | None = None
        early_when = math.inf
        for lane in lanes.values():
            head = self._head(lane)
            if head is None:
                continue
            if head.when <= now:
                score = self._score(head, lane.model, lane.total, now)
                if score > best_score or (score == best_score and head.when < best_when):
                    best_lane, best_score, best_when = lane, score, head.when
            elif head.when < early_when:
                early_lane, early_when = lane, head.when
        chosen = best_lane if best_lane is not None else early_lane
        if chosen is None:
            return None
        _, _, state = heapq.heappop(chosen.heap)
        state.seq = -1
        state.in_flight = True
        state.polls += 1
        return state

    def score(self, state: TargetState, now: float) -> float:
        """How much polling ``state`` now is worth: expected undetected end time + ageing."""
        model = self.model(state.kind, self._lane_phase(state))
        return self._score(state, model, self.model(state.kind, None), now)

    @staticmethod
    def _lane_phase(state: TargetState) -> Phase | None:
        """The phase whose model judges ``state``: None while its phase's start is unknown."""
        return state.phase if state.start_known else None

    def _score(
        self, state: TargetState, model: DurationModel, total: DurationModel, now: float
    ) -> float:
        if state.fresh and (
            state.phase is not Phase.RUNNING or not state.start_known or not model.trained
        ):
            # Its age is real: judge by time to finish, given it had not at the last poll (a
            # pending one is further from it than the join-to-finish model alone can tell).
            age = now - state.added_at
            since = state.last_ok - state.added_at if state.observed else 0.0
            undetected = total.expected_undetected(max(age, since), since)
            weight = PHASE_WEIGHT.get(state.phase, 0.5)
            return weight * undetected + AGEING * max(0.0, now - state.when)
        if state.phase is None or not state.start_known:
            # Restored with an unknown age: judge by time to finish since it joined.
            age = now - state.added_at
            since = state.last_ok - state.added_at if state.observed else 0.0
            weight = PHASE_WEIGHT[None]
        else:
            start = (state.start_lo + state.start_hi) / 2
            age = now - start
            since = max(0.0, state.last_ok - start)
            weight = PHASE_WEIGHT.get(state.phase, 0.5)
        undetected = model.expected_undetected(max(age, since), since)
        return weight * undetected + AGEING * max(0.0, now - state.when)

    def observe(self, state: TargetState, now: float, phase: Phase, raw: RawStatus) -> PollOutcome:
        """Record a successful poll that saw ``(phase, raw)`` at ``now``."""
        if state.done:
            return _IGNORED
        previous = state.phase
        changed = previous is None or phase != previous or raw != state.raw
        state.errors = 0
        state.retry_after = 0.0
        stalled = False
        if changed:
            if phase != previous:
                self._learn_phase_change(state, previous, phase, now)
            state.phase = phase
            state.raw = raw
            state.last_change = now
            state.stalled = False
            if state.policy.reset_on_change:
                state.streak = 0
        else:
            state.streak += 1
            stalled = self._check_stall(state, now)
        state.last_ok = now
        state.observed = True
        if phase.is_terminal:
            self._end(state)
        else:
            self._update_censored(state, now)
        return PollOutcome(
            changed=changed, previous=previous, stalled=stalled, final=phase.is_terminal
        )

    def fail(
        self, state: TargetState, now: float, *, retryable: bool, retry_after: float = 0.0
    ) -> PollOutcome:
        """Record a failed poll.  Retryable: back off and try again.  Otherwise: the end."""
        if state.done:
            return _IGNORED
        if not retryable:
            self._end(state)
            return PollOutcome(previous=state.phase, final=True)
        state.errors += 1
        state.retry_after = max(0.0, retry_after)
        return PollOutcome(previous=state.phase, stalled=self._check_stall(state, now))

    def release(self, state: TargetState, now: float) -> float | None:
        """The caller is done reporting a poll: queue the target again.

        ``now`` is the time the poll's result arrived.  Returns the time it is next due, or
        None if it has ended.
        """
        state.in_flight = False
        if state.done:
            return None
        state.due = now + self._interval(state, now)
        state.when = max(state.due, self._floor(state))
        self._push(state)
        return state.when

    def reschedule(self, state: TargetState, when: float) -> None:
        """Make a waiting target due at ``when`` instead (the watch uses it to poll at once the
        targets that failed during an outage, when it ends).  Ignored while the target is in
        flight and once it has ended."""
        if state.done or state.in_flight or state.seq == -1:
            return
        state.due = when
        state.when = max(when, self._floor(state))
        self._push(state)

    # -- internals ------------------------------------------------------------------------------

    def _check_stall(self, state: TargetState, now: float) -> bool:
        stall_after = state.policy.stall_after
        if stall_after is None or state.stalled or now - state.last_change < stall_after:
            return False
        state.stalled = True
        return True

    def _learn_phase_change(
        self, state: TargetState, previous: Phase | None, phase: Phase, now: float
    ) -> None:
        if state.observed:
            ended_lo = state.last_ok  # last seen in the old phase
            if previous is not None and state.start_known:
                model = self.model(state.kind, previous)
                model.remove_censored(state.cens_phase)
                model.add_event(ended_lo - state.start_hi, now - state.start_lo)
            elif previous is not None:
                self.model(state.kind, previous).remove_censored(state.cens_phase)
            state.start_lo, state.start_hi, state.start_known = ended_lo, now, True
        elif state.fresh:
            # First sighting of a target that joined when it started: a PENDING one began
            # when it joined; anything else began somewhere between then and now.
            state.start_lo = state.added_at
            state.start_hi = state.added_at if phase is Phase.PENDING else now
            state.start_known = True
        else:
            state.start_lo = state.start_hi = now
            state.start_known = False
        state.cens_phase = -1
        if phase.is_terminal and state.fresh:
            total = self.model(state.kind, None)
            total.remove_censored(state.cens_total)
            state.cens_total = -1
            since = state.last_ok - state.added_at if state.observed else 0.0
            total.add_event(since, now - state.added_at)

    def _update_censored(self, state: TargetState, now: float) -> None:
        if state.start_known and state.phase is not None:
            age = now - (state.start_lo + state.start_hi) / 2
            state.cens_phase = self.model(state.kind, state.phase).move_censored(
                state.cens_phase, age
            )
        if state.fresh:
            state.cens_total = self.model(state.kind, None).move_censored(
                state.cens_total, now - state.added_at
            )

    def _interval(self, state: TargetState, now: float) -> float:
        policy = state.policy
        if state.errors:
            delay = policy.backoff_interval(state.errors)
            return max(policy.jittered(delay, self._rng.random()), state.retry_after)
        delay = policy.backoff_interval(state.streak)
        if policy.adaptive and state.start_known and state.phase is not None:
            model = self.model(state.kind, state.phase)
            if model.trained:
                age = now - (state.start_lo + state.start_hi) / 2
                wanted = model.time_to_chance(max(0.0, age), CHANGE_CHANCE)
                # Sooner than backoff where a change has become likely, never later: a sparse
                # model has plateaus that would otherwise stretch intervals past a change.
                delay = min(max(wanted, policy.interval), delay)
        return policy.jittered(delay, self._rng.random())

    def _floor(self, state: TargetState) -> float:
        if not (state.policy.adaptive and state.start_known and state.phase is not None):
            return -math.inf
        shortest = self.model(state.kind, state.phase).floor
        return -math.inf if shortest is None else state.start_lo + shortest

    def _push(self, state: TargetState) -> None:
        lanes = self._groups.get(state.group)
        if lanes is None:
            lanes = self._groups[state.group] = {}
        phase = self._lane_phase(state)
        lane_key = (state.kind, phase)
        lane = lanes.get(lane_key)
        if lane is None:
            lane = lanes[lane_key] = _Lane(
                state.kind, phase, self.model(state.kind, phase), self.model(state.kind, None)
            )
        self._seq += 1
        state.seq = self._seq
        heapq.heappush(lane.heap, (state.when, state.seq, state))

    def _head(self, lane: _Lane) -> TargetState | None:
        if lane.phase is not None:
            version = lane.model.floor_version
            if version != lane.floor_version:
                # The shortest duration seen changed: re-key the lane (rare: it happens when a
                # model first becomes trusted and on each new record low, O(log n) times).
                lane.floor_version = version
                rebuilt = []
                for _, seq, state in lane.heap:
                    if state.seq == seq:
                        state.when = max(state.due, self._floor(state))
                        rebuilt.append((state.when, seq, state))
                heapq.heapify(rebuilt)
                lane.heap = rebuilt
        return lane.peek()
