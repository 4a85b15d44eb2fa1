"""``d360-async demo``: hundreds of operations watched on a local fake, within its budget.

The demo starts [FakeDocument360][d360_async.testing.FakeDocument360] on 127.0.0.1 with a rate limit
that genuinely binds, starts V3 exports through the real client (``POST``, 202), seeds V3 drive
tasks and V2 file deletions (the vendor has no endpoint to create those), and watches them all
at once.  Every request goes over HTTP through the library's limiter; the fake counts what it
served, so the summary can show that no 429 was needed and how late each finish was noticed
(detection delay: when the watch reported the terminal status, minus when the operation really
ended on the server).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from typing import Any, Final

import attrs

from d360_async import D360Error, PollPolicy, Target, TargetKind, Transition, TransitionKind

from ._commands import Adder, budget_figures, watch_targets
from ._display import Display, SummaryTable, choose_display, format_duration
from ._exit import ExitCode, describe_error
from ._jsonl import JsonLines
from ._options import DEMO_BUDGET, RateSpec
from ._tally import Tally, percentile

__all__ = [
    "DEFAULT_BUDGET",
    "DemoPlan",
    "demo_exit_code",
    "lifecycle_scale",
    "plan_demo",
    "run_demo",
]

DEFAULT_BUDGET: Final = DEMO_BUDGET
"""The demo's budget (see `DEMO_BUDGET`)."""

_FAST_SCALE: Final = 0.05
# The lifecycles below are sized for this many operations; fewer operations get shorter
# lifecycles in proportion (down to a tenth), so a small demo is a quick one.
_FULL_COUNT: Final = 500
_MIN_COUNT_SCALE: Final = 0.1
_CREATE_CONCURRENCY: Final = 32
_WORKSPACE: Final = "demo-workspace"


@attrs.frozen(slots=True)
class Population:
    """One kind of operation in the demo and its lifecycle (seconds, before scaling)."""

    group: TargetKind
    share: float
    pending: tuple[float, float]
    running: tuple[float, float]


# Quick drive tasks among slow exports: the mixed case where a scheduler that learns durations
# per kind earns its keep (see docs/watching.md).
POPULATIONS: Final[tuple[Population, ...]] = (
    Population(TargetKind.V3_EXPORT, 0.6, pending=(2.0, 10.0), running=(5.0, 35.0)),
    Population(TargetKind.V3_DRIVE_TASK, 0.2, pending=(0.5, 2.0), running=(1.0, 6.0)),
    Population(TargetKind.V2_DELETE_FILE, 0.2, pending=(1.0, 4.0), running=(2.0, 15.0)),
)
FAILURE_RATIO: Final = 0.04


@attrs.frozen(slots=True)
class DemoPlan:
    """How many operations of each population, the budget and the time scale."""

    counts: tuple[tuple[Population, int], ...]
    budget: RateSpec
    scale: float
    seed: int

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)

    def scaled(self, span: tuple[float, float]) -> tuple[float, float]:
        return (span[0] * self.scale, span[1] * self.scale)


def lifecycle_scale(count: int) -> float:
    """How much the lifecycles shrink for a demo of ``count`` operations.

    At 500 operations and more the lifecycles are as declared (a bigger demo then takes longer
    because the budget binds); below, they shrink in proportion, to a tenth at 50 or fewer, so
    the run's duration follows ``--count`` instead of being set by the slowest export.
    """
    return min(1.0, max(_MIN_COUNT_SCALE, count / _FULL_COUNT))


def plan_demo(count: int, *, budget: RateSpec, scale: float, seed: int) -> DemoPlan:
    """Split ``count`` operations between the populations (largest remainder)."""
    shares = [count * p.share for p in POPULATIONS]
    counts = [int(share) for share in shares]
    left = count - sum(counts)
    order = sorted(range(len(shares)), key=lambda i: shares[i] - counts[i], reverse=True)
    for i in order[:left]:
        counts[i] += 1
    return DemoPlan(
        counts=tuple(zip(POPULATIONS, counts, strict=True)),
        budget=budget,
        scale=scale,
        seed=seed,
    )


