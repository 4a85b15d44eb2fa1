"""What the server's rate-limit policy is, learned from its answers: pure, time passed in.

Document360 documents a limit (60 or 100 requests a minute) but not the policy behind it, and
the headers it sends differ between its own pages; a gateway in front may count in yet another
way. So nothing here is assumed that an answer can show. [PolicyEstimator][] reads every
answer's rate-limit headers (already parsed into a
[RateLimitState][d360_async.RateLimitState]) together with *when* the request left and its
answer came back, and keeps a [PolicyEstimate][]: each belief with the evidence behind it.

Beliefs and where they come from, strongest first:

- **limit**: the announced limit (`X-RateLimit-Limit`, the IETF `q=`, a gateway's bucket
  size); else the largest `Remaining + 1` seen (a fresh budget answers its first request with
  `limit - 1`); else the configured `rate_limit` (the prior). Learned upward and downward:
  a count above the limit announced, or part of the debt back before any kind of fixed
  window the answers allow can end, is a raised limit (not a rollover).
- **window**: the IETF `w=`; else the spacing of observed *rollovers* (`Remaining` jumping back
  up to nearly the limit: the window ended between two requests, so consecutive rollovers bound
  the window from above); else, for budgets that refill gradually, `limit / refill rate`; else
  the configured period.
- **family**: a budget that comes back all at once is a *fixed window*; one that comes back a
  little at a time while requests keep coming (more than noise can explain) refills
  *gradually* (a sliding window or a token bucket). A `Reset` of 0 while requests remain is a
  gateway's *token bucket* announcing its next token.
- **what `Reset` means**: an epoch or a delay to the window's end (told apart by the parser:
  values from 10**9 up are epochs, converted with the server's `Date`), or, as above, the time
  until the next token.
- **the current window's end**: an interval `[lo, hi]` on the local clock, intersected over
  every answer of the window. A delay `d` sent in whole seconds, rounded up, says the end lies
  in `(sent + d - 1, received + d]`; an epoch read against a `Date` truncated to the second
  widens that by one second below. Without a `Reset`, the end is the last rollover plus the
  window. An empty intersection means the window rolled over: the older facts are dropped.
- **gradual refill rate**: credits gained between two answers (`Remaining` went up by more
  than the requests sent in between took) over the time between them, measured since the last
  rollover; a lower bound, since a full budget cannot show its refill.

Reordering on the wire (answers to concurrent requests overtaking each other) moves
`Remaining` by at most the requests in flight; gains are therefore summed over spans, where
that noise cancels, never read from one answer pair alone.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from typing import Generic, TypeVar

import attrs

from d360_async._core._ratelimit._headers import RateLimitState

__all__ = [
    "Family",
    "Interval",
    "PolicyEstimate",
    "PolicyEstimator",
    "ResetMeaning",
]

T = TypeVar("T")

GRADUAL_EVIDENCE = 2

LOG_MARGIN = 1.3
"""A window known only as `limit / refill measured` is stretched this much for returns."""

GRADUAL_APART = 5
"""Answers between two steps of gradual evidence."""

GRADUAL_SPANS = 2
"""Spans (between rollovers) that must each show a gradual refill before it is believed: one
can be the noise of requests overtaking each other around a fixed window's reset."""
"""Credits gained inside one window, beyond reordering noise, that show a gradual refill."""

ROLLOVER_SHARE = 0.5
"""A gain of at least this share of what was missing (and 3 credits) is a rollover."""

ROLLOVERS_KEPT = 8
"""Rollover times remembered for the window estimate."""

REFILL_SPAN = (2.0, 120.0)
"""Seconds of recent answers a refill rate is measured over (twice the window, clamped)."""

REFILL_MIN_SPAN = 1.0
"""Seconds of answers a refill rate needs at the least (shorter spans are mostly noise)."""

DISCOVERY_HORIZON = 10.0
"""Seconds over which credits are spread while nothing says when they come back."""

PROBE_SHARE = 0.01
"""Nor below this share of the window (a probe costs a credit half the time)."""

PROBE_WIDTH = 0.05
"""Seconds of uncertainty about a window's end below which no credit is spent narrowing it."""


REFUSALS_KEPT = 256
"""Refused requests remembered (their admission numbers), to leave them out of gains."""

LOG_FIT_SLACK = 0.002
"""Seconds our own requests' bounds on a sliding window may cross (clock readings only)."""

LOG_FIT_SETTLE = 2.0
"""Seconds beyond one window after the budget first ran out before a sliding-window fit is
believed (a draining bucket's short look-alike is refuted as soon as it runs steady)."""

SENDS_KEPT = 256
"""Admissions remembered at the least for fitting a sliding window (twice the limit if more)."""

MIN_WINDOW = 0.05
"""The shortest window believed, in seconds (a guard against division by nothing)."""

MEMO = True
"""Whether the window believed, read several times per answer, the window credits come back
by (`log_window`) and a fixed window's predicted end (and where it would end had it opened
with its first request) are derived once per [version][PolicyEstimator.version] and kept.
Off, they are derived at every read: the same values, slower (the switch the tests compare
both ways with)."""

FAST = True
"""Whether an answer that only confirms what is believed is learned from by
[confirm][PolicyEstimator.confirm] (a few updates, the version kept) instead of
[observe][PolicyEstimator.observe]. Off, every answer takes the general path: the same
decisions, slower (the switch the tests compare both ways with)."""


# Where the window believed comes from (`PolicyEstimator._window_source`), and in words.
_W_ANNOUNCED, _W_SLIDING_FIT, _W_RESETS, _W_LONGEST_RESET, _W_REFILL = range(5)
_W_FIRST, _W_SPAN, _W_ROLLOVERS, _W_PRIOR, _W_FIRST_OR_SPAN = range(5, 10)
# Sources whose samples are the answers counted (`_samples`), read when the words are built.
_W_LIVE = frozenset((_W_ANNOUNCED, _W_LONGEST_RESET, _W_REFILL))
_WINDOW_EVIDENCE = {
    _W_ANNOUNCED: "announced by the server (w=)",
    _W_SLIDING_FIT: "our requests the count held (a sliding window)",
    _W_RESETS: "every reset spans it (a sliding window)",
    _W_LONGEST_RESET: "longest reset announced",
    _W_FIRST: "windows opened by their first request, ends seen",
    _W_SPAN: "spacing of the windows' ends",
    _W_FIRST_OR_SPAN: "ends seen, which windows opened by their first request and windows "
    "aligned to the clock both fit (not yet told apart)",
    _W_ROLLOVERS: "spacing of rollovers (an upper bound)",
    _W_PRIOR: "configured (no rollover seen yet)",
}


class Family(enum.Enum):
    """How a budget comes back once spent."""

    UNKNOWN = "unknown"
    FIXED_WINDOW = "fixed window"
    """All at once, when the window resets (aligned to the clock or to the first request)."""
    GRADUAL = "gradual refill"
    """A little at a time: a sliding window or a token bucket."""
    TOKEN_BUCKET = "token bucket"
    """Gradually, and the server says so: its `Reset` is the time to the next token."""


