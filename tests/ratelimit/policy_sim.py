"""The pure budget against the fake server's pure limiter, on virtual time: no sockets, no loop.

`simulate()` runs one client (a [Budget][] with the default configuration unless told
otherwise) that always has more requests to send than the budget allows, against one policy
and header dialect of the fake server, with network latency and clock skew. It reports what
the server saw: admissions, 429s, and the share of the budget used as the benchmark measures
it ([budget_used][d360_async.testing._fake._ratelimit.budget_used]), plus how much budget
expired unspent at each window's end while the client had requests waiting.
"""

from __future__ import annotations

import heapq
import math
import random
from email.utils import formatdate

import attrs

from d360_async._core._ratelimit._budget import Budget
from d360_async._core._ratelimit._headers import parse_rate_limit
from d360_async.testing import FakeRateLimit
from d360_async.testing._fake._ratelimit import ServerRateLimiter, budget_used, rate_headers

EPOCH = 1_700_000_000.0


@attrs.define
class SimResult:
    admitted: int
    throttled: int
    share: float
    times: list[float]
    budget: Budget
    expired: list[int]
    """Per fixed window that closed during the run: what was left unspent."""

    @property
    def throttled_share(self) -> float:
        total = self.admitted + self.throttled
        return self.throttled / total if total else 0.0


def simulate(
    policy: FakeRateLimit,
    *,
    duration: float = 120.0,
    latency: tuple[float, float] = (0.002, 0.02),
    skew: float = 0.0,
    phase: float = 0.37,
    concurrency: int = 16,
    prior: tuple[float, float] = (60.0, 60.0),
    seed: int = 0,
    budget: Budget | None = None,
    change: tuple[float, FakeRateLimit] | None = None,
) -> SimResult:
    """Run one client against `policy` for `duration` virtual seconds.

    Args:
        policy: the server's policy and dialect.
        duration: virtual seconds of demand.
        latency: each way, uniformly drawn.
        skew: the server's wall clock minus the true one (its `Date` and epochs).
        phase: where in a second (and so in an aligned window) the client starts.
        concurrency: requests in flight at most.
        prior: the client's configured (limit, period).
        seed: for the latency draws.
        budget: a budget to drive instead of a fresh default one.
        change: `(at, policy)`: the server enforces `policy` from virtual time `at` on
            (a plan changed under load); what was spent is kept.
    """
    rng = random.Random(seed)
    server = ServerRateLimiter(policy, record=True)
    client = budget if budget is not None else Budget(prior[0], prior[1], now=0.0)
    events: list[tuple[float, int, str, tuple[object, ...]]] = []
    counter = 0

    def push(at: float, kind: str, *data: object) -> None:
        nonlocal counter
        counter += 1
        heapq.heappush(events, (at, counter, kind, data))

    in_flight = 0
    throttled = 0
    next_try: float | None = None
    push(0.0, "try")
    next_try = 0.0
    while events:
        now, _, kind, data = heapq.heappop(events)
        if kind == "try":
            if next_try is not None and now < next_try - 1e-12:
                continue  # superseded
            next_try = None
            while now < duration and in_flight < concurrency:
                wait = client.try_take(now, backlogged=True)
                if wait > 0.0:
                    next_try = now + wait
                    push(next_try, "try")
                    break
                in_flight += 1
                push(now + rng.uniform(*latency), "arrive", float(client.seq), now)
        elif kind == "arrive":
            if change is not None and now >= change[0] and server.config is not change[1]:
                server.reconfigure(change[1])
                policy = change[1]
            seq, sent = float(data[0]), float(data[1])  # type: ignore[arg-type]
            true_epoch = EPOCH + phase + now
            server_epoch = true_epoch + skew
            decision = server.admit("k", now, server_epoch)
            headers: dict[str, str] = {"Date": formatdate(math.floor(server_epoch), usegmt=True)}
            rate_headers(policy, decision, server_epoch, headers)
            status = 200
            if not decision.allowed:
                status = 429
                throttled += 1
                headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
            back = now + rng.uniform(*latency)
            state = parse_rate_limit(headers, now=EPOCH + phase + back)
            push(back, "answer", seq, sent, status, state)
        else:
            seq, sent, status, state = data
            in_flight -= 1
            client.record(
                status,  # type: ignore[arg-type]
                state,  # type: ignore[arg-type]
                now=now,
                sent=sent,  # type: ignore[arg-type]
                seq=int(seq),  # type: ignore[call-overload]
            )
            if now < duration and (next_try is None or next_try > now):
                next_try = now
                push(now, "try")
    times = server.admission_times("k")
    if change is not None:
        # After a change, what the new policy allowed, from a window after it on.
        settled = EPOCH + phase + change[0] + change[1].window
        use = budget_used(change[1], [at for at in times if at >= settled])
    else:
        use = budget_used(policy, times)
    return SimResult(len(times), throttled, use.share, times, client, _expired(policy, times))


def simulate_drawn(
    algorithm: str,
    dialect: str,
    limit: int,
    window: float,
    *,
    burst: int | None = None,
    reset_format: str = "epoch",
    latency: tuple[float, float] = (0.002, 0.02),
    skew: float = 0.0,
    phase: float = 0.37,
    concurrency: int = 16,
    seed: int = 0,
) -> SimResult:
    """One policy as the property test draws it, run for twelve of its windows (two minutes
    at the least)."""
    policy = FakeRateLimit(
        algorithm=algorithm,  # type: ignore[arg-type]
        limit=limit,
        window=window,
        burst=burst,
        dialect=dialect,  # type: ignore[arg-type]
        reset_format=reset_format,  # type: ignore[arg-type]
    )
    return simulate(
        policy,
        duration=max(120.0, 12 * window),
        latency=latency,
        skew=skew,
        phase=phase,
        concurrency=concurrency,
        seed=seed,
    )


def _expired(policy: FakeRateLimit, times: list[float]) -> list[int]:
    """Fixed windows only: per whole window inside the run, the budget left unspent."""
    if policy.algorithm not in ("fixed_window", "fixed_window_aligned") or len(times) < 2:
        return []
    window = policy.window
    left: list[int] = []
    if policy.algorithm == "fixed_window_aligned":
        start = math.ceil(times[0] / window) * window
        while start + window <= times[-1]:
            used = sum(1 for at in times if start <= at < start + window)
            left.append(policy.limit - used)
            start += window
        return left
    # Windows from the first request: rebuild them as the server opened them.
    index = 0
    while index < len(times):
        opened = times[index]
        used = 0
        while index < len(times) and times[index] < opened + window:
            used += 1
            index += 1
        if index < len(times):
            left.append(policy.limit - used)
    return left
