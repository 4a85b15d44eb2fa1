"""Several processes sharing one budget through a log, on virtual time: the Redis limiter's
chassis (`Replica`) without Redis, sockets or an event loop.

Each simulated process has its own [Replica][] and does what `RedisRateLimiter` does: it
appends an attempt, reads the log up to it (one round trip to the "Redis" here, which stamps
each line with the true time), sends the request when its attempt was granted, appends the
answer, and between attempts sleeps as long as its replica says (at most `max_sleep`). The
server is the fake server's pure limiter, as in `policy_sim`.
"""

from __future__ import annotations

import heapq
import math
import random
from email.utils import formatdate

import attrs

from d360_async._core._ratelimit._budget import Budget
from d360_async._core._ratelimit._headers import parse_rate_limit
from d360_async._core._ratelimit._ledger import ATTEMPT, Replica, Take, encode_record
from d360_async.testing import FakeRateLimit
from d360_async.testing._fake._ratelimit import ServerRateLimiter, budget_used, rate_headers

EPOCH = 1_700_000_000.0


@attrs.define
class Log:
    """The Redis side: one list of stamped lines."""

    lines: list[str] = attrs.Factory(list)

    def call(self, now: float, replica: Replica, event: str = "") -> Take | None:
        asked = replica.next_index
        mine = None
        if event:
            self.lines.append(f"{now!r} {event}")
            mine = len(self.lines) - 1
        return replica.ingest(
            "e", 0, self.lines[asked:], asked_from=asked, asked_epoch=replica.epoch, mine=mine
        )


@attrs.define
class LedgerResult:
    admitted: int
    throttled: int
    share: float
    replicas: list[Replica]
    log: Log


def simulate_shared(
    policy: FakeRateLimit,
    *,
    processes: int = 4,
    duration: float = 120.0,
    latency: tuple[float, float] = (0.002, 0.02),
    rtt: tuple[float, float] = (0.0002, 0.001),
    concurrency: int = 8,
    prior: tuple[float, float] = (60.0, 60.0),
    max_sleep: float = 1.0,
    seed: int = 0,
) -> LedgerResult:
    """Run `processes` processes, each with more demand than the budget, for `duration`."""
    rng = random.Random(seed)
    server = ServerRateLimiter(policy, record=True)
    log = Log()
    replicas = [
        Replica(lambda now: Budget(prior[0], prior[1], now=now), in_flight_timeout=300.0)
        for _ in range(processes)
    ]
    in_flight = [0] * processes
    events: list[tuple[float, int, str, int, tuple[object, ...]]] = []
    counter = 0
    throttled = 0

    def push(at: float, kind: str, who: int, *data: object) -> None:
        nonlocal counter
        counter += 1
        heapq.heappush(events, (at, counter, kind, who, data))

    # `generation` drops superseded wake-ups; `fresh`: the replica was read just before.
    generation = [0] * processes

    def schedule(who: int, at: float, fresh: bool) -> None:
        generation[who] += 1
        push(at, "wake", who, generation[who], fresh)

    for who in range(processes):
        schedule(who, rng.uniform(0.0, 0.01), False)

    while events:
        now, _, kind, who, data = heapq.heappop(events)
        replica = replicas[who]
        if kind == "wake":
            if data[0] != generation[who] or now >= duration or in_flight[who] >= concurrency:
                continue
            wait = replica.wait_time(now)
            if data[1] and wait > 0.0:
                schedule(who, now + min(wait, max_sleep) + rng.uniform(0.0, 0.001), False)
                continue
            # One round trip: the attempt is stamped halfway.
            push(now + rng.uniform(*rtt) / 2, "attempt", who)
        elif kind == "attempt":
            take = log.call(now, replica, ATTEMPT)
            back = now + rng.uniform(*rtt) / 2
            if take is None:
                wait = max(0.002, min(replica.wait_time(back), max_sleep))
                schedule(who, back + wait, False)
                continue
            in_flight[who] += 1
            push(back + rng.uniform(*latency), "arrive", who, take)
            schedule(who, back, True)
        elif kind == "arrive":
            take = data[0]
            true_epoch = EPOCH + now
            decision = server.admit("k", now, true_epoch)
            headers: dict[str, str] = {"Date": formatdate(math.floor(true_epoch), usegmt=True)}
            rate_headers(policy, decision, true_epoch, headers)
            status = 200
            if not decision.allowed:
                status = 429
                throttled += 1
                headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
            back = now + rng.uniform(*latency)
            state = parse_rate_limit(headers, now=EPOCH + back)
            push(back + rng.uniform(*rtt) / 2, "record", who, take, status, state)
        else:  # record
            take, status, state = data
            in_flight[who] -= 1
            record = encode_record(take.id, status, state)  # type: ignore[attr-defined, arg-type]
            log.call(now, replica, record)
            if now < duration:
                schedule(who, now + rng.uniform(*rtt) / 2, True)
    for replica in replicas:
        log.call(duration + 1.0, replica)  # everyone reads to the end
    times = server.admission_times("k")
    use = budget_used(policy, times)
    return LedgerResult(len(times), throttled, use.share, replicas, log)


def _matrix(processes: int, seeds: int = 3) -> None:
    """Print the worst share over `seeds` runs, shared by `processes` and alone, per cell."""
    from policy_sim import simulate

    families = {
        "fixed window aligned 100/10 s": {"algorithm": "fixed_window_aligned", "limit": 100},
        "fixed window from first 60/10 s": {"algorithm": "fixed_window", "limit": 60},
        "sliding window 100/10 s": {"algorithm": "sliding_window", "limit": 100},
        "token bucket 20 + 10/s": {"algorithm": "token_bucket", "limit": 10, "burst": 20},
        "sliding counter 100/10 s": {"algorithm": "sliding_counter", "limit": 100},
    }
    dialects = ["x-ratelimit", "vendor_page", "remaining_only", "ietf", "gateway"]
    print(f"{'':34}" + "".join(f"{d:>22}" for d in dialects))
    for name, kw in families.items():
        window = 1.0 if kw["algorithm"] == "token_bucket" else 10.0
        cells = []
        for dialect in dialects:
            policy = FakeRateLimit(window=window, dialect=dialect, **kw)  # type: ignore[arg-type]
            runs = [
                simulate_shared(policy, processes=processes, duration=150.0, seed=s)
                for s in range(seeds)
            ]
            shared = min(run.share for run in runs)
            throttled = sum(run.throttled for run in runs)
            alone = min(simulate(policy, duration=150.0, seed=s).share for s in range(seeds))
            refused = f", {throttled} 429s" if throttled else ""
            cells.append(f"{shared:.2f} (alone {alone:.2f}{refused})")
        print(f"{name:34}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":  # python tests/ratelimit/ledger_sim.py [processes]
    import sys

    _matrix(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
