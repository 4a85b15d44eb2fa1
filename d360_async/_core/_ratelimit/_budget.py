"""One budget's admission arithmetic: credits the server vouched for, paced; pure, time passed in.

A [Budget][] decides, for one rate-limit key, whether a request may leave now and, if not,
when. It rests on these rules, applied in this order:

1. **Remaining is the authority.** A fresh answer (to a request admitted after every request
   whose answer calibrated the budget before) saying `Remaining: R` leaves
   `credits = R - (requests admitted after it) - (older requests still unanswered)`, and no
   more than any recent answer whose request may have reached the server after this one's
   allows. A request leaves only while `credits >= 1`: the server itself said the budget was
   there, so it cannot be answered 429 unless somebody else spends the same budget.
2. **Credits come back only as the server said, or as proven** ([PolicyEstimator][]). Once an
   end the server *announced* has passed, one probe may go; its answer says what the new window
   holds. So it may once a fixed window's *proven* end has passed
   ([PolicyEstimator.proven_end][]: every kind of fixed window not ruled out predicts it),
   unless an announced end says later. Any other predicted end only times a probe sent while
   a credit is still in hand, which is safe whether or not the window has ended. A gradual
   budget's credits come back one window after the answer of the request that spent them, by
   a window the answers proved an upper bound of (no sliding window, token bucket or fixed
   window of that limit and window can be slower), and never before an announced reset that
   does not move;
   however late the log says the next one is, the server is asked again (one probe) once the
   longest reset it announced, else the configured period, has passed without one.
   With nothing announced and nothing proven, one probe goes the longest plausible window
   after the current one opened. A 429 pauses the budget until its `Retry-After` (else the
   announced reset, else a backoff of 1, 2, 4... seconds); the pause ends with one probe. A
   429 the credits did not foresee also tells the estimator that what it proved of the
   window no longer holds (`PolicyEstimator.contradicted`): it is learned again.
3. **Credits are spread, never left to expire.** The credits in hand are paced evenly until
   the earliest bound of a fixed window's end, or over a window for a gradual budget (on top
   of the refill measured; a bucket that names its time to fill keeps `CUSHION` credits in
   hand, so the pace settles at the refill instead of emptying it and waiting that out). So
   the last credit of a window leaves before the window can end: none expires unspent while
   callers wait. While the end is uncertain and a late start costs budget, the last credit
   waits for the middle of the uncertainty (a bisection, window after window), where that
   could open the next window earlier by more than the credit is worth; while nothing
   says when the budget comes back, a few credits are held back to look for the refill, ever
   less often; and a gradual budget whose returns nothing proved (no sliding window's own
   evidence, no next-token reset) keeps its last credit as a probe, sent a refill step after
   the latest answer, rather than spend it and wait out a return it cannot prove.

With no count from the server at all (a server that sends no rate-limit headers), the budget
paces blind at the configured limit per period, less `safety_margin` and at least one request,
and adapts (AIMD): a 429 halves the rate, each answered request adds back a little, quickly
up to just below where the last 429 came and slowly beyond; and the requests served between
two 429 pauses, over the time between them, cap the blind rate.

Pacing keeps `tokens` (at most `burst`) refilled at the pace rate; a request needs a token and
a credit. While callers are queued (`backlogged`), tokens a late timer could not hand out are
not lost.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque

from d360_async._core._ratelimit._headers import RateLimitState
from d360_async._core._ratelimit._policy import (
    DISCOVERY_HORIZON,
    Family,
    PolicyEstimate,
    PolicyEstimator,
)

__all__ = [
    "BACKOFF_BASE",
    "CUSHION",
    "DECREASE",
    "EPSILON",
    "INCREASE",
    "MIN_FACTOR",
    "Budget",
    "check_pacing",
]

EPSILON = 1e-6
"""Tokens (and credits) this close to a whole one count as one: refill arithmetic on clock
readings of about 1.7e9 seconds carries errors of a few 1e-7."""

MIN_FACTOR = 0.05
"""The adaptive rate never drops below 5 % of the blind rate."""

DECREASE = 0.5
"""Multiplicative decrease of the adaptive factor on a 429."""

INCREASE = 0.02
"""Additive increase of the adaptive factor per answered request."""

CEILING = 0.95
"""After a 429 the blind rate recovers quickly up to this share of where the 429 came."""

CREEP = 0.05
"""Beyond that ceiling it grows this much more slowly."""

BACKOFF_BASE = 1.0
"""First pause (seconds) after a 429 that says neither `Retry-After` nor a reset."""

DRAIN_FULL = 2.0
"""Seconds over which a gradual budget that stays full is spent, to find its refill rate."""

SURPLUS_SHARE = 0.25
"""Share of a gradual budget's window over which credits beyond the steady pace are spread."""

