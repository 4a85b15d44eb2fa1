"""The poll scheduler: which target to poll next, and when.  Pure: no I/O, no asyncio.

Time is a float passed in by the caller (the watch uses a monotonic clock; tests use a fake one),
so every decision can be replayed and property-tested without an event loop.

Vocabulary:

* A **group** is one rate-limit budget (in the watch: a limiter and a rate key).  Poll tokens are
  spent per group, and the question the scheduler answers is *"a token for group G is available
  now: which target of G gets it?"* (`Scheduler.select`).
* A **lane** is the queue of one ``(group, kind)``: all waiting targets of one operation kind,
  the pollable ones least recently polled first, the others keyed by when they become
  pollable.
* A **duration model** is what the scheduler has learned, per ``(kind, phase)``, about how long
  operations stay in that phase (and per ``kind``, how long they take from joining the watch to
  finishing).  It is a Kaplan-Meier survival estimate on log-spaced buckets that counts both
  finished phases (events) and operations still in the phase (right-censored), so operations
  still running are not forgotten and the estimate is not biased towards the quick ones.

The algorithm, written once:

1. **Pollable.**  A target may be polled once the span in which it could have finished
   unseen reaches its minimum interval (``PollPolicy.interval``; the policy's backoff after
   transient errors, and always for ``adaptive=False``): one interval after the later of its
   last poll and its **floor**, ``max(last poll, floor) + interval``.  The floor is the
   earliest moment it can have finished by the shortest durations its kind has shown (joined
   + shortest join-to-finish time; run start + shortest run; for a pending one, pending start
   + shortest pending + shortest run), counting only durations measured precisely.  A poll
   before the floor, or at it, cannot see a finish, so it is not spent: the token stays with
   the limiter (and with whoever else shares it), and every finish is still seen within one
   interval.  A change seen by the first poll after such a hold may have come anywhere in the
   span held back, so it does not count towards the floor (it does in the survival curve).
   The first poll of a target (its first sighting, which always tells something) is due
   ``first_delay`` after it joins, with no interval to wait past the floor (a floor learned
   while it waits holds it until the floor, no longer).
2. **Work-conserving.**  Whenever a token is available and some target is pollable, it is
   polled: there is no blind backoff for a target that could have finished.  The watch counts
   the budget left idle while every waiting target was held back.
3. **Never behind round robin.**  When the learned models cannot tell targets apart, the
   choice is least recently polled first; the expected-undetected-time score only reorders
   where the evidence says so.  Concretely: within one kind, pollable targets are served
   least recently polled first (round robin; what is known of a target's phase only sets its
   floor, which on look-alike populations is worth no more than round robin and sometimes
   less; ``tests/watch/test_round_robin.py`` holds the watch to round robin on the same
   draws and tokens).  Across kinds, the token goes to the lane head with the largest score:
   the *expected time its finish has gone undetected* by its kind's learned model, weighted
   by `PHASE_WEIGHT`, plus an ageing term proportional to how long it has been pollable;
   equal scores (kinds nothing is known about) fall back to least recently polled first.  A
   RUNNING target whose kind has a trained RUNNING model is judged by that model from the
   start of its run; every other target that joined when it started by its kind's
   join-to-finish model, given that it had not finished at its last poll.  Evaluated on lane
   heads only, a selection costs O(kinds + log n).
4. **No waste.**  The watch waits until a target is pollable before it acquires a token; if
   a token is nevertheless held and nothing is pollable, it goes to the target that becomes
   pollable first.
5. **No starvation.**  A target re-queued after a poll has been polled more recently than
   everything already waiting in its lane, so everything queued before it is served first;
   across kinds the ageing term grows without bound while a head waits.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_right
from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import Any, Final

import attrs

from d360_async._core._phase import Phase
from d360_async._core._status import RawStatus
from d360_async._core._watch._policy import PollPolicy
from d360_async._core._watch._values import Eta

__all__ = [
    "AGEING",
    "MIN_SAMPLES",
    "PHASE_WEIGHT",
    "PRIORS_VERSION",
    "PRIOR_MEAN",
    "REKEY_FRACTION",
    "STALE_FRACTION",
    "DurationModel",
    "DurationModels",
    "Eta",
    "PollOutcome",
    "Scheduler",
    "TargetState",
]

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

_FLOORED: Final = frozenset({Phase.PENDING, Phase.RUNNING})

_VAGUE: Final = 0.25
"""A run whose start is known less precisely than this share of its age is not judged by the
run-length model for an ETA when the join-to-finish model can judge it instead."""

_COMPACT_AFTER: Final = 4096
"""Ended targets whose queue or deadline entries may linger before the heaps are rebuilt."""

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


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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
    lazily (O(buckets)) when it is read after enough changes (see `STALE_FRACTION`;
    `refresh` forces it), so reading it is O(1) amortised however many targets move.
    """

    __slots__ = (
        "_cum_end",
        "_cumint",
        "_dirty",
        "_end",
        "_keyed_floor",
        "_max_age",
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
        self._cum_end = 0.0
        self._max_age = 0.0  # the oldest age seen, finished or not: where knowledge ends
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

    def add_event(self, lo: float, hi: float, *, bounds_floor: bool = True) -> bool:
        """Record a phase known to have lasted between ``lo`` and ``hi`` seconds.

        ``bounds_floor=False``: the interval is wide because the scheduler chose not to poll
        before the floor, so its ``lo`` says nothing about how short the phase can be, and it
        does not count towards `floor` (it still counts in the survival curve).

        Returns True when queued targets must be re-keyed (``floor_version`` moved on): the
        floor became known, or fell by more than `REKEY_FRACTION` since the last re-key.
        """
        lo = max(0.0, lo)
        hi = max(lo, hi)
        self._max_age = max(self._max_age, hi)
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
        if bounds_floor and hi - lo <= _PRECISE * mid:
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
        self._max_age = max(self._max_age, age)
        self.censored[k] += 1
        self.n_censored += 1
        self._censored_changed()
        return k

    def remove_censored(self, bucket: int) -> None:
        """Withdraw an entry made by `add_censored` (the operation moved on)."""
        if bucket >= 0:
            self.censored[bucket] -= 1
            self.n_censored -= 1
            self._censored_changed()

    def move_censored(self, bucket: int, age: float) -> int:
        """Move an operation's censored entry to the age it has now reached."""
        k = _bucket(max(0.0, age))
        self._max_age = max(self._max_age, age)
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

    def export(self) -> dict[str, Any]:
        """The finished durations learned so far, as plain JSON-able data (for priors).

        Censored entries are left out: they belong to operations of this process, which a
        process given these priors does not watch (or watches afresh).
        """
        return {
            "events": [[k, round(v, 6)] for k, v in enumerate(self.events) if v > _TINY],
            "n": self.n_events,
            "sum": round(self.sum_mid, 6),
            "min": None if math.isinf(self.min_lo) else round(self.min_lo, 6),
            "precise": self.floor_samples,
            # Where knowledge ends: past it the tail takes over (see _refresh).  Without it a
            # process given these priors would read the curve up to the top of that age's
            # (25 % wide) bucket, and announce other ETAs than the process that learned them.
            "max": round(self._max_age, 6),
        }

    def absorb(self, data: Mapping[str, Any], where: str = "priors") -> bool:
        """Add durations exported by `export` (of another process, or an earlier one).

        Returns True when the floor moved (queued targets must be re-keyed).

        Raises:
            ValueError: ``data`` is not what `export` writes.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} must be an object")
        n, total, low, precise = (
            data.get("n"),
            data.get("sum"),
            data.get("min"),
            data.get("precise"),
        )
        if type(n) is not int or n < 0 or type(precise) is not int or not 0 <= precise <= n:
            raise ValueError(f"{where}: 'n' and 'precise' must be integers, 0 <= precise <= n")
        if not isinstance(total, int | float) or not _finite(total) or total < 0:
            raise ValueError(f"{where}.sum must be a finite number >= 0")
        if low is not None and (not _finite(low) or low < 0):
            raise ValueError(f"{where}.min must be null or a finite number >= 0")
        oldest = data.get("max")  # absent in priors saved by earlier versions
        if oldest is not None and (not _finite(oldest) or oldest < 0):
            raise ValueError(f"{where}.max must be a finite number >= 0")
        events = data.get("events")
        if not isinstance(events, list):
            raise ValueError(f"{where}.events must be a list of [bucket, mass] pairs")
        parsed: list[tuple[int, float]] = []
        for pair in events:
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or type(pair[0]) is not int
                or not 0 <= pair[0] < _NBUCKETS
                or not _finite(pair[1])
                or pair[1] < 0
            ):
                raise ValueError(f"{where}.events holds {pair!r}, not a [bucket, mass] pair")
            parsed.append((pair[0], float(pair[1])))
        for k, mass in parsed:
            self.events[k] += mass
            if mass > _TINY and oldest is None:
                # Only the bucket is known: knowledge ends at its top.
                self._max_age = max(
                    self._max_age, _EDGES[k + 1] if k + 1 < _NBUCKETS else _EDGES[k]
                )
        if oldest is not None:
            self._max_age = max(self._max_age, float(oldest))
        self.n_events += n
        self.sum_mid += float(total)
        self.floor_samples += precise
        if low is not None:
            self.min_lo = min(self.min_lo, float(low))
        self._dirty = True
        floor = self.floor
        if floor is not None and (math.isinf(self._keyed_floor) or floor < self._keyed_floor):
            self._keyed_floor = floor
            self.floor_version += 1
            return True
        return False

    def remaining(self, age: float) -> tuple[float, float, float]:
        """Expected time left at ``age`` given the phase has lasted that long, and the 10th and
        90th percentiles of it (an 80 % interval)."""
        if self._dirty:
            self._refresh()
        age = max(0.0, age)
        s_age, i_age = self._survival_and_integral(age)
        if s_age < _TINY or age >= self._end:
            mean = self._tail_mean
        else:
            whole = self._cum_end + self._surv_end * self._tail_mean
            mean = max(0.0, (whole - i_age) / s_age)
        return mean, self.time_to_chance(age, 0.1), self.time_to_chance(age, 0.9)

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
        # Knowledge ends at the oldest age seen, not at the top of its (wide) bucket: past it
        # the tail takes over, so a partly observed last bucket does not read as survival.
        if top >= 0:
            lo, hi = _EDGES[top], _EDGES[top + 1]
            # Only operations still going make the rest of the bucket unknown.
            end = min(hi, max(self._max_age, lo)) if censored[top] else hi
            s_end = max(0.0, surv[top] + (surv[top + 1] - surv[top]) * (end - lo) / (hi - lo))
            self._end = end
            self._surv_end = s_end
            self._cum_end = cumint[top] + (end - lo) * (surv[top] + s_end) / 2
        else:
            self._end, self._surv_end, self._cum_end = 0.0, 1.0, 0.0
        self._tail_mean = max(self.mean, _FIRST_EDGE)
        self._dirty = False
        self._recorded = self._moved = 0

    def survival(self, age: float) -> float:
        """Estimated probability that the phase lasts longer than ``age`` seconds.

        Inside the observed range: the Kaplan-Meier estimate, linear within a bucket.  Beyond
        it: an exponential tail with the observed mean (or `PRIOR_MEAN`).
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
        """`survival` at ``age`` and its integral from 0 (the curve is fresh)."""
        if age <= 0:
            return 1.0, 0.0
        if age >= self._end:
            m = self._tail_mean
            decay = math.exp(-(age - self._end) / m)
            return self._surv_end * decay, self._cum_end + self._surv_end * m * (1.0 - decay)
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
                    crossing = start + frac * (hi - start)
                    if crossing > self._end:
                        break  # past what is known: the tail decides
                    return max(0.0, crossing - since)
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
        "gap",
        "group",
        "in_flight",
        "key",
        "kind",
        "last_change",
        "last_ok",
        "observed",
        "parked",
        "phase",
        "policy",
        "polled_at",
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
        self.raw: RawStatus | None = None
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
        self.polled_at = now  # when its last poll ended (or when it joined): the round robin key
        self.due = now  # earliest poll its policy allows, before the floor
        self.gap = 0.0  # this wait's minimum interval (jittered); 0 before the first poll
        self.when = now  # when it may be polled: max(due, floor + gap)
        self.seq = -1  # id of this target's valid heap entry; -1 when not queued
        self.cens_phase = -1
        self.cens_total = -1
        self.in_flight = False
        self.parked = False  # another watch (or process) polls it; see Scheduler.park
        self.done = False
        self.removed = False
        self.expired = False
        self.stalled = False

    def __repr__(self) -> str:
        flags = [
            name
            for name in ("in_flight", "parked", "done", "removed", "expired", "stalled")
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
    """The waiting targets of one ``(group, kind)``.

    ``ready`` holds the targets that may be polled now, least recently polled first (a heap
    keyed by the time of their last poll); ``held`` holds the others, keyed by the time they
    become pollable (their minimum interval or the floor).  A target moves from ``held`` to
    ``ready`` when that time has come, so each lane is round robin among its pollable targets.
    """

    __slots__ = ("floor_version", "floors", "held", "kind", "ready", "total")

    def __init__(self, kind: str, models: DurationModels) -> None:
        self.kind = kind
        self.total = models.get(kind, None)  # join to finish
        # The models whose floors key this lane's targets.
        self.floors = (
            self.total,
            models.get(kind, Phase.PENDING),
            models.get(kind, Phase.RUNNING),
        )
        self.ready: list[tuple[float, int, TargetState]] = []
        self.held: list[tuple[float, int, TargetState]] = []
        self.floor_version = self.floor_epoch()

    def floor_epoch(self) -> int:
        """Moves on whenever one of the floors that key this lane moved (they only grow)."""
        return sum(model.floor_version for model in self.floors)

    def promote(self, now: float) -> None:
        """Move every held target whose time has come to ``ready``."""
        held, ready = self.held, self.ready
        while held and held[0][0] <= now:
            _, seq, state = heapq.heappop(held)
            if state.seq == seq:
                heapq.heappush(ready, (state.polled_at, seq, state))

    def peek(self) -> TargetState | None:
        """The least recently polled ready target (stale entries are dropped)."""
        ready = self.ready
        while ready:
            _, seq, state = ready[0]
            if state.seq == seq:
                return state
            heapq.heappop(ready)  # stale: the target was removed, expired or finished
        return None

    def next_held(self) -> float | None:
        """When the first held target becomes pollable."""
        held = self.held
        while held:
            when, seq, state = held[0]
            if state.seq == seq:
                return when
            heapq.heappop(held)
        return None


PRIORS_VERSION: Final = 1


class DurationModels:
    """Everything learned about how long operations take, per ``(kind, phase)``.

    ``phase=None`` is the time from joining a watch to finishing.  One instance lives in each
    client and is shared by all of its watches, so a second watch starts warm;
    [export][d360_async.DurationModels.export] gives plain data (the *priors*) that another process
    can ``absorb``.
    """

    __slots__ = ("_models",)

    def __init__(self) -> None:
        self._models: dict[tuple[str, Phase | None], DurationModel] = {}

    def __repr__(self) -> str:
        trained = sum(1 for model in self._models.values() if model.trained)
        return f"<DurationModels models={len(self._models)} trained={trained}>"

    def __len__(self) -> int:
        return len(self._models)

    def __iter__(self) -> Iterator[tuple[str, Phase | None]]:
        return iter(list(self._models))

    def get(self, kind: str, phase: Phase | None) -> DurationModel:
        """The model of ``(kind, phase)``, created empty on first use."""
        found = self._models.get((kind, phase))
        if found is None:
            found = self._models[(kind, phase)] = DurationModel()
        return found

    @property
    def events(self) -> int:
        """Finished durations recorded, over every model."""
        return sum(model.n_events for model in self._models.values())

    def export(self) -> dict[str, Any]:
        """The finished durations of every model, as JSON-able data (the priors)."""
        return {
            "version": PRIORS_VERSION,
            "models": [
                {"kind": kind, "phase": None if phase is None else phase.value, **model.export()}
                for (kind, phase), model in self._models.items()
                if model.n_events
            ],
        }

    def absorb(self, priors: Mapping[str, Any]) -> None:
        """Add the durations of ``export()``'s data to these models.

        Raises:
            ValueError: ``priors`` is malformed (nothing is added then).
        """
        if not isinstance(priors, Mapping) or priors.get("version") != PRIORS_VERSION:
            raise ValueError(f"priors must be an object with version {PRIORS_VERSION}")
        models = priors.get("models")
        if not isinstance(models, list):
            raise ValueError("priors.models must be a list")
        staged: list[tuple[tuple[str, Phase | None], Mapping[str, Any]]] = []
        for index, record in enumerate(models):
            where = f"priors.models[{index}]"
            if not isinstance(record, Mapping) or not isinstance(record.get("kind"), str):
                raise ValueError(f"{where} must be an object with a string 'kind'")
            raw_phase = record.get("phase")
            try:
                phase = None if raw_phase is None else Phase(raw_phase)
            except ValueError:
                raise ValueError(f"{where}.phase {raw_phase!r} is not a phase") from None
            DurationModel().absorb(record, where)  # validate before touching anything
            staged.append(((record["kind"], phase), record))
        for (kind, phase), record in staged:
            self.get(kind, phase).absorb(record)


class Scheduler:
    """Decides which target of a rate-limit group gets the next poll, and when.

    Not thread-safe and not async: the watch calls it from one event loop, between awaits.
    Every method takes the current time; nothing reads a clock.
    """

    def __init__(
        self, *, rng: random.Random | None = None, models: DurationModels | None = None
    ) -> None:
        self._rng = rng if rng is not None else random.Random()
        self._groups: dict[Hashable, dict[str, _Lane]] = {}
        self.durations = models if models is not None else DurationModels()
        self._deadlines: list[tuple[float, int, TargetState]] = []
        self._seq = 0
        self._stale = 0  # queue entries of ended targets not dropped yet
        self._dead = 0  # deadline entries of ended targets not dropped yet

    def __repr__(self) -> str:
        queued = sum(
            len(lane.ready) + len(lane.held)
            for lanes in self._groups.values()
            for lane in lanes.values()
        )
        return (
            f"<Scheduler groups={len(self._groups)} queued~{queued} models={len(self.durations)}>"
        )

    # -- models ---------------------------------------------------------------------------------

    def model(self, kind: str, phase: Phase | None) -> DurationModel:
        """The duration model of ``(kind, phase)``; ``phase=None`` is join-to-finish time."""
        return self.durations.get(kind, phase)

    def models(self) -> dict[tuple[str, Phase | None], DurationModel]:
        """Every model learned so far (for inspection and benchmarks)."""
        return {key: self.durations.get(*key) for key in self.durations}

    def eta(self, state: TargetState, now: float) -> Eta | None:
        """When ``state`` is expected to finish, from now; None while its kind has no model.

        A RUNNING target whose kind has a trained RUNNING model is judged from the start of
        its run (unless that start is vague, `_VAGUE`, and the join-to-finish model can
        judge it); any other target that joined when it started by the join-to-finish model.
        """
        if state.done:
            return None
        total = self.model(state.kind, None)
        if state.phase is Phase.RUNNING and state.start_known:
            model = self.model(state.kind, Phase.RUNNING)
            vague = state.start_hi - state.start_lo > _VAGUE * max(0.0, now - state.start_lo)
            if model.trained and not (vague and state.fresh and total.trained):
                age = now - (state.start_lo + state.start_hi) / 2
                mean, low, high = model.remaining(age)
                return Eta(mean, low, high, model.n_events)
        if state.fresh and total.trained:
            mean, low, high = total.remaining(now - state.added_at)
            return Eta(mean, low, high, total.n_events)
        return None

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
        raw: RawStatus | None = None,
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
        if state.seq != -1:
            self._stale += 1  # its queue entry stays until it reaches a heap's top
        state.seq = -1
        if state.deadline < math.inf:
            self._dead += 1
        self._compact()

    def _compact(self) -> None:
        """Drop entries of ended targets once they are many, so a long-running watch that
        adds and ends targets continually keeps no memory for the ended ones."""
        if self._dead > _COMPACT_AFTER and 2 * self._dead > len(self._deadlines):
            self._deadlines = [e for e in self._deadlines if not e[2].done]
            heapq.heapify(self._deadlines)
            self._dead = 0
        if self._stale > _COMPACT_AFTER:
            for lanes in self._groups.values():
                for lane in lanes.values():
                    for name in ("ready", "held"):
                        heap = getattr(lane, name)
                        kept = [e for e in heap if e[2].seq == e[1]]
                        if len(kept) != len(heap):
                            heapq.heapify(kept)
                            setattr(lane, name, kept)
            self._stale = 0

    # -- time ----------------------------------------------------------------------------------

    def next_due(self, group: Hashable, now: float | None = None) -> float | None:
        """When a waiting target of ``group`` may first be polled; None when none is waiting.

        A time at or before ``now`` means a poll is worth a token now.
        """
        lanes = self._groups.get(group)
        if not lanes:
            return None
        best: float | None = None
        for lane in lanes.values():
            self._rekey(lane, now)
            if now is not None:
                lane.promote(now)
            head = lane.peek()
            when = head.when if head is not None else lane.next_held()
            if when is not None and (best is None or when < best):
                best = when
        return best

    def next_deadline(self) -> float | None:
        """The earliest per-target deadline still pending, if any."""
        heap = self._deadlines
        while heap and heap[0][2].done:
            heapq.heappop(heap)
            self._dead = max(0, self._dead - 1)
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

        Due lane heads compete on `score`; if none is due, the earliest-due target
        gets the token rather than wasting it.  The chosen target is marked in flight and
        its poll counted; None only when the group has no waiting target at all.
        """
        lanes = self._groups.get(group)
        if not lanes:
            return None
        best_lane: _Lane | None = None
        best_score = -math.inf
        best_polled = math.inf
        early_lane: _Lane | None = None
        early_when = math.inf
        for lane in lanes.values():
            self._rekey(lane, now)
            lane.promote(now)
            head = lane.peek()
            if head is not None:
                model = self.model(head.kind, self._lane_phase(head))
                score = self._score(head, model, lane.total, now)
                # Equal scores (nothing tells them apart): least recently polled first.
                if score > best_score or (score == best_score and head.polled_at < best_polled):
                    best_lane, best_score, best_polled = lane, score, head.polled_at
                continue
            when = lane.next_held()
            if when is not None and when < early_when:
                early_lane, early_when = lane, when
        if best_lane is not None:
            _, _, state = heapq.heappop(best_lane.ready)
        elif early_lane is not None:
            _, _, state = heapq.heappop(early_lane.held)
        else:
            return None
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

    def observe(
        self, state: TargetState, now: float, phase: Phase, raw: RawStatus | None
    ) -> PollOutcome:
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
        state.polled_at = now
        if state.parked:
            return None  # demoted while its poll ran: someone else polls it now
        state.gap = self._interval(state, now)
        state.due = now + state.gap
        state.when = self._pollable_at(state)
        self._push(state)
        return state.when

    def park(self, state: TargetState) -> None:
        """Stop polling a live target that someone else polls for it (another watch of the
        same client, or another process through a hub), without ending it: its deadline still
        runs, and `shared_poll` feeds it the observations made elsewhere.  A poll in flight
        finishes normally but does not queue the target again.  Idempotent."""
        if state.done or state.parked:
            return
        state.parked = True
        if state.seq != -1:
            self._stale += 1  # its queue entry stays until it reaches a heap's top
            state.seq = -1
        self._compact()

    def unpark(self, state: TargetState, now: float) -> float | None:
        """Poll a parked target again (whoever polled it for us stopped): it is due one
        interval after the last observation it was given (a target nobody polled yet: when
        `add` first made it due), and never before its floor.
        Returns when it is due; None when it has ended or was not parked."""
        if state.done or not state.parked:
            return None
        state.parked = False
        if state.in_flight:
            return None  # release() queues it
        if state.polls:
            state.gap = self._interval(state, now)
            state.due = min(now, state.polled_at) + state.gap
        # else: never polled, by anyone: its first poll stays where ``add`` put it.
        state.when = self._pollable_at(state)
        self._push(state)
        return state.when

    def shared_poll(self, state: TargetState, now: float, polls: int = 1) -> None:
        """Count ``polls`` made for a parked target elsewhere, the last at ``now``, before
        `observe` or `fail` reads them: its poll count and the time of its last poll move on
        as if it had been polled."""
        state.polls += polls
        state.polled_at = now

    def reschedule(self, state: TargetState, when: float) -> None:
        """Make a waiting target due at ``when`` instead (the watch uses it to poll at once the
        targets that failed during an outage, when it ends).  Ignored while the target is in
        flight and once it has ended."""
        if state.done or state.in_flight or state.seq == -1:
            return
        state.due = when
        # ``when`` replaces the backoff: past the floor, only the minimum interval is left.
        state.gap = min(state.gap, state.policy.interval)
        state.when = self._pollable_at(state)
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
        # Held back from its last poll past its floor (point 1 of the module docstring): a
        # change seen now may have come at any time in that span, so it says nothing about how
        # short a duration can be.  A change seen before the floor does: the floor is too high.
        watched = not state.last_ok < self._floor(state) <= now
        if state.observed:
            ended_lo = state.last_ok  # last seen in the old phase
            if previous is not None and state.start_known:
                model = self.model(state.kind, previous)
                model.remove_censored(state.cens_phase)
                model.add_event(
                    ended_lo - state.start_hi, now - state.start_lo, bounds_floor=watched
                )
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
            total.add_event(since, now - state.added_at, bounds_floor=watched)

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
        # Adaptive is work-conserving: pollable again after the minimum interval (counted from
        # the floor if that is later); what it is worth then is the score's business.
        delay = policy.interval if policy.adaptive else policy.backoff_interval(state.streak)
        return policy.jittered(delay, self._rng.random())

    def _floor(self, state: TargetState) -> float:
        """The earliest time ``state`` can have finished, by the shortest durations seen."""
        if not state.policy.adaptive:
            return -math.inf
        floor = -math.inf
        if state.fresh:
            shortest = self.model(state.kind, None).floor
            if shortest is not None:
                floor = state.added_at + shortest
        if state.start_known and state.phase in _FLOORED:
            shortest = self.model(state.kind, state.phase).floor
            if shortest is not None:
                if state.phase is Phase.PENDING:
                    running = self.model(state.kind, Phase.RUNNING).floor
                    shortest += running or 0.0
                floor = max(floor, state.start_lo + shortest)
        return floor

    def _pollable_at(self, state: TargetState) -> float:
        """When ``state`` may be polled: its minimum interval has passed since its last poll,
        and as long a span has passed since its floor (the module docstring, point 1)."""
        return max(state.due, self._floor(state) + state.gap)

    def _push(self, state: TargetState) -> None:
        lanes = self._groups.get(state.group)
        if lanes is None:
            lanes = self._groups[state.group] = {}
        lane = lanes.get(state.kind)
        if lane is None:
            lane = lanes[state.kind] = _Lane(state.kind, self.durations)
        self._seq += 1
        state.seq = self._seq
        heapq.heappush(lane.held, (state.when, state.seq, state))

    def _rekey(self, lane: _Lane, now: float | None) -> None:
        epoch = lane.floor_epoch()
        if epoch == lane.floor_version:
            return
        # A shortest duration of this kind changed: recompute when each waiting target may be
        # polled (rare: when a model first becomes trusted and on each new record low, O(log n)
        # times).  Everything goes back to ``held``; promotion restores round-robin order.
        lane.floor_version = epoch
        rebuilt = []
        for heap in (lane.ready, lane.held):
            for _, seq, state in heap:
                if state.seq == seq:
                    state.when = self._pollable_at(state)
                    rebuilt.append((state.when, seq, state))
        heapq.heapify(rebuilt)
        lane.held = rebuilt
        lane.ready = []
