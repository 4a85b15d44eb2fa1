"""The fake server's rate limiter and its headers: pure arithmetic, time passed in.

Every policy of [FakeRateLimit][d360_async.testing.FakeRateLimit] is one small state machine
per key; [ServerRateLimiter.admit][d360_async.testing._fake._ratelimit.ServerRateLimiter.admit]
spends one request and says what the server would announce. [rate_headers][] writes that
decision in one of the header dialects. [budget_used][] is the ground truth the benchmarks
report: what share of what the policy allowed a client actually spent.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Sequence

import attrs

from ._config import FakeRateLimit

__all__ = ["BudgetUse", "RateDecision", "ServerRateLimiter", "budget_used", "rate_headers"]

_EPS = 1e-9


@attrs.frozen(slots=True)
class RateDecision:
    """The limiter's answer for one request.

    Attributes:
        allowed: whether the request is admitted (else: 429).
        limit: the policy's capacity (`burst` for a token bucket, else `limit`).
        remaining: requests left after this one (0 when refused), whole.
        reset_after: seconds until the budget is back to `limit` (the window's end, the time
            the bucket is full again, or the time the newest counted request leaves a sliding
            window).
        retry_after: seconds until a request would be admitted (0 when admitted now and
            more is left; otherwise when the next unit of budget frees).
        window: the policy's window in seconds (announced by the IETF dialect).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float
    window: float = 0.0


class _Key:
    """One key's state: its counter, bucket or log, and (when recorded) admission times."""

    __slots__ = ("count", "end", "log", "previous", "times", "tokens", "updated", "window_index")

    def __init__(self) -> None:
        self.count = 0
        self.previous = 0  # sliding counter: the previous aligned window's count
        self.end = -math.inf  # fixed windows: when the current window closes
        self.tokens = 0.0
        self.updated = 0.0
        self.log: deque[float] = deque()
        self.times: list[float] = []
        self.window_index = -1