class ResetMeaning(enum.Enum):
    """What the server's `Reset` value says."""

    ABSENT = "not sent"
    WINDOW_END = "time until the window ends (an epoch or a delay)"
    NEXT_TOKEN = "time until the next token (0 while tokens remain)"


@attrs.frozen(slots=True)
class Interval:
    """A closed interval of times (or durations) known to contain the true value."""

    lo: float
    hi: float

    def intersect(self, other: Interval) -> Interval | None:
        """The common part, or None when they do not meet."""
        lo = max(self.lo, other.lo)
        hi = min(self.hi, other.hi)
        return Interval(lo, hi) if lo <= hi else None

    def shift(self, offset: float) -> Interval:
        """Both ends moved by `offset`."""
        return Interval(self.lo + offset, self.hi + offset)

    def union(self, other: Interval) -> Interval:
        """The smallest interval holding both."""
        return Interval(min(self.lo, other.lo), max(self.hi, other.hi))

    @property
    def width(self) -> float:
        """`hi - lo`."""
        return self.hi - self.lo


@attrs.frozen(slots=True)
class Belief(Generic[T]):
    """One belief about the server's policy, with the evidence behind it.

    Attributes:
        value: what is believed.
        evidence: a short sentence saying why (an announced header, a measurement, a prior).
        samples: how many answers (or events) support it; 0 for a prior.
    """

    value: T
    evidence: str
    samples: int = 0


@attrs.frozen(slots=True)
class PolicyEstimate:
    """The learned policy of one budget, as plain values (see the module docstring).

    Attributes:
        limit: requests per window (a bucket's burst).
        window: seconds for the whole limit to come back.
        family: how the budget comes back.
        reset: what the server's `Reset` means.
        refill_rate: credits per second a gradual budget was seen to regain (a lower
            bound; 0 when not measured).
        changes: times the answers showed the policy had changed (another limit or window
            announced, more left than the limit allows, a 429 the beliefs did not foresee),
            each time dropping what rested on the old one.
    """

    limit: Belief[int]
    window: Belief[float]
    family: Belief[Family]
    reset: Belief[ResetMeaning]
    refill_rate: float = 0.0
    changes: int = 0

    @property
    def rate(self) -> float:
        """The long-run requests per second this policy allows: `limit / window`."""
        return self.limit.value / self.window.value

    def describe(self) -> str:
        """One line for logs and the CLI."""
        changes = self.changes
        relearned = (
            f"; relearned after {changes} change{'s' if changes > 1 else ''}" if changes else ""
        )
        return (
            f"{self.limit.value} per {self.window.value:.3g} s, {self.family.value.value}"
            f" (limit: {self.limit.evidence}; window: {self.window.evidence}{relearned})"
        )


@attrs.define(slots=True)
class _WindowFit:
    """The window as a run of answers bounds it: `lo <= window <= hi` while they agree."""

    lo: float = 0.0
    hi: float = math.inf
    samples: int = 0
    slack: float = 0.05
    """How far bounds may cross and still agree (resets come in whole seconds; our own
    requests' times do not)."""
    first: float = math.inf  # when the first agreeing bound came
    last: float = -math.inf  # and the latest

    def add(self, told: Interval, at: float = 0.0) -> bool:
        """Narrow with one more bound (seen at `at`); False when it contradicts the others."""
        return self.add_bounds(told.lo, told.hi, at)

    def add_bounds(self, told_lo: float, told_hi: float, at: float = 0.0, *, over: int = 1) -> bool:
        """[add][] with the bound as two numbers (no `Interval` built on every answer);
        `over`: the bound is a span of that many windows divided by their number (so is
        the slack)."""
        lo = max(self.lo, told_lo)
        hi = min(self.hi, told_hi)
        if lo > hi + self.slack / over:
            return False
        self.lo, self.hi = lo, max(lo, hi)
        self.samples += 1
        self.first = min(self.first, at)
        self.last = max(self.last, at)
        return True

    def usable(
        self, samples: int, *, windows: float = 0.0, seconds: float = 0.0
    ) -> Interval | None:
        """The bounds, once enough answers agree over `windows` windows and `seconds`."""
        span = self.last - self.first
        if self.samples < samples or span < windows * self.hi or span < seconds:
            return None
        return Interval(self.lo, self.hi)


def _fresh(previous: _WindowFit | bool | None, slack: float | None = None) -> _WindowFit | None:
    """A fit starting over, unless `previous` is None: a kind of window the answers ruled
    out stays ruled out (`previous` False: nothing to keep)."""
    if previous is None:
        return None
    return _WindowFit() if slack is None else _WindowFit(slack=slack)


@attrs.define(slots=True)
class _Answer:
    seq: int
    remaining: int
    sent: float
    received: float