class _Delays:
    """Detection delay per group: when the watch reported an end minus when it happened."""

    def __init__(self, fake: Any, groups: dict[str, str]) -> None:
        self._fake = fake
        self._groups = groups  # target key -> group
        self._ids: dict[str, str] = {}
        self.by_group: dict[str, list[float]] = {}

    def register(self, key: str, op_id: str) -> None:
        self._ids[key] = op_id

    def __call__(self, transition: Transition[Any], now: float) -> None:
        if transition.kind is not TransitionKind.CHANGED or not transition.phase.is_terminal:
            return
        op_id = self._ids.get(transition.target.key)
        if op_id is None:
            return
        finished = self._fake.operation(op_id).finished_at
        delay = transition.observed_at.timestamp() - self._fake.epoch(finished)
        group = self._groups.get(transition.target.key, "?")
        self.by_group.setdefault(group, []).append(max(0.0, delay))

    def all(self) -> list[float]:
        return [d for values in self.by_group.values() for d in values]


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


def _summary(
    tally: Tally, delays: _Delays, fake: Any, plan: DemoPlan, elapsed: float
) -> SummaryTable:
    rows: list[tuple[str, ...]] = []
    for group in tally.groups():
        records = [r for r in tally.records if r.group == group]
        out = tally.by_outcome(group)
        values = delays.by_group.get(group, [])
        rows.append(
            (
                group,
                str(len(records)),
                str(out["succeeded"]),
                str(out["failed"] + out["cancelled"]),
                str(out["error"] + out["timed_out"] + out["open"]),
                f"{sum(r.polls for r in records) / max(1, len(records)):.1f}",
                _fmt(percentile(values, 0.5)),
                _fmt(percentile(values, 0.99)),
            )
        )
    every = delays.all()
    total = tally.by_outcome()
    rows.append(
        (
            "all",
            str(tally.total),
            str(total["succeeded"]),
            str(total["failed"] + total["cancelled"]),
            str(total["error"] + total["timed_out"] + total["open"]),
            f"{tally.polls / max(1, tally.total):.1f}",
            _fmt(percentile(every, 0.5)),
            _fmt(percentile(every, 0.99)),
        )
    )
    stats = fake.stats
    per_second = stats.requests / elapsed if elapsed > 0 else 0.0
    footer = (
        f"{stats.requests} requests served in {format_duration(elapsed)} "
        f"({per_second:.1f}/s; budget {plan.budget} per token), "
        f"{stats.rate_limited} answered 429",
        f"failed = reported failed by the server (the fake fails {FAILURE_RATIO:.0%} on "
        "purpose); errors = could not be watched to the end",
        "detection delay = when the watch reported the end - when the server finished it",
    )
    return SummaryTable(
        title=f"d360-async demo: {tally.done}/{tally.total} operations watched to the end",
        headers=(
            "kind",
            "ops",
            "succeeded",
            "failed",
            "errors",
            "polls/op",
            "delay p50",
            "delay p99",
        ),
        rows=tuple(rows),
        footer=footer,
    )


