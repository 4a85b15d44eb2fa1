"""The reference floor: what a scheduler that knows the duration distributions could do.

A discrete-event simulation, pure and deterministic (no I/O, no clock).  Every operation
starts at time 0, stays pending for ``P ~ U(pending)`` seconds and runs for ``R ~ U(running)``
more, so it completes at ``C = P + R``.  The scheduler may poll once every ``1 / budget``
seconds; a poll is answered instantly with the operation's phase at that moment.

The **oracle** policy knows each population's distributions exactly and, at every poll slot,
polls the outstanding operation with the largest expected undetected time
``E[(t - C)+ | everything its polls have shown]``.  What the polls show narrows the
distribution: "still pending at s" means ``P > s``; "running at s" means ``P <= s``; "not
done at s" means ``C > s``.  Because a uniform truncated to an interval is again uniform,
``C`` given the observations is a sum of two uniforms conditioned on ``C > L``, whose
expectation has a closed form (piecewise cubic), so the simulation is exact and fast.  When
no operation can have completed yet (every expectation is zero) the slot is left unused.

The **round robin** policy polls the outstanding operations in a fixed cycle at the full
budget; it is here to check the simulation against DESIGN.md §6 (round robin about 22 s p50
on the single population, the oracle about 21 s p50 / 47 s p99).

The oracle is greedy (it maximises the expected undetected time of the next poll alone), not
optimal: on the single population it is neither reliably ahead of round robin nor behind it
(over seeds 0-7 at DESIGN.md §6's size, oracle minus round robin on the same draws is -1.6
to +1.4 s at p50 and -2.0 to +1.5 s at p99; on the budget benchmark's own draws it is
0.7 s behind at both).  A floor is therefore the better of the two, percentile by
percentile (`bench_budget` takes it so).

:func:`round_robin_at` is round robin on given poll times instead of an even budget: fed
the times a server admitted a real poller's requests, it is round robin on the very budget
that poller got (its start-up, its limiter's pace, the server's windows), so the two differ
only by the choice of which operation each request polled.

Detection delay is ``poll time - C`` for the poll that first saw the operation done.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "FloorResult",
    "Population",
    "SimOperation",
    "Workload",
    "expected_undetected",
    "round_robin_at",
    "sample_operations",
    "simulate",
]

Range = tuple[float, float]
Policy = Literal["oracle", "round_robin"]


@dataclass(frozen=True)
class Population:
    """``count`` operations of one ``kind`` with uniform pending and running durations."""

    kind: str
    count: int
    pending: Range
    running: Range


@dataclass(frozen=True)
class Workload:
    """Populations started together, polled at ``budget`` polls per second."""

    name: str
    populations: tuple[Population, ...]
    budget: float

    def population(self, kind: str) -> Population:
        for pop in self.populations:
            if pop.kind == kind:
                return pop
        raise KeyError(kind)

    @property
    def size(self) -> int:
        return sum(p.count for p in self.populations)


@dataclass(frozen=True)
class SimOperation:
    """One operation's true (hidden) lifecycle."""

    kind: str
    pending_for: float
    running_for: float

    @property
    def completes_at(self) -> float:
        return self.pending_for + self.running_for


@dataclass
class FloorResult:
    """Per-kind detection delays (seconds) and what the budget was spent on."""

    policy: str
    delays: dict[str, list[float]] = field(default_factory=dict)
    polls: int = 0
    slots: int = 0
    finished_at: float = 0.0
    poll_times: list[float] = field(default_factory=list)
    eta_inside: list[bool] = field(default_factory=list)  # library only: ETA calibration
    # library only: where the true finish fell when it was outside the announced interval
    eta_early: int = 0  # before its low end
    eta_late: int = 0  # after its high end
    undetected: int = 0  # round_robin_at with censor_at: operations never seen done

    @property
    def all_delays(self) -> list[float]:
        return [d for values in self.delays.values() for d in values]


def sample_operations(workload: Workload, seed: int = 0) -> list[SimOperation]:
    """Draw each operation's durations from its population with a seeded RNG."""
    rng = random.Random(seed)
    ops: list[SimOperation] = []
    for pop in workload.populations:
        for _ in range(pop.count):
            ops.append(SimOperation(pop.kind, rng.uniform(*pop.pending), rng.uniform(*pop.running)))
    rng.shuffle(ops)  # kinds interleaved: round robin meets them in no particular order
    return ops


# -- the closed form -------------------------------------------------------------------------

_MIN_WIDTH = 1e-6


def _sq(y: float) -> float:
    return 0.5 * y * y if y > 0.0 else 0.0


def _cube(y: float) -> float:
    return y * y * y / 6.0 if y > 0.0 else 0.0


def _uniform_sum_cdf_and_integral(
    x: float, a1: float, w1: float, a2: float, w2: float
) -> tuple[float, float]:
    """``F(x)`` and ``H(x) = integral of F up to x`` for ``U(a1, a1+w1) + U(a2, a2+w2)``.

    The density of a sum of two uniforms is a trapezoid made of four ramps; integrating
    each ramp once gives the CDF (quadratics), twice gives ``H`` (cubics).
    """
    s0, s1, s2, s3 = a1 + a2, a1 + w1 + a2, a1 + a2 + w2, a1 + w1 + a2 + w2
    norm = w1 * w2
    cdf = (_sq(x - s0) - _sq(x - s1) - _sq(x - s2) + _sq(x - s3)) / norm
    integral = (_cube(x - s0) - _cube(x - s1) - _cube(x - s2) + _cube(x - s3)) / norm
    return min(1.0, max(0.0, cdf)), max(0.0, integral)