class PolicyEstimator:
    """Learns one budget's policy from its answers (module docstring).

    Args:
        limit: the prior limit (the configured `rate_limit`).
        window: the prior window in seconds (the configured period).

    Every method takes times on one monotonic clock; nothing here does I/O.
    """

    __slots__ = (
        "_announced_limit",
        "_announced_window",
        "_crossed",
        "_depleted_at",
        "_end",
        "_ended",
        "_ends",
        "_family",
        "_first",
        "_gradual",
        "_guess",
        "_guess_at",
        "_jumps",
        "_last",
        "_limit_seen",
        "_log_at",
        "_log_window",
        "_memo_at",
        "_memo_source",
        "_moving",
        "_next_token",
        "_offset",
        "_opened",
        "_pace_end",
        "_predicted",
        "_predicted_at",
        "_prior_limit",
        "_prior_window",
        "_rate",
        "_recent",
        "_refusals",
        "_reset_lo",
        "_reset_max",
        "_rolled_since_told",
        "_rollovers",
        "_samples",
        "_sends",
        "_sends_base",
        "_since",
        "_span_gradual",
        "_told",
        "_w_all",
        "_w_any",
        "_w_first",
        "_w_log",
        "_w_span",
        "_window_floor",
        "_window_hi",
        "_window_hi_samples",
        "_window_told",
        "changes",
        "version",
    )

    def __init__(self, limit: float, window: float) -> None:
        self._prior_limit = max(1, math.floor(limit))
        self._prior_window = float(window)
        self._announced_limit: int | None = None
        self._announced_window: float | None = None
        self._last: _Answer | None = None
        self._refusals: deque[int] = deque()  # recent requests answered 429
        self._offset: Interval | None = None  # the server's epoch minus the local clock
        # Our own requests, by admission number: [sent, received or inf]. A sliding window's
        # count says how many of them are still inside it, which bounds the window.
        self._sends: deque[list[float]] = deque()
        self._sends_base = 1  # the admission number of _sends[0]
        self.changes = 0  # policy changes the answers showed (what was learned before, dropped)
        # Moves on whenever a method that learns ran (all but `sent`, which changes nothing
        # any belief reads): a reader may keep what it derived until it moves.
        self.version = 0
        # The window's source as derived at version `_memo_at` (-1: never). Learning reads
        # it only through `_derive_window_source` (halfway through, nothing is kept).
        self._memo_source: tuple[float, int, int] = (self._prior_window, _W_PRIOR, 0)
        self._memo_at = -1
        # `_predicted_end()` as of the version it was derived at (-1: never); derived only as
        # the last step of learning from an answer, when nothing it reads changes any more.
        self._predicted: Interval | None = None
        self._predicted_at = -1
        self._guess: Interval | None = None  # `_first_guess()` as of version `_guess_at`
        self._guess_at = -1
        self._log_window: float | None = None  # `log_window` as of version `_log_at`
        self._log_at = -1
        self._forget()

    def _forget(self) -> None:
        """Start learning the policy afresh: everything the answers showed of the limit, the
        window, the family and the current window's end goes (on creation, and when the
        server announced another window). What is kept is not the policy's: the server's
        clock, our own requests, the latest answer and the 429s."""
        self._limit_seen = 0
        self._samples = 0
        self._since: _Answer | None = None  # gains are summed from here (the last rollover)
        self._span_gradual = 0
        self._crossed = -(10**9)  # the answer that last stepped the gradual evidence
        self._opened: Interval | None = None  # when the current window opened
        self._gradual = 0  # spans in which the count came back a little at a time
        self._moving = 0  # announced ends that moved later without a rollover
        self._jumps = 0  # rollovers seen
        self._next_token = 0  # answers whose Reset was 0 while requests remained
        self._family = Family.UNKNOWN  # what _classify says: updated with the three above
        self._rate = 0.0
        self._recent: deque[_Answer] = deque()
        self._depleted_at: float | None = None  # when an answer first said (nearly) none left
        # A window the answers proved, refuted since by a 429: the true one is longer.
        self._window_floor = 0.0
        self._forget_window()

    def _forget_window(self, *, refuted: bool = True) -> None:
        """Drop what the answers showed of the window's length and the current one's end
        (`refuted=False`: a kind of window the answers ruled out stays ruled out)."""
        keep = not refuted
        self._told: Interval | None = None  # the window's end, as the Reset headers said
        self._rolled_since_told = False
        # The earliest end told since the last rollover, while it lies ahead: ends that move
        # later with every request (a sliding window's newest leaving) pace to the first.
        self._pace_end: Interval | None = None
        self._end: Interval | None = None  # the window's end, as believed
        self._rollovers: deque[Interval] = deque(maxlen=ROLLOVERS_KEPT)
        self._window_hi: float | None = None  # an upper bound from rollover spacing
        self._window_hi_samples = 0
        self._reset_max = 0.0  # the longest reset delay announced (window-end meaning)
        self._reset_lo = 0.0  # a lower bound of the window from the resets announced
        # The window as every reset saw it (a sliding window's reset is its window), and as
        # the first answer of each fixed window saw it (a window from the first request):
        # [lo, hi] and how many answers agree; None once they disagree.
        self._w_all: _WindowFit | None = _fresh(keep and self._w_all)
        self._w_first: _WindowFit | None = _fresh(keep and self._w_first)
        self._w_any: _WindowFit | None = _fresh(keep and self._w_any)
        # When the current window opened, had it opened with the first request to arrive in
        # it (a window from the first request); None when that is not known.
        self._first: Interval | None = None
        # Exact bounds, from our own clock: a crossing is a refutation (a bucket at the pace
        # we spend it fits a sliding window only as long as our own requests took).
        self._w_log: _WindowFit | None = _fresh(keep and self._w_log, LOG_FIT_SLACK)
        # The window as consecutive ends bound it (windows aligned to the clock).
        self._w_span: _WindowFit | None = _fresh(keep and self._w_span)
        self._ended: Interval | None = None  # when the previous window ended
        # The latest ends with their window numbers (aligned windows: end n is at φ + n·P).
        self._ends: deque[tuple[int, Interval]] = deque(maxlen=ROLLOVERS_KEPT)
        self._window_told: Interval | None = None  # the current window's end, as told

    def _limit_changed(self) -> None:
        """The limit is another now (announced anew, or more left than any window held): what
        rested on the old one goes (the largest count seen, the fit of our own requests to a
        sliding window of that limit); the window, the family, the refill and the current end
        stay, and the jump is no rollover."""
        self.changes += 1
        self._limit_seen = 0
        self._w_log = _WindowFit(slack=LOG_FIT_SLACK)
        self._depleted_at = None

    # -- reading ---------------------------------------------------------------------------

    @property
    def limit(self) -> int:
        """The limit believed now."""
        if self._announced_limit is not None:
            return self._announced_limit
        if self._limit_seen:
            return self._limit_seen
        return self._prior_limit

    @property
    def rollovers(self) -> int:
        """Rollovers seen since the policy was last learned afresh."""
        return self._jumps

    @property
    def family(self) -> Family:
        """How the budget comes back, as far as the answers showed."""
        return self._family

    def _classify(self) -> Family:
        """The family the counters say (kept in `_family`: read on every answer)."""
        if self._gradual >= GRADUAL_SPANS:
            return Family.TOKEN_BUCKET if self._next_token else Family.GRADUAL
        if self._jumps:
            return Family.FIXED_WINDOW
        if self._next_token:
            return Family.TOKEN_BUCKET
        return Family.UNKNOWN

    @property
    def window(self) -> float:
        """The window believed now, in seconds (see [estimate][] for the evidence)."""
        return max(MIN_WINDOW, self._window_source()[0])

    def _window_and_evidence(self) -> tuple[float, str, int]:
        value, source, samples = self._window_source()
        if source in _W_LIVE:
            # Read now, not as kept: a confirming answer adds a sample, not a version.
            samples = self._samples
        if source == _W_REFILL:
            return value, f"limit / refill rate {self._rate:.3g}/s", samples
        return value, _WINDOW_EVIDENCE[source], samples

    def _window_source(self) -> tuple[float, int, int]:
        """The window believed, where it comes from (a `_W_*` code) and its samples: what
        [estimate][] words as evidence, without building the words (this runs several times
        on every answer: derived once per [version][], see `MEMO`)."""
        version = self.version
        if self._memo_at == version and MEMO:
            return self._memo_source
        found = self._memo_source = self._derive_window_source()
        self._memo_at = version
        return found

    def _derive_window_source(self) -> tuple[float, int, int]:
        if self._announced_window is not None:
            return self._announced_window, _W_ANNOUNCED, self._samples
        family = self._family
        gradual = family is Family.GRADUAL or family is Family.TOKEN_BUCKET
        if gradual and self._depleted_at is not None:  # (else no fit: `_sliding_fit`)
            counted = self._sliding_fit()
            if counted is not None:
                assert self._w_log is not None
                return counted.hi, _W_SLIDING_FIT, self._w_log.samples
        spans = self._reset_spans(3) if self._moving >= 2 else None
        if spans is not None:
            # (Whatever the family: ends that move with each request are a sliding window's.)
            return spans[0].hi, _W_RESETS, spans[1]
        if gradual:
            if self._reset_max > 0.0:
                return self._reset_max, _W_LONGEST_RESET, self._samples
            if self._rate > 0.0:
                return self.limit / self._rate, _W_REFILL, self._samples
        if family is Family.FIXED_WINDOW:
            for fitted, source in ((self._w_first, _W_FIRST), (self._w_span, _W_SPAN)):
                fit = fitted.usable(2) if fitted is not None else None
                if fitted is not None and fit is not None:
                    if source == _W_FIRST and self._w_span is not None and self._w_span.usable(2):
                        source = _W_FIRST_OR_SPAN  # (the same window: only the words differ)
                    return fit.hi, source, fitted.samples
        if self._window_hi is not None:
            return self._window_hi, _W_ROLLOVERS, self._window_hi_samples
        return self._prior_window, _W_PRIOR, 0

    def _reset_spans(self, samples: int) -> tuple[Interval, int] | None:
        """The window as a sliding window's resets tell it, and the answers behind it: every
        reset at an empty budget (at least `samples` of them) spans the same time once the
        refill has been seen, or every reset whatever the count (eight, over two seconds) once
        the announced ends moved later with each request (the newest request leaving)."""
        if self._moving < 2:
            return None
        every = self._w_all
        if every is not None and self._gradual >= GRADUAL_SPANS:
            fit = every.usable(samples)
            if fit is not None:
                return fit, every.samples
        steady = self._w_any
        if steady is not None:
            fit = steady.usable(8, seconds=2.0)
            if fit is not None:
                return fit, steady.samples
        return None

    def _sliding_fit(self) -> Interval | None:
        """The sliding-window fit, when it holds and agrees with the refill measured.

        A token bucket draining its burst looks like a short sliding window until it runs
        out, and like a window of `burst / refill` (which is safe) after: a fit is believed
        only once it has held for two of its windows after the budget first ran out.
        """
        depleted = self._depleted_at
        counted = self._w_log
        if depleted is None or counted is None:
            return None  # never ran out (the common case): nothing to fit yet
        fit = counted.usable(10, windows=2.0)
        if fit is None:
            return None
        if counted.last < depleted + fit.hi + LOG_FIT_SETTLE:
            return None  # not yet held long enough after the budget first ran out
        return fit

    @property
    def told_end(self) -> Interval | None:
        """The current window's end as the server announced it, when it did (and it lies
        ahead): the only end a request may be sent on without a credit in hand."""
        told = self._told
        if told is None or self._last is None or told.hi < self._last.received:
            return None
        return told

    @property
    def sliding_proven(self) -> bool:
        """Whether the counts have matched our own requests leaving a sliding window, since
        well after the budget first ran out."""
        return self._depleted_at is not None and self._sliding_fit() is not None

    @property
    def returns_proven(self) -> bool:
        """Whether the answers showed a sliding window returning our own requests one by one:
        its counts matched them leaving it, or its resets all span one window while moving
        with each request. (A sliding counter's count fades over the next window instead.)"""
        return (self._moving >= 2 and self._reset_spans(2) is not None) or self.sliding_proven

    @property
    def ends_move(self) -> bool:
        """Whether the announced ends moved later without a rollover (a sliding window's)."""
        return self._moving >= 2

    @property
    def log_window(self) -> float | None:
        """A window no shorter than the true one, as the answers proved, for credits that
        come back one window after the request that spent them (None: nothing proves one).

        An announced window; else resets at an empty budget that all span the same time
        (a sliding window says so); else the longest of `limit / refill measured` (the refill
        seen is never more than the true one) and, for a fixed window, the spacing of its
        rollovers. The sliding-window fit of our own requests is not proof enough: with many
        requests in flight it can come out short.
        """
        if self._log_at == self.version and MEMO:
            return self._log_window
        found = self._log_window = self._derive_log_window()
        self._log_at = self.version
        return found

    def _derive_log_window(self) -> float | None:
        if self._announced_window is not None:
            return max(MIN_WINDOW, self._announced_window)
        spans = self._reset_spans(2) if self._moving >= 2 else None
        if spans is not None:
            # Every reset spans the same time, and the announced ends move with each
            # request: a sliding window's own word for its length.
            return max(MIN_WINDOW, spans[0].hi)
        counted = self._sliding_fit() if self._depleted_at is not None else None
        if counted is not None and self._gradual >= GRADUAL_SPANS:
            # Our own requests the count held: the fit already steps past those that may
            # have overtaken each other.
            return max(MIN_WINDOW, counted.hi)
        found: list[float] = []
        if self._rate > 0.0 and self._gradual >= GRADUAL_SPANS:
            # With room for requests overtaking each other, which can inflate a measured
            # refill over a span of seconds.
            found.append(LOG_MARGIN * self.limit / self._rate)
        if self._window_hi is not None and self._jumps >= 2 and self._gradual < GRADUAL_SPANS:
            found.append(self._window_hi)
        if not found:
            return None
        longest = max(found)
        floor = self._window_floor
        if longest <= floor:
            # What the answers show now was refuted before (the refill after a window grew
            # still shows the old one's pace): longer, by the margin, than what was refuted.
            longest = LOG_MARGIN * floor
        return max(MIN_WINDOW, longest)

    @property
    def window_bound(self) -> float:
        """How long to wait out a spent budget nobody said the end of: the window the answers
        proved an upper bound of, else the believed window or the prior, the longer."""
        proven = self.log_window
        if proven is not None:
            return proven
        return max(self.window, self._prior_window)

    @property
    def window_from_refill(self) -> bool:
        """Whether the window believed is only `limit / refill measured` (an upper bound)."""
        return self._window_source()[1] == _W_REFILL

    @property
    def longest_reset(self) -> float:
        """The longest wait until the budget is back that any answer announced (0: none)."""
        return self._reset_max

    @property
    def window_lo(self) -> float:
        """A lower bound of the window: no reset announced was longer (0 when none came)."""
        if self._announced_window is not None:
            return self._announced_window
        counted = self._sliding_fit() if self._depleted_at is not None else None
        if counted is not None:
            return counted.lo
        fit = self._w_all
        if fit is not None and fit.samples and self._moving >= 2 and self._gradual >= GRADUAL_SPANS:
            return fit.lo
        return max(0.0, self._reset_lo)

    @property
    def refill_rate(self) -> float:
        """Credits per second a gradual budget was seen to regain (0 when not measured)."""
        return self._rate if self.family in (Family.GRADUAL, Family.TOKEN_BUCKET) else 0.0

    @property
    def end(self) -> Interval | None:
        """When the current window ends (local clock), when known."""
        return self._end

    @property
    def opened(self) -> Interval | None:
        """When the current window opened (local clock), when known."""
        return self._opened

    @property
    def has_count(self) -> bool:
        """Whether any answer carried a remaining count."""
        return self._last is not None

    def estimate(self) -> PolicyEstimate:
        """The beliefs now, each with its evidence."""
        samples = self._samples
        if self._announced_limit is not None:
            limit = Belief(self._announced_limit, "announced by the server", samples)
        elif self._limit_seen:
            limit = Belief(self._limit_seen, "largest Remaining + 1 seen", samples)
        else:
            limit = Belief(self._prior_limit, "configured (no answer said otherwise)")
        value, evidence, count = self._window_and_evidence()
        window = Belief(max(MIN_WINDOW, value), evidence, count)
        family = self.family
        kind: Belief[Family]
        if self._gradual:
            kind = Belief(family, "the count came back a little at a time", self._gradual)
        elif self._moving >= 2:
            kind = Belief(family, "announced ends moved later without a rollover", self._moving)
        elif family is Family.FIXED_WINDOW:
            kind = Belief(family, "the count came back all at once", self._jumps)
        elif family is Family.TOKEN_BUCKET:
            kind = Belief(family, "Reset 0 while requests remained", self._next_token)
        else:
            kind = Belief(family, "no refill seen yet")
        if self._next_token:
            reset = Belief(
                ResetMeaning.NEXT_TOKEN, "Reset 0 while requests remained", self._next_token
            )
        elif self._reset_max > 0.0:
            reset = Belief(ResetMeaning.WINDOW_END, "Reset counted down", samples)
        else:
            reset = Belief(ResetMeaning.ABSENT, "no Reset sent")
        return PolicyEstimate(limit, window, kind, reset, self.refill_rate, self.changes)

    # -- learning --------------------------------------------------------------------------

    def refused(self, seq: int) -> None:
        """Request `seq` was answered 429: it took nothing from the budget."""
        self.version += 1
        self._refusals.append(seq)
        while len(self._refusals) > REFUSALS_KEPT:
            self._refusals.popleft()

    def _refused_between(self, after: int, upto: int) -> int:
        """Requests in `(after, upto]` that were refused (so spent nothing)."""
        if not self._refusals:
            return 0
        return sum(1 for seq in self._refusals if after < seq <= upto)

    def sent(self, seq: int, at: float) -> None:
        """Note that request `seq` was admitted at `at` (called for every admission, in order)."""
        sends = self._sends
        if not sends:
            self._sends_base = seq
        elif seq != self._sends_base + len(sends):
            sends.clear()  # a gap (a restored budget): start over
            self._sends_base = seq
        sends.append([at, math.inf])
        keep = 2 * self.limit + 2  # at least SENDS_KEPT (whole numbers: `max` spelt out)
        if keep < SENDS_KEPT:
            keep = SENDS_KEPT
        while len(sends) > keep:
            sends.popleft()
            self._sends_base += 1

    def _fit_sliding(self, seq: int, remaining: int, received: float, ahead: int) -> None:
        """A sliding window holds exactly `limit - remaining` of our requests at this answer:
        the oldest of them arrived less than a window ago, the one before it a window or more
        (reordered requests, `ahead`, may or may not be counted: the bound steps past them)."""
        fit = self._w_log
        if fit is None or (self._announced_limit is None and not self._limit_seen):
            return
        sends = self._sends
        index = seq - self._sends_base
        if not 0 <= index < len(sends):
            return
        sends[index][1] = received
        inside = self.limit - remaining  # this one included
        oldest = index - inside + 1
        # One more step back: a token bucket's count is whole tokens of a fractional level.
        before = oldest - 2 - ahead
        if inside < 1 or before < 0 or oldest > index:
            return
        sent = sends[index][0]
        # Requests admitted after this one but sent before its answer came may have reached
        # the server first and be in the count: the oldest surely inside is that many later.
        later = 0
        for position in range(index + 1, len(sends)):
            if sends[position][0] >= received:
                break
            later += 1
        surely = oldest + later
        lo = sent - sends[surely][1] if surely <= index else 0.0  # arrived after (arrival - window)
        hi = received - sends[before][0]  # left: arrived at or before (arrival - window)
        if not math.isfinite(lo):
            lo = 0.0
        if not fit.add_bounds(lo, hi, received):
            self._w_log = None  # not a sliding window of this limit

    def confirm(
        self,
        state: RateLimitState,
        *,
        seq: int,
        sent: float,
        received: float,
        in_flight: int = 0,
    ) -> bool:
        """Learn from an answer that only confirms what is believed; False (and nothing
        learned) when it may teach more: then [observe][] must read it.

        An answer confirms when it is fresh, announces the limit (and window) believed,
        leaves exactly what the last answer left less the requests admitted since (no
        rollover, no refill, no 429 in between), two or more, and says nothing of the window:
        no step of gradual evidence, no count our requests could fit a sliding window to, a
        reset that narrows the current end without passing it or moving it, no ends moving
        with each request. It changes what [observe][] would change (the server's clock
        offset, the samples, the latest answer, the recent answers, the current end), none of
        which anything derived per [version][] reads, so the version does not move and what
        was derived stays kept. Arguments as for [observe][].
        """
        last = self._last
        remaining = state.remaining
        if (
            not FAST
            or last is None
            or remaining is None
            or seq <= last.seq
            or received < last.received
            or remaining < 2
            or remaining != last.remaining - (seq - last.seq)
            or state.limit is None
            or state.limit != self._announced_limit
            or (state.window is not None and state.window != self._announced_window)
            or remaining + 1 > self._limit_seen
            or self._gradual
            or self._refusals
        ):
            return False
        since = self._since or last
        gained = remaining - since.remaining + (seq - since.seq)
        if (
            gained >= (GRADUAL_EVIDENCE + in_flight) * (self._span_gradual + 1)
            and seq >= self._crossed + GRADUAL_APART
        ):
            return False  # a step of gradual evidence
        sends = self._sends
        index = seq - self._sends_base
        fits = self._w_log is not None and 0 <= index < len(sends)
        if fits:
            inside = state.limit - remaining
            oldest = index - inside + 1
            if inside >= 1 and oldest - 2 - in_flight >= 0 and oldest <= index:
                return False  # a count our own requests fit a sliding window to
        offset = self._offset
        date = state.date
        if date is not None:
            # As `observe` narrows it (not kept until the answer is known to confirm).
            told_lo, told_hi = date - received, date + 1.0 - sent
            if offset is None:
                offset = Interval(told_lo, told_hi)
            else:
                lo = offset.lo if offset.lo > told_lo else told_lo
                hi = offset.hi if offset.hi < told_hi else told_hi
                if lo > hi:
                    offset = Interval(told_lo, told_hi)
                elif lo != offset.lo or hi != offset.hi:
                    offset = Interval(lo, hi)
        told = self._told
        delay = state.reset_after
        if delay is not None and not self._next_token:
            if delay <= 0.0 or told is None or (self._moving >= 2 and self._w_any is not None):
                return False  # a next token, a first end, or a sliding window's end
            if state.reset_is_epoch and date is not None and offset is not None:
                epoch = date + delay
                told_lo, told_hi = epoch - 1.0 - offset.hi, epoch - offset.lo
            else:
                below = 2.0 if state.reset_is_epoch else 1.0
                told_lo, told_hi = sent + delay - below, received + delay
            if received > told_hi:
                told_hi = received
            hi = told.hi if told.hi < told_hi else told_hi
            if (told.lo if told.lo > told_lo else told_lo) > hi or hi < received:
                return False  # another end, or the end has passed
        elif told is not None and told.hi < received:
            return False  # the end has passed
        # It confirms: what `observe` changes, in its order.
        self._offset = offset
        self._samples += 1
        if fits:
            sends[index][1] = received
        answer = _Answer(seq, remaining, sent, received)
        self._measure_refill(answer, self._window_source()[0])
        self._last = answer
        self._note_reset(state, sent, received, remaining)
        self._settle_end(received)
        return True

    def observe(
        self,
        state: RateLimitState,
        *,
        seq: int,
        sent: float,
        received: float,
        in_flight: int = 0,
    ) -> bool:
        """Learn from one answer; returns whether it was *fresh* (newer than any before).

        Args:
            state: the answer's parsed rate-limit headers.
            seq: the answered request's admission number (1, 2, ... in admission order).
            sent: when that request was admitted (it left then or just after).
            received: when the answer arrived.
            in_flight: requests admitted before it and still unanswered: the server may or
                may not have counted them, so the count may be off by that many.
        """
        self.version += 1
        last = self._last
        fresh = last is None or seq > last.seq
        changed = False
        if state.window is not None:
            if fresh and self._announced_window not in (None, state.window):
                # A plan changed, a gateway retuned: a window announced anew is a new policy.
                self.changes += 1
                self._forget()
                changed = True
            if fresh or self._announced_window is None:
                self._announced_window = state.window
        if state.limit is not None:
            if fresh and self._announced_limit not in (None, state.limit):
                changed = True  # the limit it announces now
            if fresh or self._announced_limit is None:
                self._announced_limit = state.limit
        remaining = state.remaining
        if fresh and remaining is not None and not changed:
            announced = self._announced_limit
            if announced is not None and state.limit is None:
                # More left than the limit it announced last (a dialect that announces it
                # only once spent): the limit was raised since, and what it announced then
                # no longer holds (the counts say the limit until it announces one again).
                changed = remaining > announced
                if changed:
                    self._announced_limit = None
            elif announced is None and (self._jumps >= 2 or self._gradual >= GRADUAL_SPANS):
                # More left than any window held since the limit was learned, beyond what
                # requests overtaking each other explain: the limit was raised.
                changed = remaining + 1 > self._limit_seen + in_flight + 1
        if changed:
            self._limit_changed()
        date = state.date
        if date is not None:
            # The server read its clock between our send and the answer, and truncated it.
            # (`Interval.intersect` in numbers: an offset that did not narrow is kept as is.)
            told_lo = date - received
            told_hi = date + 1.0 - sent
            offset = self._offset
            if offset is None:
                self._offset = Interval(told_lo, told_hi)
            else:
                lo = max(offset.lo, told_lo)
                hi = min(offset.hi, told_hi)
                if lo > hi:
                    self._offset = Interval(told_lo, told_hi)
                elif lo != offset.lo or hi != offset.hi:
                    self._offset = Interval(lo, hi)
        if not fresh:
            index = seq - self._sends_base
            if 0 <= index < len(self._sends):
                self._sends[index][1] = received
            if state.reset_after is not None:
                # Overtaken by a later admission's answer, but perhaps not on the server:
                # the one that spent the last credit is the one whose answer names the
                # reset (a dialect that sends Reset only when spent). A reset still ahead
                # can only be the current window's.
                self._note_reset(state, sent, received, remaining)
                self._settle_end(received)
            return False
        if remaining is None:
            self._note_reset(state, sent, received, remaining)
            self._settle_end(received)
            return True
        self._samples += 1
        if remaining + 1 > self._limit_seen:
            self._limit_seen = min(remaining + 1, 1_000_000)
        if remaining <= 1 and self._depleted_at is None:
            self._depleted_at = received
        if remaining > 0:
            # A spent budget's count says nothing of a window: a bucket refilling at the pace
            # we spend it looks, at 0, like a sliding window exactly as long as our own
            # last `limit` requests took (a fit that would follow our pace, not the server).
            self._fit_sliding(seq, remaining, received, in_flight)
        answer = _Answer(seq, remaining, sent, received)
        if last is None or changed:
            # When the window opened is not known: a fresh budget answers limit - 1, but a
            # window aligned to the clock may have opened long before the first request (or
            # the policy that opened it was another).
            self._opened = Interval(-math.inf, received)
            self._since = answer
            self._first = Interval(sent, received) if seq == 1 else None
        else:
            expected = last.remaining - (seq - last.seq)
            gain = remaining - expected
            limit = self.limit
            missing = limit - 1 - expected
            # A rollover gives back (nearly) everything the window took, or a large share
            # of a large debt; a gradual refill gives back a little at a time.
            if self._refusals:
                gain -= self._refused_between(last.seq, seq)
            full = gain >= 2 + in_flight and gain >= missing - in_flight - 1
            if full or (
                gain >= 3 + in_flight and gain >= ROLLOVER_SHARE * missing and missing >= limit / 5
            ):
                proven = self.proven_end if not full else None
                if proven is not None and answer.received < proven.lo:
                    # Part of the debt back, before any kind of window the answers allow
                    # can end: no rollover, the limit was raised (the count goes on, and
                    # gains are summed afresh from here: the jump is no refill).
                    self._limit_changed()
                    self._since = answer
                    self._recent.clear()
                else:
                    self._rollover(last, answer)
            else:
                since = self._since or last
                gained = remaining - since.remaining + (seq - since.seq)
                if self._refusals:
                    gained -= self._refused_between(since.seq, seq)
                # Evidence adds up as the gains do: each further step of the threshold
                # counts once (a fixed window's reordering noise never gets past one).
                step = GRADUAL_EVIDENCE + in_flight
                if (
                    gained >= step * (self._span_gradual + 1)
                    and seq >= self._crossed + GRADUAL_APART
                ):
                    # One step per answer, and steps a few answers apart: a refill keeps
                    # coming, a burst of overtaken answers comes once.
                    self._span_gradual += 1
                    self._gradual += 1
                    self._family = self._classify()
                    self._crossed = seq
                self._measure_refill(answer)
        self._last = answer
        self._note_reset(state, sent, received, remaining)
        self._settle_end(received)
        return True

    def _settle_end(self, received: float) -> None:
        """The end to act on: the announced one while it lies ahead, else the learned one."""
        told = self._told
        if told is not None and told.hi < received:
            told = self._told = None
        end: Interval | None = None
        if self._family is Family.FIXED_WINDOW:
            if self._predicted_at == self.version and MEMO:
                predicted = self._predicted
            else:
                predicted = self._predicted = self._predicted_end()
                self._predicted_at = self.version
            if predicted is not None and told is not None:
                end = predicted.intersect(told) or told
            else:
                end = predicted if predicted is not None else told
        else:
            end = told
            pace = self._pace_end
            if pace is not None and pace.hi < received:
                pace = self._pace_end = None
            if told is not None and pace is not None and pace.hi < told.hi:
                # The end moved later without a rollover (a sliding window, a bucket's time
                # to fill): the credits in hand were vouched for by the first word, and a
                # pace that followed every move would leave a share of them unspent.
                end = pace
        last = self._last
        if end is not None and last is not None and end.lo < last.sent:
            # The window was still open when the latest request answered in it was sent.
            end = Interval(last.sent, max(end.hi, last.sent))
        self._end = end if end is not None and end.hi >= received else None

    def _fit_span(self, ended: Interval) -> None:
        """Windows aligned to the clock end at `φ + n·P`: every pair of ends kept bounds `P`
        (over `m` windows, to within their own uncertainty divided by `m`, so a drift that
        each neighbouring pair allows adds up to a refutation over several)."""
        fitted, ends = self._w_span, self._ends
        if fitted is None:
            return
        number = 0
        if ends:
            latest_number, latest = ends[-1]
            fit_now = fitted.usable(1)
            # Windows without a request in them make a span of two or more: counted.
            step = 1
            if fit_now is not None:
                period = (fit_now.lo + fit_now.hi) / 2.0
                step = max(1, round((ended.lo + ended.hi - latest.lo - latest.hi) / 2.0 / period))
            number = latest_number + step
            for earlier_number, earlier in ends:
                m = number - earlier_number
                lo, hi = (ended.lo - earlier.hi) / m, (ended.hi - earlier.lo) / m
                if not fitted.add_bounds(lo, hi, over=m):
                    self._w_span = None  # ends are not evenly spaced: not aligned
                    ends.clear()
                    return
        ends.append((number, ended))

    def _span_guess(self) -> Interval | None:
        """Where the current window ends had windows been aligned to the clock: every end
        kept, plus the windows since times the period fitted, intersected."""
        fitted, ends = self._w_span, self._ends
        fit = fitted.usable(2) if fitted is not None else None
        if fit is None or not ends:
            return None
        following = ends[-1][0] + 1
        lo, hi = -math.inf, math.inf
        for number, ended in ends:
            m = following - number
            lo = max(lo, ended.lo + m * fit.lo)
            hi = min(hi, ended.hi + m * fit.hi)
        if lo > hi:
            latest = ends[-1][1]
            return Interval(latest.lo + fit.lo, latest.hi + fit.hi)
        return Interval(lo, hi)

    def _predicted_end(self) -> Interval | None:
        """Where the current fixed window ends by what earlier windows showed: its opening
        request plus the window (windows from the first request), or the previous end plus
        the window (windows aligned to the clock); both while their answers agree."""
        guesses: list[Interval] = []
        first_guess = self._first_guess()
        if first_guess is not None:
            guesses.append(first_guess)
        span_guess = self._span_guess()
        if span_guess is not None:
            guesses.append(span_guess)
        if guesses:
            return Interval(min(g.lo for g in guesses), max(g.hi for g in guesses))
        opened = self._opened
        if opened is None or self._window_hi is None:
            return None  # one rollover does not tell a window's length
        window = self._window_hi
        return Interval(opened.lo + window, opened.hi + window)

    @property
    def proven_end(self) -> Interval | None:
        """The current fixed window's end as every kind of window the answers still allow
        predicts it (None while one of them cannot predict yet): a window that opens with
        its first request, and one aligned to the clock, each refuted only once its fit
        disagreed. Its latest bound is as good as an announced end for one request sent
        without a credit in hand, whichever kind the server's is."""
        if self._family is not Family.FIXED_WINDOW:
            return None
        from_first, from_span = self._w_first, self._w_span
        if from_first is None and from_span is None:
            return None  # neither kind: nothing proves an end
        lo, hi = math.inf, -math.inf
        if from_first is not None:
            # (Derived, not kept: this is read while an answer is learned, too.)
            guess = self._derive_first_guess()
            if guess is None:
                return None
            lo, hi = guess.lo, guess.hi
        if from_span is not None:
            guess = self._span_guess()
            if guess is None:
                return None
            lo, hi = min(lo, guess.lo), max(hi, guess.hi)
        last = self._last
        if last is None or hi < last.received:
            return None  # passed: the next answer says what came after
        return Interval(lo, hi)

    @property
    def probe_window(self) -> Interval | None:
        """Where a probe should look for the current window's end: where the window would end
        had it opened with its first request (the case in which a late start costs budget),
        else anywhere the end may be."""
        end = self._end
        if end is None:
            return None
        guess = self._first_guess()
        if guess is not None:
            both = guess.intersect(end)
            if both is not None:
                return both
        return end

    def _first_guess(self) -> Interval | None:
        """Where the current window ends had it opened with its first request (None while
        that fit or the opening is not known). Read on every answer (by `probe_window`):
        derived once per [version][] (see `MEMO`), never while learning."""
        if self._guess_at == self.version and MEMO:
            return self._guess
        guess = self._derive_first_guess()
        self._guess, self._guess_at = guess, self.version
        return guess

    def _derive_first_guess(self) -> Interval | None:
        firsts = self._w_first.usable(2) if self._w_first is not None else None
        first = self._first
        if firsts is None or first is None:
            return None
        return first.shift(firsts.lo).union(first.shift(firsts.hi))

    @property
    def probe_pays(self) -> bool:
        """Whether a request sent inside the current end's uncertainty would teach enough to
        be worth its credit: only where a late start costs budget (a window that opens with
        its first request) and the end is not yet known closely, to within more than the
        share of the window one credit is worth (a probe that lands after the end costs it)."""
        end = self._end
        if end is None or self.family is not Family.FIXED_WINDOW or self._w_first is None:
            return False
        if end.width <= PROBE_WIDTH:
            # A probe saves at most the end's width (it looks inside it): not enough. (This
            # runs on every answer; the end is mostly known to a few hundredths of a second.)
            return False
        # (The window as the first requests bound it, while the believed one is the prior.)
        window = min(self.window, self._w_first.hi)
        target = self.probe_window or end
        saves = end.hi - (target.lo + target.hi) / 2.0
        return saves > max(PROBE_WIDTH, PROBE_SHARE * window, window / self.limit)

    def _measure_refill(self, answer: _Answer, window: float | None = None) -> None:
        """The refill rate over the last few seconds of answers since the last rollover
        (`window`: the window believed, when the caller knows it has not moved)."""
        recent = self._recent
        recent.append(answer)
        # `max(REFILL_SPAN[0], min(REFILL_SPAN[1], 4.0 * self.window))`, spelt out: this runs
        # while learning (so the window is derived afresh, not kept) on every answer.
        if window is None:
            window = self._derive_window_source()[0]
        window = window if window > MIN_WINDOW else MIN_WINDOW
        span = 4.0 * window
        span = span if span < REFILL_SPAN[1] else REFILL_SPAN[1]
        span = span if span > REFILL_SPAN[0] else REFILL_SPAN[0]
        while len(recent) > 2 and recent[1].received <= answer.received - span:
            recent.popleft()
        if not self._gradual or len(recent) < 2:
            return
        first = recent[0]
        gained = answer.remaining - first.remaining + (answer.seq - first.seq) - 1
        if self._refusals:
            gained -= self._refused_between(first.seq, answer.seq)
        elapsed = answer.received - first.sent
        if elapsed >= REFILL_MIN_SPAN:
            # Over a short span, reordering and whole-token counts are most of the signal.
            self._rate = max(0.0, gained / elapsed)

    def _rollover(self, last: _Answer, answer: _Answer) -> None:
        """The window ended between `last`'s request and this answer's."""
        self._jumps += 1
        self._family = self._classify()
        opened = Interval(last.sent, answer.received)
        first, told = self._first, self._window_told
        self._window_told = None
        # The window that ended did so after `last` arrived and before this answer's request
        # did; what its resets said narrows that further.
        ended = opened if told is None else (opened.intersect(told) or opened)
        if first is not None and self._w_first is not None:
            # Had the window opened with its first answer's request, it lasted this long.
            fit = Interval(ended.lo - first.hi, ended.hi - first.lo)
            if not self._w_first.add(fit):
                self._w_first = None  # windows do not open with a request: aligned
        self._fit_span(ended)
        self._ended = ended
        # The request that opened the new window arrived after `last`'s did, and no later than
        # this answer's; it is this answer's own when nothing was sent in between.
        consecutive = answer.seq == last.seq + 1
        self._first = Interval(answer.sent if consecutive else last.sent, answer.received)
        previous = self._rollovers[-1] if self._rollovers else None
        self._rollovers.append(opened)
        if previous is not None:
            # Two rollovers bound the window from above (a window from the first request
            # may open late, never early). The first answer of a run is no rollover: a
            # window aligned to the clock opened before it.
            bound = opened.hi - previous.lo
            if self._window_hi is None or bound < self._window_hi:
                self._window_hi = bound
            self._window_hi_samples += 1
        self._opened = opened
        self._told = None
        self._pace_end = None
        self._rolled_since_told = True
        self._since = answer
        self._span_gradual = 0
        self._recent.clear()

    def _note_reset(
        self, state: RateLimitState, sent: float, received: float, remaining: int | None
    ) -> None:
        """Narrow the current window's end with an announced reset."""
        delay = state.reset_after
        if delay is None:
            return
        if remaining is not None and remaining > 0:
            if delay <= 0.0:
                self._next_token += 1  # a gateway: Reset is the time to the next credit
                self._family = self._classify()
                return
            if self._next_token:
                return  # a next-token Reset says nothing of a window's end
        elif remaining == 0 and self._next_token:
            # Spent: the time to the next credit is when one probe may go.
            told = Interval(sent + delay - 1.0, received + delay)
            self._told = told
            return
        if delay > self._reset_max:
            self._reset_max = delay
        # The intervals below are kept as pairs of numbers until one is stored: this runs on
        # every answer that carries a reset.
        offset = self._offset
        if state.reset_is_epoch and state.date is not None and offset is not None:
            # An epoch, rounded up to the second, on the server's clock: our clock's offset
            # from it is known to within what the Dates seen so far allow.
            epoch = state.date + delay
            told_lo, told_hi = epoch - 1.0 - offset.hi, epoch - offset.lo
        else:
            below = 2.0 if state.reset_is_epoch else 1.0
            told_lo, told_hi = sent + delay - below, received + delay
        if received > told_hi:  # (`max`, spelt out: this runs on every answer)
            told_hi = received
        spans_lo, spans_hi = told_lo - received, told_hi - sent
        if spans_lo > self._reset_lo:
            self._reset_lo = spans_lo
        if (
            remaining == 0
            and self._w_all is not None
            and not self._w_all.add_bounds(spans_lo, spans_hi)
        ):
            self._w_all = None  # resets are not all one window long: not a sliding window
        if self._w_any is not None and not self._w_any.add_bounds(spans_lo, spans_hi, received):
            # Resets at every count do not span one time: not a sliding window that says
            # when its newest request leaves (a bucket's time to fill varies with the count).
            self._w_any = None
        current = self._told
        if current is not None:
            lo = max(current.lo, told_lo)
            hi = min(current.hi, told_hi)
            if lo <= hi:
                # The same end, narrowed (or not: then the interval held is kept).
                both = current if lo == current.lo and hi == current.hi else Interval(lo, hi)
                if self._pace_end is current:
                    self._pace_end = both
                self._told = self._window_told = both
                return
            if told_lo < current.lo:
                return  # an older window's word, overtaken: keep the newer
            if not self._rolled_since_told:
                # An end that moved later without a rollover: not a fixed window (a sliding
                # window says when its newest request leaves).
                self._moving += 1
        told = self._told = self._window_told = Interval(told_lo, told_hi)
        pace = self._pace_end
        if self._rolled_since_told or pace is None or pace.hi < received:
            self._pace_end = told
        self._rolled_since_told = False

    def forget_end(self) -> None:
        """The window's end has passed (a probe will tell what came next)."""
        self.version += 1
        self._end = None
        self._told = None
        self._pace_end = None

    def contradicted(self) -> None:
        """A 429 the beliefs did not foresee: what they said of the window no longer holds
        (a plan changed, a window grew, an end announced did not bring the budget back), so
        its length and the current end are learned again from the next answers; the limit
        and the family stay until the answers say otherwise."""
        self.version += 1
        self.changes += 1
        proven = self._derive_log_window()  # (read while learning: derived, not kept)
        if proven is not None and proven > self._window_floor:
            self._window_floor = proven
        self._forget_window(refuted=False)

    def throttled(self, state: RateLimitState | None, *, now: float) -> None:
        """A 429: whatever end was believed was too early."""
        self.version += 1
        wait = None
        if state is not None:
            wait = state.retry_after if state.retry_after is not None else state.reset_after
        self._told = None if wait is None else Interval(now + wait - 1.0, now + wait)
        self._end = self._pace_end = self._told
