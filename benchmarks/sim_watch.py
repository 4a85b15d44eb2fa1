"""The library's real watch in virtual time: the whole stack, the same draws, seconds to run.

:func:`watch_in_virtual_time` runs ``client.watch`` (transport, limiter, scheduler, watch) against
an in-process :class:`~d360_async.testing.FakeDocument360` with the rate limit of either
server type of ``bench_budget`` (fixed windows aligned to the clock, or a token bucket), both
on one :class:`~d360_async.testing.ManualClock`: nothing sleeps, so the 500-export workload
takes under a second of CPU instead of a hundred seconds of wall time, and the result is
exact and repeatable.  The fake is seeded as ``bench_budget`` seeds its servers, so the
durations are the ones the real benchmark draws.

What it answers, on the very same draws:

* **the watch** (virtual time): what the library does when the machine is never late;
* **round robin on the watch's own admitted requests** (`floor.round_robin_at` on the
  server's admission log): the same budget, spent in a fixed cycle; the difference from the
  watch is the scheduler's choice of targets alone;
* **round robin on a perfect budget** (`floor.simulate`): one token every 1 / budget seconds
  from the start; the difference from the previous row is what the limiter's pace (and the
  server's windows) cost.

``python -m benchmarks.sim_watch [seed ...]`` prints the three (and the oracle) for the alike
workload on both server types; ``python -m benchmarks.sim_watch --spread [N]`` prints, per
server type, how far the watch is behind round robin on a perfect budget at p50 and p99 over
seeds ``0..N-1`` (12 by default): the distribution of the difference, not one draw of it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from . import floor
from ._harness import percentile

__all__ = ["VirtualRun", "run_in_virtual_time", "watch_in_virtual_time"]


@dataclass
class VirtualRun:
    """One watch run on the virtual clock, in seconds since the operations started."""

    operations: list[floor.SimOperation]  # in the order the watch was given them
    delays: dict[str, list[float]] = field(default_factory=dict)
    admitted: list[float] = field(default_factory=list)  # times the server admitted a request
    requests: int = 0
    rate_limited: int = 0
    idle_budget: float = 0.0  # requests' worth of budget the watch left idle (its stats)
    ended_at: float = 0.0  # when the watch had seen every operation end

    @property
    def all_delays(self) -> list[float]:
        return [d for values in self.delays.values() for d in values]


async def watch_in_virtual_time(
    workload: floor.Workload,
    server: str,
    *,
    seed: int | None = None,
    latency: float | tuple[float, float] | None = None,
) -> VirtualRun:
    """Watch ``workload`` to the end against ``bench_budget``'s ``server`` type, on a virtual clock.

    ``seed`` (default ``bench_budget.SEED``) seeds the fake's lifecycles and the order the
    targets are given in; ``latency`` (default ``bench_budget.LATENCY``) is waited on the
    virtual clock.
    """
    from d360_async import TargetKind
    from d360_async._limiters import RateLimitConfig
    from d360_async.testing import FakeDocument360, ManualClock

    from . import bench_budget
    from ._harness import client_class

    seed = bench_budget.SEED if seed is None else seed
    latency = bench_budget.LATENCY if latency is None else latency
    clock = ManualClock()
    detected: dict[str, float] = {}
    fake = FakeDocument360(
        clock=clock, rate_limit=bench_budget.servers()[server], latency=latency, seed=seed
    )
    async with fake:
        start = clock.now
        ops: list[tuple[str, str]] = []
        for pop in workload.populations:
            ids = fake.seed(
                TargetKind.parse(pop.kind),
                pop.count,
                pending=pop.pending,
                running=pop.running,
                start=start,
            )
            ops += [(op_id, pop.kind) for op_id in ids]
        import random

        random.Random(seed).shuffle(ops)
        client = client_class()(
            api_token=fake.api_token,
            base_url=fake.url,
            clock=clock,
            rate_limit=RateLimitConfig(rate=workload.budget, period=1.0),
        )
        async with client:
            targets = []
            by_key: dict[str, str] = {}
            for op_id, kind in ops:
                resource: Any = client.exports if kind == "export" else client.drive
                target = resource.target(fake.project_id, op_id)
                targets.append(target)
                by_key[target.key] = op_id

            async def consume() -> float:
                async with client.watch(targets) as watch:
                    async for transition in watch:
                        if transition.phase.is_terminal:
                            detected.setdefault(by_key[transition.target.key], clock.now)
                    return watch.stats().idle_budget

            idle = await clock.run(consume())
        run = VirtualRun(
            operations=[],
            delays={p.kind: [] for p in workload.populations},
            admitted=[t - start for t in fake.stats.admitted_times],
            requests=fake.stats.requests,
            rate_limited=fake.stats.rate_limited,
            idle_budget=idle,
            ended_at=clock.now - start,
        )
        for op_id, kind in ops:
            truth = fake.operation(op_id)
            run.operations.append(
                floor.SimOperation(
                    kind, truth.running_at - truth.started_at, truth.finished_at - truth.running_at
                )
            )
            run.delays[kind].append(detected[op_id] - truth.finished_at)
    return run


def run_in_virtual_time(
    workload: floor.Workload, server: str, *, seed: int | None = None
) -> VirtualRun:
    """`watch_in_virtual_time` in a fresh event loop."""
    return asyncio.run(watch_in_virtual_time(workload, server, seed=seed))


def _spread(workload: floor.Workload, seeds: range) -> None:  # pragma: no cover - manual
    import statistics

    from . import bench_budget

    for server in bench_budget.servers():
        behind: dict[int, list[float]] = {50: [], 99: []}
        for seed in seeds:
            run = run_in_virtual_time(workload, server, seed=seed)
            perfect = floor.simulate(workload, run.operations, policy="round_robin").all_delays
            own = floor.round_robin_at(run.operations, run.admitted).all_delays
            row = []
            for q in (50, 99):
                behind[q].append(percentile(run.all_delays, q) - percentile(perfect, q))
                vs_own = percentile(run.all_delays, q) - percentile(own, q)
                row.append(f"p{q} {behind[q][-1]:+.2f} s (vs its admitted requests {vs_own:+.2f})")
            print(
                f"{server} seed {seed:2}: watch - round robin on a perfect budget: "
                + ", ".join(row)
            )
        for q, d in behind.items():
            print(
                f"{server} p{q}: mean {statistics.mean(d):+.2f} s, median "
                f"{statistics.median(d):+.2f} s, {min(d):+.2f}..{max(d):+.2f} s; behind on "
                f"{sum(x > 0 for x in d)} of {len(d)} seeds"
            )


def _main() -> None:  # pragma: no cover - a manual comparison
    import sys
    import time

    from . import bench_budget

    workload = bench_budget.WORKLOADS["single"]
    if sys.argv[1:2] == ["--spread"]:
        _spread(workload, range(int(sys.argv[2]) if sys.argv[2:] else 12))
        return
    seeds = [int(s) for s in sys.argv[1:]] or [bench_budget.SEED]
    for seed in seeds:
        for server in bench_budget.servers():
            t0 = time.perf_counter()
            run = run_in_virtual_time(workload, server, seed=seed)
            took = time.perf_counter() - t0
            rows = [
                ("watch (virtual time)", run.all_delays),
                (
                    "round robin, its admitted requests",
                    floor.round_robin_at(run.operations, run.admitted).all_delays,
                ),
                (
                    "round robin, perfect budget",
                    floor.simulate(workload, run.operations, policy="round_robin").all_delays,
                ),
                (
                    "oracle, perfect budget",
                    floor.simulate(workload, run.operations, policy="oracle").all_delays,
                ),
            ]
            print(
                f"seed {seed} {server}: {run.requests} requests, {run.rate_limited} 429s, "
                f"idle budget {run.idle_budget:.1f}, {took:.2f} s"
            )
            for label, delays in rows:
                print(
                    f"  {label:36} p50 {percentile(delays, 50):5.2f}  "
                    f"p99 {percentile(delays, 99):5.2f}  mean {sum(delays) / len(delays):5.2f}"
                )


if __name__ == "__main__":  # pragma: no cover
    _main()