def expected_undetected(t: float, pending: Range, running: Range, not_done_at: float) -> float:
    """``E[(t - C)+ | C > not_done_at]`` for ``C = P + R``, ``P ~ U(pending)``, ``R ~ U(running)``.

    ``E[(t-C) 1{L < C <= t}] = H(t) - H(L) - (t - L) F(L)``, divided by ``P(C > L)``.
    """
    lo = not_done_at
    if t <= lo:
        return 0.0
    a1, w1 = pending[0], max(pending[1] - pending[0], _MIN_WIDTH)
    a2, w2 = running[0], max(running[1] - running[0], _MIN_WIDTH)
    if t <= a1 + a2:
        return 0.0
    f_lo, h_lo = _uniform_sum_cdf_and_integral(lo, a1, w1, a2, w2)
    _, h_t = _uniform_sum_cdf_and_integral(t, a1, w1, a2, w2)
    survive = 1.0 - f_lo
    if survive <= 1e-12:
        # The prior says it must be done by now; the observations say it was not at ``lo``.
        # Numerically at the edge of the support: treat it as done just after ``lo``.
        return t - lo
    return max(0.0, (h_t - h_lo - (t - lo) * f_lo) / survive)


# -- the simulation --------------------------------------------------------------------------


@dataclass
class _Knowledge:
    op: SimOperation
    pending: Range  # what is known of P: the prior truncated by the polls
    running: Range
    not_done_at: float = 0.0


def simulate(
    workload: Workload,
    operations: Sequence[SimOperation] | None = None,
    *,
    policy: Policy = "oracle",
    seed: int = 0,
    max_time: float = 3600.0,
) -> FloorResult:
    """Run one policy over the workload (sampled with ``seed`` unless ``operations`` given)."""
    ops = list(operations) if operations is not None else sample_operations(workload, seed)
    outstanding = [
        _Knowledge(
            op,
            workload.population(op.kind).pending,
            workload.population(op.kind).running,
        )
        for op in ops
    ]
    result = FloorResult(policy=policy, delays={p.kind: [] for p in workload.populations})
    step = 1.0 / workload.budget
    slot = 0
    cursor = 0  # round robin position
    while outstanding:
        slot += 1
        t = slot * step
        if t > max_time:
            break
        if policy == "round_robin":
            cursor %= len(outstanding)
            index = cursor
            cursor += 1
        else:
            best, index = 0.0, -1
            for i, known in enumerate(outstanding):
                score = expected_undetected(t, known.pending, known.running, known.not_done_at)
                if score > best:
                    best, index = score, i
            if index < 0:
                continue  # nothing can have completed yet: leave the slot unused
        result.polls += 1
        result.poll_times.append(t)
        known = outstanding[index]
        op = known.op
        if op.completes_at <= t:
            result.delays[op.kind].append(t - op.completes_at)
            outstanding.pop(index)
            if policy == "round_robin":
                cursor -= 1  # the next operation slid into this position
            continue
        known.not_done_at = t
        lo, hi = known.pending
        if op.pending_for <= t:  # seen running: P <= t
            known.pending = (lo, max(lo, min(hi, t)))
        else:  # seen pending: P > t
            known.pending = (min(hi, max(lo, t)), hi)
    result.slots = slot
    result.finished_at = slot * step
    return result


def round_robin_at(
    operations: Sequence[SimOperation],
    times: Sequence[float],
    kinds: Sequence[str] = (),
    *,
    censor_at: float | None = None,
) -> FloorResult:
    """Round robin over ``operations`` (in their order), one poll at each of ``times``.

    ``times`` are seconds since the operations started, in order; polls past the moment the
    last operation was detected are not counted.  Answers are instant, as in `simulate`.
    With ``censor_at``, an operation the polls never saw done counts with its delay up to
    that moment (so fewer polls never read as a shorter delay) and in ``undetected``.
    """
    names = list(kinds) or sorted({op.kind for op in operations})
    result = FloorResult(policy="round_robin_at", delays={kind: [] for kind in names})
    outstanding = list(operations)
    cursor = 0
    for t in times:
        if not outstanding:
            break
        cursor %= len(outstanding)
        op = outstanding[cursor]
        result.polls += 1
        result.poll_times.append(t)
        if op.completes_at <= t:
            result.delays.setdefault(op.kind, []).append(t - op.completes_at)
            outstanding.pop(cursor)  # the next operation slid into this position
        else:
            cursor += 1
    if censor_at is not None:
        result.undetected = len(outstanding)
        for op in outstanding:
            result.delays.setdefault(op.kind, []).append(max(0.0, censor_at - op.completes_at))
    result.slots = len(times)
    result.finished_at = result.poll_times[-1] if result.poll_times else 0.0
    return result


def _main() -> None:  # pragma: no cover - a manual check against DESIGN.md §6
    from ._harness import percentile

    single = Workload(
        "design-single", (Population("export", 500, (2.0, 20.0), (10.0, 60.0)),), 10.0
    )
    mixed = Workload(
        "design-mixed",
        (
            Population("drive_task", 150, (0.0, 1.0), (1.0, 5.0)),
            Population("export", 650, (5.0, 20.0), (15.0, 60.0)),
        ),
        10.0,
    )
    for workload in (single, mixed):
        for policy in ("round_robin", "oracle"):
            res = simulate(workload, policy=policy)  # type: ignore[arg-type]
            parts = [
                f"{kind} p50={percentile(d, 50):.1f} p99={percentile(d, 99):.1f}"
                for kind, d in res.delays.items()
            ]
            overall = res.all_delays
            print(
                f"{workload.name:14} {policy:12} all p50={percentile(overall, 50):.1f} "
                f"p99={percentile(overall, 99):.1f}  " + "  ".join(parts)
            )


if __name__ == "__main__":  # pragma: no cover
    _main()