DRAIN_MIN = 0.5
"""Seconds over which a gradual budget's surplus credits are spread at the least."""

CUSHION = 1.0
"""Credits a gradual budget's pace keeps in hand beyond the last one where the announced ends
move with every request but the counts are not those of our own requests leaving a sliding
window (a token bucket naming its time to fill): drained to the last credit, the next answer
says the budget is spent and the pace waits out that reset, a whole second for a token due in
a tenth. Tokens left in a bucket cost nothing (it refills as fast); a sliding window would
lose what is held, so it keeps none."""

PROBE_STEP = 0.5
"""Seconds from running out of credits to the first probe for a refill nobody announced."""

DISCOVERY_PROBES = 3
"""Credits held back to probe for a refill nobody announced."""

PROBE_PENDING = 0.25
"""Seconds reported as the wait while a probe's answer is awaited (it usually takes a round
trip; the answer itself releases the queue)."""

MIN_WAIT = 0.001
"""The shortest wait reported while credits are short (a timer must move the clock)."""

LOG_SIZE = 4096
"""Answered requests remembered for a gradual budget's credit returns."""


def _owed(sent: float, received: float, counted: float, lo: float, settled: float) -> bool:
    """Whether a logged request's credit is still owed back: its answer came with or after
    the count the credits rest on, or it was sent after everything a count settled and, by
    the shortest window known, was still inside the window when that count was taken."""
    return received >= counted or (sent > settled and sent + lo > counted)


def check_pacing(limit: float, period: float, burst: int, safety_margin: float) -> None:
    """Raise `ValueError` naming the first pacing setting out of range."""
    if not (limit > 0 and math.isfinite(limit)):
        raise ValueError(f"limit must be a positive number, got {limit!r}")
    if not (period > 0 and math.isfinite(period)):
        raise ValueError(f"period must be a positive number of seconds, got {period!r}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, got {burst!r}")
    if not 0 <= safety_margin < 1:
        raise ValueError(f"safety_margin must be in [0, 1), got {safety_margin!r}")


