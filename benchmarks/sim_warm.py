"""The warm benchmark's pattern on the library's pure scheduler: seconds for many seeds.

`bench_warm` runs 40 watches of 3 exports, started 0.5 s apart on one client, against a
real server whose budget never binds, three times (cold, warm, a new client given the
priors), and takes 106 s.  :func:`requests_on_scheduler` replays that pattern on the real
pure :class:`~d360_async._watch.Scheduler`: a scheduler per watch, all sharing one
:class:`~d360_async._watch.DurationModels` (as the watches of one client do), a poll sent the
moment a watch has one due and answered ``latency`` later.  :func:`warm_start` gives the
three runs' figures on the same draws, so a change to the scheduling rule can be judged over
tens of seeds before a wall-clock run.

``python -m benchmarks.sim_warm [seeds]`` prints, per seed, polls per operation and the median
detection delay of each run, then the ratio of warm (and priors) to cold over the seeds.
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass

from d360_async._core._phase import Phase
from d360_async._watch import DurationModels, PollPolicy, Scheduler

from ._harness import percentile

__all__ = ["Requests", "RunFigures", "requests_on_scheduler", "warm_start"]

PER_WATCH = 3
GAP = 0.5
LATENCY = 0.004
PENDING = (0.2, 0.5)
RUNNING = (9.8, 15.5)


@dataclass
class Requests:
    """What one run of small watches did, per export (in the order of the draws)."""

    polls: list[int]
    delays: list[float]  # when the final poll's answer arrived minus the true finish
    etas: list[tuple[float, float, float] | None]  # (seconds, low, high) at first sight
    warm_at_start: list[bool]  # its watch started with a trained join-to-finish model


@dataclass
class RunFigures:
    polls_per_op: float
    delay_p50: float


def requests_on_scheduler(
    models: DurationModels, draws: Sequence[tuple[float, float]], seed: int
) -> Requests:
    """One small watch per request, as the warm benchmark runs them, on the pure scheduler.

    Watch ``w`` starts at ``w * GAP`` with exports ``draws[3w:3w+3]``, each pending for
    ``draws[i][0]`` s then running for ``draws[i][1]`` s; all watches share ``models``.
    """
    watches = len(draws) // PER_WATCH
    scheds = [Scheduler(rng=random.Random(seed * 1000 + w), models=models) for w in range(watches)]
    n = watches * PER_WATCH
    out = Requests([0] * n, [0.0] * n, [None] * n, [False] * n)
    truth: dict[str, tuple[int, float, float]] = {}
    queue: list[tuple[float, int, int]] = [(w * GAP, 0, w) for w in range(watches)]  # 0: starts
    heapq.heapify(queue)
    kind = "export"
    while queue:
        now, started, w = heapq.heappop(queue)
        sched = scheds[w]
        if not started:
            trained = models.get(kind, None).trained
            for i in range(w * PER_WATCH, (w + 1) * PER_WATCH):
                truth[f"op{i}"] = (i, now + draws[i][0], now + draws[i][0] + draws[i][1])
                out.warm_at_start[i] = trained
                sched.add(f"op{i}", kind=kind, group="g", policy=PollPolicy(), now=now)
            heapq.heappush(queue, (now, 1, w))
            continue
        due = sched.next_due("g", now)
        if due is None:
            continue  # every export of this watch has finished
        if due > now:
            heapq.heappush(queue, (due, 1, w))
            continue
        state = sched.select("g", now)
        assert state is not None
        i, running_at, done_at = truth[state.key]
        seen = now + LATENCY / 2
        phase = (
            Phase.PENDING
            if seen < running_at
            else Phase.RUNNING
            if seen < done_at
            else Phase.SUCCEEDED
        )
        out.polls[i] += 1
        outcome = sched.observe(state, now + LATENCY, phase, phase.value)
        if outcome.previous is None:
            eta = sched.eta(state, now + LATENCY)
            out.etas[i] = None if eta is None else (eta.seconds, eta.low, eta.high)
        if outcome.final:
            out.delays[i] = now + LATENCY - done_at
        sched.release(state, now + LATENCY)
        heapq.heappush(queue, (now + LATENCY, 1, w))
    return out


def draws(seed: int, watches: int = 40) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(rng.uniform(*PENDING), rng.uniform(*RUNNING)) for _ in range(watches * PER_WATCH)]


def _figures(run: Requests, chosen: Sequence[int]) -> RunFigures:
    return RunFigures(
        sum(run.polls[i] for i in chosen) / max(1, len(chosen)),
        percentile([run.delays[i] for i in chosen], 50),
    )


def warm_start(seed: int, watches: int = 40) -> dict[str, RunFigures]:
    """`bench_warm`'s three runs on the same draws: cold, warm, priors.

    cold: the exports of the first run whose watch started before the models were trained;
    warm: a second run on the same models; priors: a third on models rebuilt from the JSON
    of the first two runs' export, as a new client given ``priors=`` would be.
    """
    run_draws = draws(seed, watches)
    models = DurationModels()
    first = requests_on_scheduler(models, run_draws, seed=1)
    cold = [i for i, warm in enumerate(first.warm_at_start) if not warm]
    given = DurationModels()
    given.absorb(json.loads(json.dumps(models.export())))
    everything = range(len(run_draws))
    return {
        "cold": _figures(first, cold),
        "warm": _figures(requests_on_scheduler(models, run_draws, seed=2), everything),
        "priors": _figures(requests_on_scheduler(given, run_draws, seed=3), everything),
    }


def _main() -> None:  # pragma: no cover - a manual comparison
    import statistics
    import sys

    seeds = [int(s) for s in sys.argv[1:]] or list(range(20))
    ratios: dict[str, list[float]] = {"warm": [], "priors": []}
    later: dict[str, list[float]] = {"warm": [], "priors": []}
    for seed in seeds:
        f = warm_start(seed)
        cold = f["cold"]
        parts = []
        for name in ("cold", "warm", "priors"):
            parts.append(f"{name} {f[name].polls_per_op:5.2f} p50 {f[name].delay_p50:.2f} s")
            if name != "cold":
                ratios[name].append(f[name].polls_per_op / cold.polls_per_op)
                later[name].append(f[name].delay_p50 - cold.delay_p50)
        print(f"seed {seed:2}: " + " | ".join(parts))
    for name in ("warm", "priors"):
        r, d = ratios[name], later[name]
        print(
            f"{name}: polls vs cold mean {statistics.mean(r):.3f}x, max {max(r):.3f}x, "
            f"above 0.5x in {sum(x > 0.5 for x in r)}/{len(r)}; delay p50 minus cold's "
            f"mean {statistics.mean(d):+.3f} s, worse in {sum(x > 0 for x in d)}/{len(d)}"
        )


if __name__ == "__main__":  # pragma: no cover
    _main()