class ServerRateLimiter:
    """One budget per key under one [FakeRateLimit][d360_async.testing.FakeRateLimit] policy.

    Admission is O(1) amortised for every algorithm (the sliding log holds at most `limit`
    times per key).

    Args:
        config: the policy.
        record: keep every admission time per key, for [budget_used][].
    """

    __slots__ = ("_config", "_keys", "_rate", "record")

    def __init__(self, config: FakeRateLimit, *, record: bool = False) -> None:
        self._config = config
        self._rate = config.limit / config.window
        self._keys: dict[Hashable, _Key] = {}
        self.record = record

    @property
    def config(self) -> FakeRateLimit:
        """The policy this limiter enforces."""
        return self._config

    def reset(self) -> None:
        """Forget every key (every budget is full again)."""
        self._keys.clear()

    def reconfigure(self, config: FakeRateLimit) -> None:
        """Enforce `config` from now on, as a plan changed or a gateway retuned under load
        does: what each key spent is kept (a count above a lowered limit leaves no room until
        it has gone), a bucket keeps its tokens up to its new size, and admission times
        already recorded stay."""
        self._config = config
        self._rate = config.limit / config.window
        for state in self._keys.values():
            state.tokens = min(state.tokens, float(config.capacity))

    def admission_times(self, key: Hashable) -> list[float]:
        """The (epoch) times `key` was admitted at, when recording."""
        state = self._keys.get(key)
        return [] if state is None else list(state.times)

    def budget_keys(self) -> list[Hashable]:
        """Every key seen since the last reset."""
        return list(self._keys)

    def admit(self, key: Hashable, now: float, epoch: float | None = None) -> RateDecision:
        """Spend one request of `key`'s budget at time `now`, if there is one.

        Args:
            key: the budget.
            now: the server's clock.
            epoch: the server's wall clock at `now` (windows aligned to the clock use it);
                defaults to `now`.
        """
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _Key()
            state.tokens = float(self._config.capacity)
            state.updated = now
        at = now if epoch is None else epoch
        algorithm = self._config.algorithm
        if algorithm == "token_bucket":
            decision = self._token_bucket(state, now)
        elif algorithm == "sliding_window":
            decision = self._sliding(state, now)
        elif algorithm == "sliding_counter":
            decision = self._sliding_counter(state, now, at)
        else:
            decision = self._fixed(state, now, at, aligned=algorithm == "fixed_window_aligned")
        if decision.allowed and self.record:
            state.times.append(at)
        return decision

    def _fixed(self, state: _Key, now: float, epoch: float, *, aligned: bool) -> RateDecision:
        config = self._config
        limit, window = config.limit, config.window
        if aligned:
            # Windows are [k*window, (k+1)*window) on the server's wall clock; the window's
            # number is compared, not its end (epochs are too large for a float tolerance).
            index = math.floor(epoch / window)
            if index != state.window_index:
                state.window_index = index
                state.count = 0
            state.end = now + ((index + 1.0) * window - epoch)
        elif now >= state.end:
            # The window opens with the first request after the previous one closed.
            state.count = 0
            state.end = now + window
        reset_after = max(0.0, state.end - now)
        if state.count < limit:
            state.count += 1
            left = limit - state.count
            return RateDecision(
                True, limit, left, reset_after, 0.0 if left else reset_after, window
            )
        return RateDecision(False, limit, 0, reset_after, reset_after, window)

    def _sliding(self, state: _Key, now: float) -> RateDecision:
        config = self._config
        limit, window = config.limit, config.window
        log = state.log
        while log and log[0] <= now - window:
            log.popleft()
        if len(log) < limit:
            log.append(now)
            left = limit - len(log)
            retry = 0.0 if left else log[0] + window - now
            return RateDecision(True, limit, left, log[-1] + window - now, retry, window)
        # Room comes once all but `limit - 1` have left (more than `limit` are logged when
        # the limit was lowered since).
        leaves = log[len(log) - limit] + window - now
        return RateDecision(False, limit, 0, log[-1] + window - now, leaves, window)

    def _sliding_counter(self, state: _Key, now: float, epoch: float) -> RateDecision:
        config = self._config
        limit, window = config.limit, config.window
        index = math.floor(epoch / window)
        if index != state.window_index:
            # The window moved on: the one that closed is the previous one only if it was
            # the window just before (a gap of a whole window forgets it).
            state.previous = state.count if index == state.window_index + 1 else 0
            state.count = 0
            state.window_index = index
        into = epoch / window - index  # share of the current window gone by
        weight = 1.0 - into  # share of the previous window still inside the last `window`
        counted = state.previous * weight + state.count
        reset_after = (index + 1.0) * window - epoch
        if counted + 1.0 <= limit + _EPS:
            state.count += 1
            left = max(0, math.floor(limit - counted - 1.0 + _EPS))
            retry = 0.0 if left else self._counter_retry(state, counted + 1.0, into)
            return RateDecision(True, limit, left, reset_after, retry, window)
        return RateDecision(
            False, limit, 0, reset_after, self._counter_retry(state, counted, into), window
        )

    def _counter_retry(self, state: _Key, counted: float, into: float) -> float:
        """Seconds until the weighted count leaves room for one more request."""
        config = self._config
        limit, window = config.limit, config.window
        excess = counted + 1.0 - limit
        if excess <= _EPS:
            return 0.0
        if state.previous > 0:
            # The previous window's weight falls by `previous` per window of time.
            fade = excess / state.previous
            if into + fade <= 1.0:
                return fade * window
        # Not before the next window, where this window's count is the one that fades.
        rest = (1.0 - into) * window
        if state.count <= 0:
            return rest
        needed = (state.count + 1.0 - limit) / state.count
        return rest + max(0.0, needed) * window

    def _token_bucket(self, state: _Key, now: float) -> RateDecision:
        capacity = float(self._config.capacity)
        rate = self._rate
        tokens = min(capacity, state.tokens + max(0.0, now - state.updated) * rate)
        state.updated = max(state.updated, now)
        window = self._config.window
        if tokens >= 1.0 - _EPS:
            tokens = max(0.0, tokens - 1.0)
            state.tokens = tokens
            left = math.floor(tokens + _EPS)
            retry = 0.0 if left else (1.0 - tokens) / rate
            return RateDecision(
                True, int(capacity), left, (capacity - tokens) / rate, retry, window
            )
        state.tokens = tokens
        return RateDecision(
            False, int(capacity), 0, (capacity - tokens) / rate, (1.0 - tokens) / rate, window
        )


def _ceil(seconds: float) -> int:
    """Whole seconds, rounded up (a wait announced shorter than it is would be a lie)."""
    return max(0, math.ceil(seconds - 1e-6))