class Budget:
    """One key's admission arithmetic (module docstring).

    Args:
        limit: the prior limit per `period` (the configured `rate_limit`).
        period: the prior window in seconds.
        burst: pacing tokens that may be spent back to back.
        safety_margin: share of the prior limit left unused while pacing blind.
        wait_margin: seconds added to every wait the server announced (a reset's latest
            bound, a `Retry-After`).
        epoch_margin: seconds added, besides, to a `Retry-After` sent as an HTTP date.
        adaptive: adapt the blind rate to 429s (AIMD).
        now: the current time.
    """

    __slots__ = (
        "_adaptive",
        "_blind_rate",
        "_burst",
        "_calibrated",
        "_ceiling",
        "_consecutive",
        "_counted_at",
        "_counts",
        "_credits",
        "_cycle_served",
        "_cycle_start",
        "_epoch_margin",
        "_factor",
        "_grant_at",
        "_grant_step",
        "_grant_told",
        "_log",
        "_owed_after",
        "_paused_until",
        "_period",
        "_prior_limit",
        "_probe_at",
        "_probe_step",
        "_rate",
        "_reserve",
        "_returns",
        "_returns_at",
        "_safety",
        "_seq",
        "_throttled_at",
        "_tokens",
        "_unanswered",
        "_updated",
        "_wait_margin",
        "policy",
    )

    def __init__(
        self,
        limit: float,
        period: float,
        *,
        burst: int = 1,
        safety_margin: float = 0.03,
        wait_margin: float = 0.0,
        epoch_margin: float = 0.0,
        adaptive: bool = True,
        now: float,
    ) -> None:
        check_pacing(limit, period, burst, safety_margin)
        self.policy = PolicyEstimator(limit, period)
        self._prior_limit = float(limit)
        self._period = float(period)
        self._burst = burst
        self._safety = safety_margin
        self._wait_margin = wait_margin
        self._epoch_margin = epoch_margin
        self._adaptive = adaptive
        self._seq = 0
        # Admission numbers not yet recorded, ascending (each admission's is the largest
        # yet): how many precede a number is a bisection, not a scan.
        self._unanswered: list[int] = []
        self._calibrated = 0  # seq of the answer credits were last computed from
        self._credits: float | None = None
        # Recent answers' counts: (admission number, remaining, when the answer came).
        self._counts: deque[tuple[int, int, float]] = deque()
        self._grant_at: float | None = None
        self._grant_told = False  # whether `_grant_at` is the server's word (an announced end)
        self._grant_step = PROBE_STEP  # after a probe found nothing more: the next one's wait
        self._tokens = float(burst)
        self._updated = now
        self._paused_until = now
        # Credits held back to probe with, and when the next may go (inf: one is out).
        self._reserve = 0
        self._probe_at: float | None = None
        self._probe_step = PROBE_STEP
        self._factor = 1.0
        self._ceiling = 1.0  # just below the factor the last 429 came at
        # Blind: when the last 429 pause ended, and requests answered (not 429) since.
        self._cycle_start: float | None = None
        self._cycle_served = 0
        self._throttled_at: float | None = None
        self._consecutive = 0
        # Answered requests of a gradual budget: (sent, received), for credit returns.
        self._log: deque[tuple[float, float]] = deque(maxlen=LOG_SIZE)
        # When the answer the credits were last computed from came: a logged request whose
        # credit may have come back before it is in that count already.
        self._counted_at = -math.inf
        # Requests sent up to then are settled: some count, by the shortest window known when
        # it came, may hold their return already. Those a count could not judge (no window
        # known yet) are judged by the window known when they come due.
        self._owed_after = -math.inf
        # `_returning()` as of the policy's `version` it was derived at (-1: not yet).
        self._returns = False
        self._returns_at = -1
        # Slack of at least one request: paced blind, a period then holds at most the limit.
        usable = min(self._prior_limit * (1.0 - safety_margin), self._prior_limit - 1.0)
        self._blind_rate = max(usable - (burst - 1), EPSILON) / self._period
        self._rate = self._blind_rate

    # -- reading ---------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """Requests admitted so far: the admission number of the latest."""
        return self._seq

    @property
    def credits(self) -> float | None:
        """Requests the server vouched for and not yet spent (None: it never said)."""
        return self._credits

    @property
    def remaining(self) -> float | None:
        """The estimate of the server's remaining budget, never below 0 (None: unknown)."""
        return None if self._credits is None else max(0.0, self._credits)

    @property
    def rate(self) -> float:
        """The pace in force, requests per second (0 while paused)."""
        return 0.0 if self._paused_until > self._updated else self._rate

    @property
    def tokens(self) -> float:
        """Pacing tokens at the last update."""
        return self._tokens

    @property
    def capacity(self) -> float:
        """The most pacing tokens held (the burst)."""
        return float(self._burst)

    @property
    def paused_until(self) -> float:
        """Until when nothing may be sent (in the past when not paused)."""
        return self._paused_until

    @property
    def grant_at(self) -> float | None:
        """When a spent budget is next expected back (a probe may go then), if pending."""
        return self._grant_at

    @property
    def factor(self) -> float:
        """The adaptive multiplier of the blind rate, in `[MIN_FACTOR, 1]`."""
        return self._factor

    @property
    def limit(self) -> float:
        """The limit believed now."""
        return float(self.policy.limit)

    @property
    def learned_limit(self) -> int | None:
        """The limit the answers showed (announced or counted), None while only configured."""
        estimate = self.policy.estimate()
        return estimate.limit.value if estimate.limit.samples else None

    @property
    def reset_at(self) -> float | None:
        """The latest bound of the current window's end, when known."""
        end = self.policy.end
        return None if end is None else end.hi

    @property
    def sustainable_rate(self) -> float:
        """The long-run requests per second: the learned policy's rate (blind: the paced
        configured rate, scaled by the adaptive factor)."""
        if not self.policy.has_count:
            return self._blind_rate * self._factor
        return self.policy.estimate().rate

    @property
    def consecutive_throttles(self) -> int:
        """429s since the last answered request (drives the blind backoff)."""
        return self._consecutive

    def estimate(self) -> PolicyEstimate:
        """The learned policy, each belief with its evidence."""
        return self.policy.estimate()

    def __repr__(self) -> str:
        credits = "?" if self._credits is None else f"{self._credits:g}"
        return (
            f"Budget(credits={credits}, tokens={self._tokens:.3f}/{self._burst},"
            f" rate={self.rate:.4g}/s, {self.policy.estimate().describe()})"
        )

    # -- time ------------------------------------------------------------------------------

    def advance(self, now: float, *, backlogged: bool = False) -> None:
        """Bring tokens and credits up to `now`.

        `backlogged`: callers waited the whole time since the last update, so tokens a late
        timer did not hand out are kept (above the burst, until [clamp][]).
        """
        t = self._updated
        if now <= t:
            return
        tokens = self._tokens
        if self._paused_until > t:
            if now < self._paused_until:
                self._updated = now
                return
            t = self._paused_until
            tokens = max(tokens, 1.0)  # the pause is over: one probe
        grant = self._grant_at
        if grant is not None and now >= grant:
            # The spent budget is due back: one probe may go, and its answer says the rest.
            if self._credits is not None and self._credits < 1.0:
                self._credits = 1.0
            self._grant_at = None
            self.policy.forget_end()
            tokens = max(tokens, 1.0)
        cap = math.inf if backlogged else float(self._burst)
        if self._credits is not None and self._log and self._returning():
            t, tokens = self._return_credits(t, tokens, now, cap)
        tokens += self._rate * (now - t)
        if tokens > cap:
            tokens = cap
        self._tokens = tokens
        self._updated = now

    def _returning(self) -> bool:
        """Whether spent credits come back one by one (a gradual budget whose window is
        bounded from above by something the answers proved). Read on every advance of the
        clock, derived again only once the policy learned something."""
        policy = self.policy
        if policy.version == self._returns_at:
            return self._returns
        returns = self._derive_returning()
        self._returns, self._returns_at = returns, policy.version
        return returns

    def _derive_returning(self) -> bool:
        policy = self.policy
        if policy.family not in (Family.GRADUAL, Family.TOKEN_BUCKET) and not policy.ends_move:
            # (Announced ends that move later with each request are a sliding window's own
            # word, before a refill has been seen: its requests leave it one by one.)
            return False
        if policy.told_end is not None and not (policy.ends_move or policy.sliding_proven):
            # The server named a reset that has not come, and nothing shows a sliding window
            # (resets that move with each request, or counts that match our own requests
            # leaving the window): nothing comes back before it.
            return False
        return policy.log_window is not None

    def _return_credits(
        self, t: float, tokens: float, now: float, cap: float
    ) -> tuple[float, float]:
        """A gradual budget: credits of requests that left the window since calibration,
        each at the moment it came due, from `t` with `tokens` to `now`.

        Each credit sets the pace again as of its own moment (with none sent, no answer
        would), the tokens accrued up to it at the pace before: however often the clock is
        read in between, the same returns leave the same state. Returns the time and the
        tokens it got to.
        """
        window = self.policy.log_window
        if window is None:
            return t, tokens
        log = self._log
        credits = self._credits
        assert credits is not None
        limit = float(self.policy.limit)
        counted, lo, settled = self._counted_at, self.policy.window_lo, self._owed_after
        while log and log[0][1] + window <= now:
            sent, received = log.popleft()
            if _owed(sent, received, counted, lo, settled) and credits < limit:
                due = max(t, received + window)
                tokens = min(cap, tokens + self._rate * (due - t))
                t = due
                credits += 1.0
                self._credits = credits
                self._repace(due)
        return t, tokens

    def _return_due(self, short: float) -> float | None:
        """When the `short`-th credit that the log still owes comes back, by the window the
        answers proved (None: the log owes fewer)."""
        window = self.policy.log_window
        if window is None:
            return None
        counted, lo, settled = self._counted_at, self.policy.window_lo, self._owed_after
        owed = 0
        due = None
        for sent, received in self._log:
            if _owed(sent, received, counted, lo, settled):
                owed += 1
                due = received + window
                if owed >= short:
                    break
        return due

    def wait_time(self, now: float, need: float = 1.0) -> float:
        """Seconds from `now` until `need` requests could have been admitted (0: now)."""
        self.advance(now)
        start = max(now, self._paused_until)
        tokens = self._tokens if start <= now else max(self._tokens, 1.0)
        rate = self._rate
        pace = 0.0 if tokens >= need - EPSILON else (need - tokens) / rate
        credits = self._credits
        probe_at = self._probe_at
        if (
            probe_at is not None
            and credits is not None
            and credits < need + self._reserve - EPSILON
        ):
            start = max(start, probe_at if math.isfinite(probe_at) else now + PROBE_PENDING)
        if credits is None or credits >= need - EPSILON:
            return start + pace - now
        short = need - max(credits, 0.0)
        owed = self._return_due(short) if self._log and self._returning() else None
        if self._grant_at is not None:
            due = self._grant_at + max(0.0, short - 1.0) / max(rate, self.policy.estimate().rate)
            if owed is not None:
                due = min(due, owed)
        elif owed is not None:
            due = owed
        else:
            due = now + short / max(self.policy.estimate().rate, EPSILON)
        return max(start + pace, due) - now

    def server_wait(self, now: float) -> float:
        """Seconds from `now` until the server lets this budget spend again, as the server
        itself said: a 429's pause, or a spent budget's announced reset (0 when neither
        holds it back). The pace and the callers queued are not counted: they are ours."""
        self.advance(now)
        wait = max(0.0, self._paused_until - now)
        credits = self._credits
        grant = self._grant_at
        if grant is not None and self._grant_told and credits is not None and credits < 1.0:
            wait = max(wait, grant - now)
        return wait

    def clamp(self) -> None:
        """Drop tokens above the burst (a backlog ended: no burst later)."""
        self._tokens = min(self._tokens, float(self._burst))

    def try_take(self, now: float, *, backlogged: bool = False) -> float:
        """Admit one request if possible: 0.0, else the seconds to wait."""
        self.advance(now, backlogged=backlogged)
        credits = self._credits
        if credits is not None and credits < 1.0 - EPSILON:
            return max(self.wait_time(now), MIN_WAIT)
        probe_at = self._probe_at
        if probe_at is not None and credits is not None and credits < self._reserve + 1.0 - EPSILON:
            # The credits held back go one at a time, each when due, the next only once the
            # previous one's answer has been read.
            if now < probe_at:
                # A probe is out: its answer decides (and wakes the queue); until then, look
                # again now and then rather than promise a wait nobody knows.
                return max(probe_at - now, MIN_WAIT) if math.isfinite(probe_at) else PROBE_PENDING
            probing = True
            if self.policy.family is Family.UNKNOWN:
                # Nothing is known of the refill: a probe's step is its pace, and it does not
                # wait for a token besides.
                self._tokens = max(self._tokens, 1.0)
        else:
            probing = False
        if self._tokens < 1.0 - EPSILON or self._paused_until > now:
            wait = self.wait_time(now)
            if wait > 0.0:
                return wait  # else rounding left a token a hair short of whole: take it
        # A token a hair short of whole (rounding) is taken whole: no debt from rounding.
        tokens = self._tokens - 1.0
        self._tokens = 0.0 if -EPSILON < tokens < 0.0 else tokens
        if probing:
            self._probe_at = math.inf  # the next waits for this one's answer
        if credits is not None:
            self._credits = credits - 1.0
        self._seq += 1
        self._unanswered.append(self._seq)
        self.policy.sent(self._seq, now)
        return 0.0

    def refund(self, now: float, seq: int | None = None) -> None:
        """Give back an admission's token and credit: it was never sent.

        `seq` is its admission number (default: the latest).
        """
        self.advance(now)
        self._answered(self._seq if seq is None else seq)
        if self._paused_until <= now:
            self._tokens = min(float(self._burst), self._tokens + 1.0)
        if self._credits is not None:
            self._credits += 1.0

    # -- feedback --------------------------------------------------------------------------

    def record(
        self,
        status: int | None,
        state: RateLimitState | None,
        *,
        now: float,
        sent: float,
        seq: int,
    ) -> None:
        """Apply one finished request: a 429, an answer, or (`status=None`) no answer.

        Args:
            status: the HTTP status, None when no answer came (the credit stays spent: the
                request may have reached the server).
            state: the answer's parsed rate-limit headers.
            now: when the answer arrived.
            sent: when the request was admitted.
            seq: its admission number ([seq][] right after it was taken).
        """
        self.advance(now)
        self._answered(seq)
        if status == 429:
            self._throttle(state, now=now, sent=sent, seq=seq)
            return
        if status is None:
            return
        if state is not None and not state.is_empty:
            self._observe(state, now=now, sent=sent, seq=seq)
        elif self._credits is not None:
            self._log.append((sent, now))
        if status < 500:
            self._succeed(sent=sent)
        self._repace(now)

    def _answered(self, seq: int) -> None:
        """Admission `seq` is no longer unanswered (if it was)."""
        unanswered = self._unanswered
        index = bisect_left(unanswered, seq)
        if index < len(unanswered) and unanswered[index] == seq:
            del unanswered[index]

    def _observe(self, state: RateLimitState, *, now: float, sent: float, seq: int) -> None:
        policy = self.policy
        unanswered = self._unanswered
        # Requests admitted before this one and still unanswered may not have reached the
        # server before it: the count may not include them yet.
        ahead = bisect_left(unanswered, seq)
        # Answers overtake each other on the wire: as noise on the counts, allow for every
        # request still out, not only those admitted before this one.
        noise = len(unanswered) + 1
        jumps = policy.rollovers
        fresh = policy.confirm(
            state, seq=seq, sent=sent, received=now, in_flight=noise
        ) or policy.observe(state, seq=seq, sent=sent, received=now, in_flight=noise)
        remaining = state.remaining
        if remaining is not None:
            self._counts.append((seq, remaining, now))
        if fresh and remaining is not None:
            self._calibrated = seq
            # Any recent answer whose request may have reached the server after this one's
            # (its answer came after this request left) may know of a lower count.
            counts = self._counts
            while counts and counts[0][2] <= sent:
                counts.popleft()
            latest = self._seq
            # Whole numbers until the end: the least of them, then one float. Answers mostly
            # come back in order, so most counts precede every request still out.
            least = remaining - (latest - seq) - ahead
            oldest = unanswered[0] if unanswered else latest + 1
            # After a rollover to a full window (this count is the whole limit but for our
            # own requests), a count lower than this one by more than every request of ours
            # that could have been counted between them is the old window's, and caps
            # nothing. (Otherwise a lower count may be somebody else's spending.)
            floor = -math.inf
            ours = latest - seq + len(unanswered) + 1
            if policy.rollovers != jumps and remaining + ours >= policy.limit:
                floor = remaining - (latest - min(seq, oldest)) - len(unanswered) - 1
            for other, left, _ in counts:
                if left < floor:
                    continue
                if other <= oldest:
                    bound = left - (latest - other)
                else:
                    bound = left - (latest - other) - bisect_left(unanswered, other)
                if other < seq:
                    # This answer's own request is in that count if it was counted later,
                    # and this count is the lower one if it was not: either way, it is not
                    # still to be counted.
                    bound += 1
                if bound < least:
                    least = bound
            credits = float(least)
            if credits > (self._credits or 0.0) + 1.0:
                # More credits than before (a new window, a refill): whatever the pace let
                # pile up while callers waited must not leave as one burst. If the count
                # were wrong, the first answers would say so before many more had left.
                self._tokens = min(self._tokens, float(self._burst))
            self._credits = credits

            # The count speaks for the moment its request arrived: a request whose credit may
            # have come back by then is in it already (or may be); only those surely due
            # later can still add to it. Which those are is decided when they come due, by
            # the window known then (a window proven later still returns them); requests
            # that cannot be owed by any window believed are dropped now.
            self._counted_at = now
            lo = policy.window_lo
            if lo > 0.0:
                # By the shortest window known now, a request sent this long ago may have
                # come back already: it is in this count, and owed by none later.
                self._owed_after = max(self._owed_after, now - lo)
            log = self._log
            longest = policy.window_bound
            while log and log[0][0] + longest <= now:
                log.popleft()
            if self._credits >= 1.0:
                self._grant_at = None
                self._grant_step = PROBE_STEP
        if self._credits is not None:
            self._log.append((sent, now))
        elif state.retry_after is not None and self._credits is not None:
            self._credits = min(self._credits, 0.0)

    def _repace(self, now: float) -> None:
        """Set the pace and, when the credits are spent, when they come back."""
        policy = self.policy
        credits = self._credits
        if credits is None:
            self._rate = self._blind_rate * self._factor
            return
        end = policy.end
        previous_probe = self._probe_at
        self._probe_at = None
        self._reserve = 0
        if credits < 1.0 - EPSILON:
            returns = self._log and self._returning()
            told = policy.told_end
            proven = policy.proven_end if not returns else None
            if proven is not None and (told is None or told.lo <= proven.hi < told.hi):
                # (An end the server announced later than the fits allow is its word: the
                # policy changed, and the fits will learn it.)
                told = proven
            if told is not None and not returns:
                # The server said when, or every kind of window the answers allow agrees:
                # one probe may go once its latest bound has passed.
                self._grant_at = max(now, told.hi + self._wait_margin)
                self._grant_told = True
            elif self._grant_at is None and not returns:
                # Nothing the server said: wait out a whole window from when this one opened,
                # by the longest window anything has shown (a prediction only times probes
                # sent with a credit in hand, never one sent without).
                opened = policy.opened
                base = opened.hi if opened is not None and math.isfinite(opened.hi) else now
                due = base + policy.window_bound
                if due <= now:
                    # That wait is over and a probe was let in with nothing left after it:
                    # the budget comes back a little at a time (a window that had not ended
                    # would have refused it), so the next probe waits a step, and each
                    # further step twice as long, not a moment.
                    due = now + self._grant_step
                    self._grant_step = min(2.0 * self._grant_step, policy.window_bound)
                self._grant_at = due
                self._grant_told = False
            elif returns and self._grant_at is None:
                # Credits come back by the log, however late it says; once the longest
                # reset the server announced (else the configured period) has passed
                # without one, the server is asked again: a refill measured across a pause
                # can put the log's window at many minutes.
                # Nor, when the log owes nothing (every answer came before this count, which
                # may hold them all), later than one window the answers proved no shorter
                # than the true one: by then, whatever this count had spent is back.
                ask = policy.longest_reset or self._period
                longest = policy.log_window
                if longest is not None and longest < ask and self._return_due(1) is None:
                    ask = longest
                self._grant_at = now + ask
                self._grant_told = False
            self._rate = max(policy.estimate().rate, EPSILON)
            return
        if self._grant_at is not None and self._log and self._returning():
            self._grant_at = None  # credits came back by the log before the server was asked
        family = policy.family
        if family is Family.TOKEN_BUCKET and policy.refill_rate <= 0.0:
            family = Family.UNKNOWN  # a gateway's dialect, but nothing measured yet
        if family in (Family.GRADUAL, Family.TOKEN_BUCKET) or (
            policy.ends_move and self._returning()
        ):
            # (Ends that move with each request, and a window to return credits by: a
            # sliding window, whatever a stray rollover made of the family.)
            # Take the refill as it comes, at the policy's long-run rate or the refill seen,
            # and drain the surplus in hand over a (clamped) window.
            window = policy.window
            steady = max(policy.refill_rate, policy.limit / window)
            # A quarter of the window: the window believed is an upper bound, so the steady
            # pace runs a little short, and credits in hand are what the server says the
            # shortfall left. Drained over a whole window they would settle at about
            # `limit * error`, unspent; over a quarter of it, at a quarter of that.
            horizon = min(window, max(DRAIN_FULL, window * SURPLUS_SHARE))
            if policy.window_from_refill:
                # The window is only the refill measured, which is no more than what we
                # spent: credits left over say the refill keeps up, so go faster to find it
                # (drained slowly, the surplus settles high and stays unspent).
                horizon = min(window, DRAIN_MIN)
            # Announced ends that move with every request, in counts our own requests leaving
            # a window do not explain: a bucket's time to fill. Running it dry means waiting
            # that out, and tokens left in a bucket cost nothing (it refills as fast), so
            # keep a cushion; a sliding window would lose what is held, so it gets none.
            cushion = CUSHION if policy.ends_move and not policy.sliding_proven else 0.0
            rate = steady + max(credits - 1.0 - cushion, 0.0) / max(horizon, DRAIN_MIN)
            if family is not Family.TOKEN_BUCKET and not policy.returns_proven:
                # The refill comes a little at a time, yet nothing proves when a spent
                # credit is back (a sliding counter's count fades over the next window, it
                # does not return request by request): spent to nothing, the budget would
                # wait out what it cannot prove. The last credit goes a refill step after
                # the latest answer, and its own answer says whether the refill came
                # (held back whatever is in hand now: the credits above it may all be
                # taken before the next answer comes).
                self._reserve = 1
                self._probe_at = now + 1.0 / max(steady, EPSILON)
        elif end is not None and end.hi > now:
            # Spend it all before the window can end; an end that may be upon us already
            # is a last chance: spend before its latest bound. Where a probe pays, the last
            # credit waits for the middle of the end's uncertainty, to narrow it.
            spend = credits
            if policy.told_end is None and policy.proven_end is None and credits >= 1.0 - EPSILON:
                # The end is only predicted: the last credit looks for it at its latest
                # bound, which is safe whether or not the window has ended by then.
                spend = credits - 1.0
                self._reserve = 1
                self._probe_at = max(now, end.hi)
            elif policy.probe_pays:
                spend = credits - 1.0
                self._reserve = 1
                target = policy.probe_window or end
                self._probe_at = (max(now, target.lo) + max(now, target.hi)) / 2.0
            if spend < 1.0 - EPSILON:
                rate = max(policy.estimate().rate, EPSILON)
            else:
                rate = spend / (end.lo - now if end.lo > now else end.hi - now)
        else:
            window = policy.window
            spend = credits
            if family in (Family.UNKNOWN, Family.FIXED_WINDOW):
                # Nothing says when the budget comes back: spend it over a guess, holding a
                # few credits back to look, ever less often, for the refill.
                window = min(window, DISCOVERY_HORIZON)
                # While nothing at all is known of the refill, the last few credits are all
                # probes (a reserve that shrank with each answer would let them go at the
                # pace, and a spent budget whose reset is told waits out a whole window).
                keep = 0 if family is Family.UNKNOWN else 1
                self._reserve = min(DISCOVERY_PROBES, max(0, math.floor(credits) - keep))
                spend = credits - self._reserve
                if self._reserve and (spend < 1.0 - EPSILON or family is Family.UNKNOWN):
                    # Held back for real while nothing is known of the refill: once the
                    # credits are down to the reserve, they go one at a time, each a step
                    # after the last (however fast the pace).
                    if previous_probe is None or math.isfinite(previous_probe):
                        self._probe_step = PROBE_STEP
                    else:
                        self._probe_step *= 2.0  # the last probe found nothing
                    self._probe_at = now + self._probe_step
            opened = policy.opened
            horizon = window
            if opened is not None and math.isfinite(opened.hi):
                left = opened.hi + window - now
                # Past the end predicted for this window and no rollover: the window is
                # longer than thought and may end any moment, taking the credits in hand
                # with it. They were vouched for, so they go now, not over a whole window.
                horizon = left if left > 0.0 else DRAIN_MIN
            rate = max(spend, 1.0) / max(horizon, EPSILON)
        self._rate = max(rate, EPSILON)

    def _succeed(self, *, sent: float) -> None:
        throttled = self._throttled_at
        if throttled is not None and sent <= throttled:
            return  # admitted before the last 429: says nothing about the rate since
        self._cycle_served += 1
        self._consecutive = 0
        if self._adaptive and self._factor < 1.0:
            # Back quickly to just below where the last 429 came, then only creep past it.
            step = INCREASE if self._factor < self._ceiling else INCREASE * CREEP
            self._factor = min(1.0, self._factor + step)

    def _throttle(self, state: RateLimitState | None, *, now: float, sent: float, seq: int) -> None:
        echo = self._throttled_at is not None and sent <= self._throttled_at
        if not echo:
            self._consecutive += 1
            self._throttled_at = now
            if self._adaptive:
                self._ceiling = self._factor * CEILING
                self._factor = max(MIN_FACTOR, self._factor * DECREASE)
        if not echo and self._credits is not None:
            self.policy.contradicted()
        self.policy.refused(seq)
        if state is not None and not state.is_empty:
            self.policy.observe(state, seq=seq, sent=sent, received=now)
        if state is not None and state.retry_after is not None:
            margin = self._wait_margin + (self._epoch_margin if state.retry_is_date else 0.0)
            delay = state.retry_after + margin
        elif state is not None and state.reset_after is not None:
            delay = state.reset_after + self._wait_margin
        else:
            exponent = min(max(self._consecutive - 1, 0), 30)
            delay = min(self._period, BACKOFF_BASE * 2.0**exponent)
        self.policy.throttled(state, now=now)
        until = now + delay
        if until > self._paused_until:
            self._paused_until = until
        self._tokens = min(self._tokens, 0.0)
        if self._credits is not None:
            self._credits = min(self._credits, 0.0)
            self._grant_at = None
        elif not echo and self._cycle_start is not None and self._cycle_served > 0:
            # Blind, between two 429s: the server let this many through from the end of one
            # pause to the end of the next. That is its long-run rate, whatever it said.
            served = self._cycle_served * (1.0 - self._safety)
            self._blind_rate = min(self._blind_rate, served / (until - self._cycle_start))
            self._factor = 1.0
            self._ceiling = 1.0
        if not echo and self._credits is None:
            self._cycle_start = until
            self._cycle_served = 0
        self._repace(now)