async def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; the exit code is 0 when every operation was watched to its end."""
    from d360_async import Client, RateLimitConfig
    from d360_async.testing import FakeDocument360, FakeLifecycle, FakeRateLimit

    budget: RateSpec = args.rate_limit or DEFAULT_BUDGET
    # --fast (tests) is a fixed shrink; otherwise the lifecycles follow --count.
    scale = float(args.time_scale) * (_FAST_SCALE if args.fast else lifecycle_scale(args.count))
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    plan = plan_demo(args.count, budget=budget, scale=scale, seed=seed)
    json_out = JsonLines(sys.stdout) if args.json else None
    display = choose_display(json_output=args.json, stream=sys.stdout, warn=sys.stderr)
    populations = dict((p.group, (p, n)) for p, n in plan.counts)
    export_pop, export_count = populations[TargetKind.V3_EXPORT]

    fake = FakeDocument360(
        rate_limit=FakeRateLimit(limit=max(1, round(budget.requests)), window=budget.period),
        lifecycle=FakeLifecycle(
            pending=plan.scaled(export_pop.pending),
            running=plan.scaled(export_pop.running),
            failure_ratio=FAILURE_RATIO,
        ),
        seed=seed,
    )
    limit = RateLimitConfig(rate=budget.requests, period=budget.period)
    _intro(display, json_out, plan)
    started = time.monotonic()
    async with (
        fake,
        Client(
            api_token=fake.api_token,
            v2_api_token=fake.v2_api_token,
            base_url=fake.url,
            rate_limit=limit,
        ) as client,
    ):
        groups: dict[str, str] = {}
        delays = _Delays(fake, groups)
        seeded: list[tuple[Target[Any], str, str]] = []
        for group in (TargetKind.V3_DRIVE_TASK, TargetKind.V2_DELETE_FILE):
            pop, n = populations[group]
            ids = fake.seed(
                group,
                n,
                pending=plan.scaled(pop.pending),
                running=plan.scaled(pop.running),
                failure_ratio=FAILURE_RATIO,
            )
            for op_id in ids:
                target: Target[Any] = (
                    client.drive.target(fake.project_id, op_id)
                    if group is TargetKind.V3_DRIVE_TASK
                    else client.v2.delete_file_target(op_id)
                )
                groups[target.key] = group
                delays.register(target.key, op_id)
                seeded.append((target, group, op_id))

        async def start_exports(add: Adder, tally: Tally) -> None:
            gate = asyncio.Semaphore(_CREATE_CONCURRENCY)

            async def start_one(index: int) -> None:
                async with gate:
                    try:
                        handle = await client.exports.create(
                            fake.project_id, workspace_id=_WORKSPACE, format="pdf"
                        )
                    except D360Error as exc:
                        tally.fail(
                            f"create/{index}",
                            TargetKind.V3_EXPORT,
                            f"#{index}",
                            error=describe_error(exc),
                            now=time.monotonic(),
                        )
                        return
                export_id = str(handle.id)
                target = client.exports.target(fake.project_id, export_id)
                groups[target.key] = TargetKind.V3_EXPORT
                delays.register(target.key, export_id)
                add(target, TargetKind.V3_EXPORT, export_id)

            async with asyncio.TaskGroup() as group:
                for index in range(export_count):
                    group.create_task(start_one(index))

        def notes() -> tuple[tuple[str, str], ...]:
            return (
                ("429s sent by the server", str(fake.stats.rate_limited)),
                ("delay p50", _fmt(percentile(delays.all(), 0.5))),
            )

        tally = await watch_targets(
            seeded,
            stats=client.rate_limit_stats,
            policy=PollPolicy(interval=max(0.05, 1.0 * scale), max_interval=max(0.5, 30.0 * scale)),
            json_out=json_out,
            display=display,
            title=f"d360-async demo: {plan.total} operations, budget {budget} per token",
            rate=budget,
            expected=plan.total,
            feed=start_exports,
            extra_notes=notes,
            on_transition=delays,
            max_concurrency=args.max_concurrency,
        )
        elapsed = time.monotonic() - started
        requests, _, _ = budget_figures(client.rate_limit_stats(), budget)
        _report(display, json_out, tally, delays, fake, plan, elapsed, requests)
    return int(demo_exit_code(tally))


def demo_exit_code(tally: Tally) -> ExitCode:
    """0 when every operation was watched to a terminal phase (failures are part of the show),
    1 when one ended on an error or was still running at the end."""
    if tally.auth_failed:
        return ExitCode.AUTH
    ended = all(r.outcome in ("succeeded", "failed", "cancelled") for r in tally.records)
    return ExitCode.OK if ended and tally.done >= tally.total else ExitCode.FAILED


def _intro(display: Display, json_out: JsonLines | None, plan: DemoPlan) -> None:
    parts = ", ".join(f"{n} {p.group}" for p, n in plan.counts)
    if json_out is not None:
        json_out.write(
            {
                "type": "demo",
                "operations": {p.group: n for p, n in plan.counts},
                "budget": str(plan.budget),
                "time_scale": plan.scale,
                "seed": plan.seed,
            }
        )
        return
    display.print(
        f"Fake Document360 on 127.0.0.1, budget {plan.budget} per token; starting {parts} "
        f"(seed {plan.seed})"
    )


def _report(
    display: Display,
    json_out: JsonLines | None,
    tally: Tally,
    delays: _Delays,
    fake: Any,
    plan: DemoPlan,
    elapsed: float,
    client_requests: int,
) -> None:
    if json_out is None:
        display.table(_summary(tally, delays, fake, plan, elapsed))
        return
    every = delays.all()
    by_kind: dict[str, Any] = {}
    for group in tally.groups():
        records = [r for r in tally.records if r.group == group]
        values = delays.by_group.get(group, [])
        by_kind[group] = {
            **tally.by_outcome(group),
            "total": len(records),
            "polls": sum(r.polls for r in records),
            "delay_p50": percentile(values, 0.5),
            "delay_p99": percentile(values, 0.99),
        }
    summary = tally.summary(time.monotonic())
    summary["elapsed"] = round(elapsed, 3)
    summary["exit_code"] = int(demo_exit_code(tally))
    json_out.write(
        {
            "type": "summary",
            "command": "demo",
            **summary,
            "requests": fake.stats.requests,
            "client_requests": client_requests,
            "throttled": fake.stats.rate_limited,
            "budget": str(plan.budget),
            "delay_p50": percentile(every, 0.5),
            "delay_p99": percentile(every, 0.99),
            "by_kind": by_kind,
        }
    )