def rate_headers(
    config: FakeRateLimit, decision: RateDecision, epoch: float, headers: dict[str, str]
) -> None:
    """Write `decision` into `headers` in the dialect of `config` (see `FakeRateLimit`).

    Args:
        config: the policy and its dialect.
        decision: what the limiter decided for this request.
        epoch: the server's wall clock now (for epoch resets).
        headers: the response headers, updated in place.
    """
    dialect = "none" if not config.headers else config.dialect
    if dialect == "none":
        return
    remaining = str(decision.remaining)
    if dialect == "ietf":
        # A bucket's quota is its burst, over the time the burst takes to come back.
        window = _ceil(decision.window * decision.limit / config.limit)
        headers["RateLimit-Policy"] = f'"default";q={decision.limit};w={window}'
        headers["RateLimit"] = f'"default";r={remaining};t={_ceil(decision.reset_after)}'
        return
    headers["X-RateLimit-Remaining"] = remaining
    if dialect == "remaining_only":
        return
    if dialect == "gateway":
        headers["X-RateLimit-Limit"] = str(decision.limit)
        next_token = 0.0 if decision.remaining > 0 else decision.retry_after
        headers["X-RateLimit-Reset"] = str(_ceil(next_token))
        return
    if dialect == "github":
        headers["X-RateLimit-Limit"] = str(decision.limit)
        headers["X-RateLimit-Used"] = str(decision.limit - decision.remaining)
        headers["X-RateLimit-Reset"] = str(_ceil(epoch + decision.reset_after))
        return
    if dialect == "vendor_page":
        if decision.remaining == 0:
            headers["X-RateLimit-Limit"] = str(decision.limit)
            headers["X-RateLimit-Reset"] = str(_ceil(decision.reset_after))
        return
    # "x-ratelimit": the classic fields, as configured.
    if config.send_limit_and_reset == "always" or decision.remaining == 0:
        headers["X-RateLimit-Limit"] = str(decision.limit)
        if config.reset_format == "delay":
            reset = _ceil(decision.reset_after)
        else:
            reset = _ceil(epoch + decision.reset_after)
        headers["X-RateLimit-Reset"] = str(reset)


@attrs.frozen(slots=True)
class BudgetUse:
    """How much of what a policy allowed a client spent, over the whole windows it was busy.

    Attributes:
        admitted: requests admitted inside the measured span.
        allowed: the most the policy would have admitted inside that span.
        start: the span's start (epoch seconds).
        end: the span's end.
    """

    admitted: int
    allowed: float
    start: float
    end: float

    @property
    def share(self) -> float:
        """`admitted / allowed` (1.0 when nothing was allowed)."""
        return self.admitted / self.allowed if self.allowed > 0 else 1.0


def budget_used(config: FakeRateLimit, times: Sequence[float]) -> BudgetUse:
    """The share of the budget a client spent, measured from the server's side.

    The span is chosen so that a client that spreads its requests is not penalised for where
    the measurement starts or stops: end effects are left out, waste inside is not.

    - Fixed windows aligned to the clock, and sliding counters (over the same windows): the
      whole windows between the first and the last admission; each allowed `limit` (a
      counter admits no more than `limit` in a window: its weighted count includes them all).
    - Fixed windows from the first request, and sliding windows: whole windows of `window`
      seconds counted from the first admission (a greedy client would open one at each of
      those times), up to the last admission; each allowed `limit`. Gaps between the
      server's windows count as lost budget.
    - A token bucket: from the first admission to the last; allowed is the full bucket at the
      start plus the refill since (`burst + rate * span`).

    Args:
        config: the policy.
        times: admission times of one key (epoch seconds, as
            [ServerRateLimiter.admission_times][d360_async.testing._fake._ratelimit.ServerRateLimiter.admission_times]
            returns them), in order.
    """
    if len(times) < 2:
        return BudgetUse(len(times), float(config.capacity), 0.0, 0.0)
    first, last = times[0], times[-1]
    window = config.window
    if config.algorithm == "token_bucket":
        allowed = config.capacity + config.sustained_rate * (last - first)
        return BudgetUse(len(times), allowed, first, last)
    if config.algorithm in ("fixed_window_aligned", "sliding_counter"):
        start = math.ceil(first / window - _EPS) * window
    else:
        start = first
    whole = math.floor((last - start) / window + _EPS)
    if whole < 1:
        return BudgetUse(len(times), float(config.limit), first, last)
    end = start + whole * window
    admitted = sum(1 for at in times if start - _EPS <= at < end - _EPS)
    return BudgetUse(admitted, float(whole * config.limit), start, end)
