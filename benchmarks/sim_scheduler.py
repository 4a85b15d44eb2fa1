"""The library's own scheduler in the reference simulation: same draws, same budget, no I/O.

:func:`simulate_library` drives the real pure :class:`~d360_async._watch.Scheduler` the way
the watch's runner does, on a virtual clock: a perfect limiter hands out one token every
``1 / budget`` seconds; a token is spent only when the scheduler has a target worth polling
(:meth:`Scheduler.next_due` has passed), otherwise it is left idle, exactly as the oracle of
:mod:`benchmarks.floor` leaves a slot unused.  Polls are answered instantly with the phase
the operation is in at that moment.  The result is a :class:`floor.FloorResult`, so the
library, the oracle and round robin are compared on the very same draws.

``python -m benchmarks.sim_scheduler`` prints the three side by side at DESIGN.md §6's full
sizes (500 alike; 150 drive tasks + 650 exports); ``python -m benchmarks.sim_scheduler --eta``
prints the ETA calibration at first sight over ten seeds (:func:`eta_calibration`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from d360_async._core._phase import Phase
from d360_async._watch import PollPolicy, Scheduler

from . import floor

__all__ = ["FULL_WORKLOADS", "eta_calibration", "simulate_library"]

FULL_WORKLOADS: dict[str, floor.Workload] = {
    "alike": floor.Workload(
        "alike", (floor.Population("export", 500, (2.0, 20.0), (10.0, 60.0)),), 10.0
    ),
    "mixed": floor.Workload(
        "mixed",
        (
            floor.Population("drive_task", 150, (0.0, 1.0), (1.0, 5.0)),
            floor.Population("export", 650, (5.0, 20.0), (15.0, 60.0)),
        ),
        10.0,
    ),
}


def _phase_at(op: floor.SimOperation, t: float) -> Phase:
    if t < op.pending_for:
        return Phase.PENDING
    if t < op.completes_at:
        return Phase.RUNNING
    return Phase.SUCCEEDED


def simulate_library(
    workload: floor.Workload,
    operations: Sequence[floor.SimOperation],
    *,
    policy: PollPolicy | None = None,
    scheduler: Scheduler | None = None,
    seed: int = 0,
    max_time: float = 3600.0,
    window: float = 0.0,
) -> floor.FloorResult:
    """Run the library's scheduler over ``operations`` at ``workload.budget`` polls per second.

    ``window=0`` hands out tokens evenly; ``window=W`` hands out ``budget x W`` tokens at
    the start of every ``W``-second window aligned to time 0 (a fixed-window server and a
    limiter that spends each window as soon as it can).  A ``scheduler`` that already learned
    (a warm one) may be passed in.
    """
    sched = scheduler if scheduler is not None else Scheduler(rng=random.Random(seed))
    policy = policy if policy is not None else PollPolicy()
    result = floor.FloorResult(policy="library", delays={p.kind: [] for p in workload.populations})
    ops = {}
    for i, op in enumerate(operations):
        key = f"op{i}"
        ops[key] = op
        sched.add(key, kind=op.kind, group="g", policy=policy, now=0.0)
    step = 1.0 / workload.budget
    per_window = round(workload.budget * window)
    slot = 0
    left = len(ops)
    spare = 0  # tokens of the current window not spent yet
    t = -window  # the first window opens at 0
    while left:
        slot += 1
        if window:
            if spare == 0:
                t = (t // window + 1) * window
                spare = per_window
            due = sched.next_due("g")
            if due is None:
                break
            if due > t:
                if due >= (t // window + 1) * window - 1e-9:
                    spare = 0  # the rest of this window stays idle
                    continue
                t = due
            spare -= 1
        else:
            t = slot * step
            due = sched.next_due("g")
            if due is None or due > t:
                continue
        if t > max_time:
            break
        state = sched.select("g", t)
        if state is None:
            continue
        result.polls += 1
        result.poll_times.append(t)
        op = ops[state.key]
        phase = _phase_at(op, t)
        outcome = sched.observe(state, t, phase, phase.value)
        if outcome.previous is None and not outcome.final:
            eta = sched.eta(state, t)
            if eta is not None:
                inside = t + eta.low <= op.completes_at <= t + eta.high
                result.eta_inside.append(inside)
                result.eta_early += op.completes_at < t + eta.low
                result.eta_late += op.completes_at > t + eta.high
        if outcome.final:
            result.delays[op.kind].append(t - op.completes_at)
            left -= 1
        sched.release(state, t)
    result.slots = slot
    result.finished_at = slot * step
    return result


def eta_calibration(seeds: Sequence[int]) -> list[tuple[str, str, int, float, float, float]]:
    """ETA calibration of the library's scheduler at first sight, over ``seeds``.

    For each full-size workload, with evenly spaced tokens (a token bucket) and with fixed
    windows of 10 s: ``(workload, tokens, announced, inside, early, late)``, the last three
    as shares of the announced intervals (the true finish inside, before the low end, after
    the high end).  A few seconds for ten seeds: the quick way to see what a change to the
    duration models does to the figure the budget benchmark measures in ten minutes.
    """
    rows = []
    for name, workload in FULL_WORKLOADS.items():
        for tokens, window in (("even", 0.0), ("fixed 10 s", 10.0)):
            n = inside = early = late = 0
            for seed in seeds:
                ops = floor.sample_operations(workload, seed)
                res = simulate_library(workload, ops, seed=seed, window=window)
                n += len(res.eta_inside)
                inside += sum(res.eta_inside)
                early += res.eta_early
                late += res.eta_late
            if n:
                rows.append((name, tokens, n, inside / n, early / n, late / n))
    return rows


def _main() -> None:  # pragma: no cover - a manual comparison
    import sys
    import time

    from ._harness import percentile

    if sys.argv[1:2] == ["--eta"]:
        seeds = [int(s) for s in sys.argv[2:]] or list(range(10))
        print(f"ETA at first sight, 80 % interval, seeds {seeds[0]}..{seeds[-1]}:")
        for name, tokens, n, inside, early, late in eta_calibration(seeds):
            print(
                f"{name:6} {tokens:11} announced {n:5d}  inside {inside:.3f}  "
                f"early {early:.3f}  late {late:.3f}"
            )
        return
    seeds = [int(s) for s in sys.argv[1:]] or [0]
    for name, workload in FULL_WORKLOADS.items():
        for seed in seeds:
            ops = floor.sample_operations(workload, seed)
            rows = []
            for policy in ("round_robin", "oracle"):
                rows.append((policy, floor.simulate(workload, ops, policy=policy)))  # type: ignore[arg-type]
            t0 = time.perf_counter()
            rows.append(("library", simulate_library(workload, ops, seed=seed)))
            took = time.perf_counter() - t0
            rows.append(("lib fixed10", simulate_library(workload, ops, seed=seed, window=10.0)))
            rows.append(("lib fixed1", simulate_library(workload, ops, seed=seed, window=1.0)))
            for label, res in rows:
                overall = res.all_delays
                parts = [
                    f"{kind} {percentile(d, 50):5.1f}/{percentile(d, 99):5.1f}"
                    for kind, d in res.delays.items()
                ]
                eta = res.eta_inside
                calibration = f"  eta {sum(eta) / len(eta):.2f} of {len(eta)}" if eta else ""
                print(
                    f"{name:6} s{seed} {label:12} all {percentile(overall, 50):5.1f}/"
                    f"{percentile(overall, 99):5.1f}  polls {res.polls:5d}  "
                    + "  ".join(parts)
                    + calibration
                )
            print(f"  (library simulated in {took:.2f} s)")


if __name__ == "__main__":  # pragma: no cover
    _main()
