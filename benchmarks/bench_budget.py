"""Budget use and detection delay: the library's watch against two peers and the floor.

Two workloads where demand exceeds a budget of 10 requests per second (DESIGN.md §6, with
the populations halved so a run stays under about two minutes; the durations are §6's):

* **single**: 250 exports, pending 2-20 s then running 10-60 s.
* **mixed**: 75 drive tasks (pending 0-1 s, running 1-5 s) among 325 exports (pending
  5-20 s, running 15-60 s).

Each poller (the library's ``client.watch``, ``peers.naive_gather``, ``peers.aiolimiter_poller``)
runs in its own process against its own :class:`FakeDocument360` process; the three servers
use the same seed, so they draw the same durations, and all three pollers run at the same
time.  The server enforces the budget as a token bucket of 10 requests (10 per second).

Detection delay of an operation is the moment its terminal status reached the poller's code
(``time.monotonic()`` in the poller's process) minus its true ``finished_at`` on the server's
clock (``time.monotonic()`` in the server's process: on Linux one system-wide clock).  The
floor (``benchmarks/floor.py``) is simulated on the very durations the servers drew.

Budget used is the budget-spending requests the server admitted inside a *busy window*,
divided by ``budget x window``.  The window opens when the first operation truly completes
(from then on there is always something worth polling) and closes when the poller has
detected 90 % of the operations (after that, too few are left to need the whole budget).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from . import floor
from ._harness import (
    MP,
    Section,
    ServerProcess,
    Table,
    TargetCheck,
    fmt,
    log,
    percentile,
)

__all__ = ["POLLERS", "WORKLOADS", "run_budget"]

API_TOKEN = "test-api-token"
BUDGET = 10.0  # requests per second
LATENCY = (0.002, 0.006)  # seconds the fake adds to every answer
SEED = 9

POLLERS = ("d360-async", "naive gather", "aiolimiter")

WORKLOADS: dict[str, floor.Workload] = {
    "single": floor.Workload(
        "single", (floor.Population("export", 250, (2.0, 20.0), (10.0, 60.0)),), BUDGET
    ),
    "mixed": floor.Workload(
        "mixed",
        (
            floor.Population("drive_task", 75, (0.0, 1.0), (1.0, 5.0)),
            floor.Population("export", 325, (5.0, 20.0), (15.0, 60.0)),
        ),
        BUDGET,
    ),
}
QUICK_WORKLOADS: dict[str, floor.Workload] = {
    "single": floor.Workload(
        "single", (floor.Population("export", 30, (0.5, 2.0), (1.0, 4.0)),), BUDGET
    ),
    "mixed": floor.Workload(
        "mixed",
        (
            floor.Population("drive_task", 10, (0.0, 0.3), (0.3, 1.0)),
            floor.Population("export", 30, (0.5, 2.0), (2.0, 5.0)),
        ),
        BUDGET,
    ),
}
QUICK_KIND = "drive_task"
FLOOR_LABEL = "floor (oracle, simulated)"


def deadline_for(workload: floor.Workload) -> float:
    """How long a poller may run: the longest operation plus one and a half round-robin
    cycles, which every poller that uses the budget should need at most."""
    longest = max(p.pending[1] + p.running[1] for p in workload.populations)
    return longest + 1.5 * workload.size / workload.budget + 5.0


# -- in the server process -------------------------------------------------------------------


def server_seed(fake: Any, populations: Sequence[tuple[str, int, tuple[float, float], Any]]) -> Any:
    """Seed the populations, interleaved in a seeded random order; returns (id, kind) pairs."""
    import random

    ops: list[tuple[str, str]] = []
    start = fake.now()
    for kind, count, pending, running in populations:
        ids = fake.seed(kind, count, pending=pending, running=running, start=start)
        ops += [(op_id, kind) for op_id in ids]
    random.Random(SEED).shuffle(ops)
    return {"ops": ops, "project_id": fake.project_id, "start": start}


def server_outcome(fake: Any, ids: Sequence[str]) -> dict[str, Any]:
    """The truth about each operation, and what the server counted."""
    ops = {}
    for op_id in ids:
        op = fake.operation(op_id)
        ops[op_id] = {
            "started_at": op.started_at,
            "running_at": op.running_at,
            "finished_at": op.finished_at,
            "first_terminal_served_at": op.first_terminal_served_at,
            "polls": op.polls,
        }
    stats = fake.stats
    return {
        "ops": ops,
        "requests": stats.requests,
        "rate_limited": stats.rate_limited,
        "admitted_times": list(stats.admitted_times),
        "by_status": dict(stats.by_status),
    }


# -- in a poller process ---------------------------------------------------------------------


def _poller_main(conn: Connection, poller: str, url: str, deadline: float) -> None:
    try:
        result = asyncio.run(_poller(conn, poller, url, deadline))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    conn.send(("ok", result))


async def _poller(conn: Connection, poller: str, url: str, deadline: float) -> dict[str, Any]:
    import aiohttp

    from .peers import PollJob

    loop = asyncio.get_running_loop()
    conn.send(("ready", None))
    jobs_raw: list[tuple[str, str, str]] = await loop.run_in_executor(None, conn.recv)
    cpu0 = time.process_time()
    if poller == "d360-async":
        result = await _library(url, jobs_raw, deadline)
    else:
        paths = {"export": "exports", "drive_task": "drive/tasks"}
        jobs = [
            PollJob(op_id, kind, f"{url}/v3/projects/{project}/{paths[kind]}/{op_id}")
            for op_id, kind, project in jobs_raw
        ]
        headers = {"Authorization": f"Bearer {API_TOKEN}", "Accept": "application/json"}
        async with aiohttp.ClientSession() as session:
            if poller == "naive gather":
                from .peers import naive_gather

                peer = await naive_gather.poll_all(
                    session,
                    jobs,
                    headers=headers,
                    interval=len(jobs) / BUDGET,
                    deadline=deadline,
                )
            else:
                from .peers import aiolimiter_poller

                peer = await aiolimiter_poller.poll_all(
                    session, jobs, headers=headers, rate=BUDGET, deadline=deadline
                )
        result = {
            "detected_at": peer.detected_at,
            "requests": peer.requests,
            "throttled": peer.throttled,
            "errors": peer.errors,
        }
    result["cpu"] = time.process_time() - cpu0
    return result


async def _library(
    url: str, jobs: Sequence[tuple[str, str, str]], deadline: float
) -> dict[str, Any]:
    from d360_async._ratelimit import RateLimitConfig

    from ._harness import client_class

    Client = client_class()

    detected: dict[str, float] = {}
    errors = 0
    async with Client(
        api_token=API_TOKEN, base_url=url, rate_limit=RateLimitConfig(rate=BUDGET, period=1.0)
    ) as client:
        targets = []
        by_key: dict[str, str] = {}
        for op_id, kind, project in jobs:
            if kind == "export":
                target = client.exports.target(project, op_id)
            else:
                target = client.drive.target(project, op_id)
            targets.append(target)
            by_key[target.key] = op_id
        try:
            async with asyncio.timeout(deadline):
                async with client.watch(targets) as watch:
                    async for transition in watch:
                        now = time.monotonic()
                        if transition.error is not None:
                            errors += 1
                        if transition.phase.is_terminal:
                            detected.setdefault(by_key[transition.target.key], now)
        except TimeoutError:
            pass
        stats = client.rate_limit_stats()
    return {
        "detected_at": detected,
        "requests": sum(s.requests for s in stats),
        "throttled": sum(s.throttled for s in stats),
        "errors": errors,
    }


# -- the parent ------------------------------------------------------------------------------


@dataclass
class Row:
    """One poller's figures on one workload."""

    poller: str
    delays: dict[str, list[float]]
    undetected: int
    requests: int | None
    throttled: int | None
    budget_used: float | None
    early: int | None
    extra: dict[str, Any]

    @property
    def all_delays(self) -> list[float]:
        return [d for v in self.delays.values() for d in v]


def busy_window(finished: Sequence[float], detected: Sequence[float]) -> tuple[float, float]:
    """(first true completion, time 90 % of operations were detected)."""
    first = min(finished)
    ordered = sorted(detected)
    if not ordered:
        return first, first
    index = max(0, min(len(ordered) - 1, int(0.9 * len(finished)) - 1))
    return first, ordered[index]


def budget_used(admitted: Sequence[float], window: tuple[float, float], budget: float) -> float:
    """Admitted requests inside ``window`` over what the budget allowed in it."""
    lo, hi = window
    if hi <= lo:
        return float("nan")
    spent = sum(1 for t in admitted if lo <= t < hi)
    return spent / (budget * (hi - lo))


def _measured_row(
    poller: str,
    kinds: Mapping[str, str],
    truth: Mapping[str, Any],
    result: Mapping[str, Any],
    deadline_at: float,
) -> Row:
    delays: dict[str, list[float]] = {kind: [] for kind in sorted(set(kinds.values()))}
    detected_times: list[float] = []
    undetected = 0
    for op_id, kind in kinds.items():
        finished = truth["ops"][op_id]["finished_at"]
        seen = result["detected_at"].get(op_id)
        if seen is None:
            undetected += 1
            # Censored: at least this late.  Counted so a poller cannot gain by giving up.
            delays[kind].append(max(0.0, deadline_at - finished))
            continue
        delays[kind].append(max(0.0, seen - finished))
        detected_times.append(seen)
    finished_all = [o["finished_at"] for o in truth["ops"].values()]
    window = busy_window(finished_all, detected_times)
    return Row(
        poller=poller,
        delays=delays,
        undetected=undetected,
        requests=int(truth["requests"]),
        throttled=int(truth["rate_limited"]),
        budget_used=budget_used(truth["admitted_times"], window, BUDGET),
        early=sum(1 for t in truth["admitted_times"] if t < window[0]),
        extra={
            "window_s": window[1] - window[0],
            "client_cpu_s": result.get("cpu"),
            "client_errors": result.get("errors"),
            "client_requests": result.get("requests"),
        },
    )


def _floor_rows(
    workload: floor.Workload, truth: Mapping[str, Any], kinds: Mapping[str, str]
) -> list[Row]:
    ops = [
        floor.SimOperation(
            kinds[op_id],
            o["running_at"] - o["started_at"],
            o["finished_at"] - o["running_at"],
        )
        for op_id, o in truth["ops"].items()
    ]
    rows = []
    for policy, label in (
        ("oracle", FLOOR_LABEL),
        ("round_robin", "round robin (simulated)"),
    ):
        sim = floor.simulate(workload, ops, policy=policy)  # type: ignore[arg-type]
        finished = [op.completes_at for op in ops]
        rows.append(
            Row(
                poller=label,
                delays=sim.delays,
                undetected=len(ops) - len(sim.all_delays),
                requests=sim.polls,
                throttled=0,
                budget_used=None,
                early=sum(1 for t in sim.poll_times if t < min(finished)),
                extra={"sim_end_s": sim.finished_at, "first_completion_s": min(finished)},
            )
        )
    return rows


def run_workload(
    workload: floor.Workload, *, pollers_run: Sequence[str] = POLLERS
) -> tuple[list[Row], dict[str, Any]]:
    """Run the three pollers side by side on one workload; add the floor's rows."""
    deadline = deadline_for(workload)
    log(f"budget/{workload.name}: {workload.size} operations, deadline {deadline:.0f} s")
    from d360_async.testing import FakeRateLimit

    rate_limit = FakeRateLimit(
        limit=int(BUDGET), window=1.0, algorithm="token_bucket", reset_format="delay"
    )
    servers = [
        ServerProcess(rate_limit=rate_limit, latency=LATENCY, seed=SEED) for _ in pollers_run
    ]
    pollers: list[tuple[str, Connection, Any]] = []
    try:
        for server in servers:
            server.start()
        for name, server in zip(pollers_run, servers, strict=True):
            parent, child = MP.Pipe()
            proc = MP.Process(
                target=_poller_main, args=(child, name, server.url, deadline), daemon=True
            )
            proc.start()
            child.close()
            pollers.append((name, parent, proc))
        for name, conn, _ in pollers:
            if not conn.poll(60):
                raise RuntimeError(f"poller {name} did not start")
            status, value = conn.recv()
            if status != "ready":
                raise RuntimeError(f"poller {name} failed to start: {value}")
        populations = [(p.kind, p.count, p.pending, p.running) for p in workload.populations]
        seeded = [
            server.call("benchmarks.bench_budget:server_seed", populations) for server in servers
        ]
        for (_, conn, _), info in zip(pollers, seeded, strict=True):
            conn.send([(op_id, kind, info["project_id"]) for op_id, kind in info["ops"]])
        go = time.monotonic()
        results: dict[str, Mapping[str, Any]] = {}
        for name, conn, proc in pollers:
            remaining = max(1.0, go + deadline + 60.0 - time.monotonic())
            if not conn.poll(remaining):
                raise RuntimeError(f"poller {name} did not finish in time")
            status, value = conn.recv()
            if status != "ok":
                raise RuntimeError(f"poller {name} failed: {value}")
            results[name] = value
            proc.join(30)
        rows: list[Row] = []
        truths = []
        for (name, _, _), server, info in zip(pollers, servers, seeded, strict=True):
            kinds = dict(info["ops"])
            truth = server.call("benchmarks.bench_budget:server_outcome", list(kinds))
            truths.append(truth)
            rows.append(_measured_row(name, kinds, truth, results[name], info["start"] + deadline))
        kinds = dict(seeded[0]["ops"])
        rows += _floor_rows(workload, truths[0], kinds)
        same = all(
            abs(
                t["ops"][i]["finished_at"]
                - t["ops"][i]["started_at"]
                - (truths[0]["ops"][j]["finished_at"] - truths[0]["ops"][j]["started_at"])
            )
            < 1e-6
            for t, s in zip(truths[1:], seeded[1:], strict=True)
            for (i, _), (j, _) in zip(s["ops"], seeded[0]["ops"], strict=True)
        )
        meta = {
            "deadline_s": deadline,
            "same_durations_on_every_server": same,
            "seconds": time.monotonic() - go,
        }
        return rows, meta
    finally:
        for _, conn, proc in pollers:
            proc.join(1)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            conn.close()
        for server in servers:
            server.stop()


def _delay_cells(values: Sequence[float]) -> list[str]:
    return [fmt(percentile(values, 50), 1), fmt(percentile(values, 99), 1)]


def _table(workload: floor.Workload, rows: Sequence[Row]) -> Table:
    kinds = [p.kind for p in workload.populations]
    columns = [
        "poller",
        "requests",
        "429s",
        "polls before 1st completion",
        "budget used",
        "delay p50 (s)",
        "delay p99 (s)",
    ]
    if len(kinds) > 1:
        for kind in kinds:
            columns += [f"{kind} p50 (s)", f"{kind} p99 (s)"]
    columns.append("undetected")
    table = Table(f"Workload {workload.name}: " + describe(workload), columns)
    for row in rows:
        cells = [
            row.poller,
            str(row.requests) if row.requests is not None else "n/a",
            str(row.throttled) if row.throttled is not None else "n/a",
            str(row.early) if row.early is not None else "n/a",
            fmt(row.budget_used, 3) if row.budget_used is not None else "-",
            *_delay_cells(row.all_delays),
        ]
        if len(kinds) > 1:
            for kind in kinds:
                cells += _delay_cells(row.delays.get(kind, []))
        cells.append(str(row.undetected))
        table.rows.append(cells)
    return table


def describe(workload: floor.Workload) -> str:
    parts = [
        f"{p.count} {p.kind} (pending {p.pending[0]:g}-{p.pending[1]:g} s, "
        f"running {p.running[0]:g}-{p.running[1]:g} s)"
        for p in workload.populations
    ]
    return " + ".join(parts) + f", budget {workload.budget:g} req/s"


def _p50(row: Row, kind: str | None = None) -> float:
    return percentile(row.all_delays if kind is None else row.delays.get(kind, []), 50)


def _p99(row: Row) -> float:
    return percentile(row.all_delays, 99)


def _targets(name: str, rows: Sequence[Row]) -> list[TargetCheck]:
    by = {r.poller: r for r in rows}
    lib = by.get("d360-async")
    if lib is None:
        return [TargetCheck(f"{name}: library", "runs", "not measured", None)]
    peers = [by[p] for p in ("naive gather", "aiolimiter") if p in by]
    checks = [
        TargetCheck(f"{name}: 429s", "0", str(lib.throttled), lib.throttled == 0),
        TargetCheck(
            f"{name}: budget used",
            ">= 0.97",
            fmt(lib.budget_used, 3),
            lib.budget_used is not None and lib.budget_used >= 0.97,
        ),
    ]
    if lib.undetected:
        checks.append(
            TargetCheck(
                f"{name}: every completion seen", "0 undetected", str(lib.undetected), False
            )
        )
    oracle = by.get(FLOOR_LABEL)
    best50 = min(_p50(p) for p in peers)
    best99 = min(_p99(p) for p in peers)
    if name == "single":
        ok = _p50(lib) <= best50 and _p99(lib) <= best99
        floor_text = f"; floor p50 {_p50(oracle):.1f} s, p99 {_p99(oracle):.1f} s" if oracle else ""
        checks.append(
            TargetCheck(
                f"{name}: delay vs better peer",
                "p50 and p99 no worse",
                f"p50 {_p50(lib):.1f} s vs {best50:.1f} s; "
                f"p99 {_p99(lib):.1f} s vs {best99:.1f} s{floor_text}",
                ok,
            )
        )
    else:
        ratio = _p50(lib) / best50
        floor_text = f"; the floor reaches {_p50(oracle) / best50:.2f}x" if oracle else ""
        checks.append(
            TargetCheck(
                f"{name}: overall p50 vs better peer",
                "<= 0.60x",
                f"{ratio:.2f}x ({_p50(lib):.1f} s vs {best50:.1f} s{floor_text})",
                ratio <= 0.6,
            )
        )
        quick_best = min(_p50(p, QUICK_KIND) for p in peers)
        q_ratio = _p50(lib, QUICK_KIND) / quick_best
        floor_text = (
            f"; the floor reaches {_p50(oracle, QUICK_KIND) / quick_best:.2f}x" if oracle else ""
        )
        checks.append(
            TargetCheck(
                f"{name}: {QUICK_KIND} p50 vs better peer",
                "<= 0.25x",
                f"{q_ratio:.2f}x ({_p50(lib, QUICK_KIND):.1f} s vs {quick_best:.1f} s{floor_text})",
                q_ratio <= 0.25,
            )
        )
    return checks


def run_budget(quick: bool = False) -> Section:
    workloads = QUICK_WORKLOADS if quick else WORKLOADS
    section = Section(name="budget", title="Budget use and detection delay", command="")
    for name, workload in workloads.items():
        rows, meta = run_workload(workload)
        section.tables.append(_table(workload, rows))
        section.targets += _targets(name, rows)
        section.data[name] = {
            "meta": meta,
            "rows": [
                {
                    "poller": r.poller,
                    "requests": r.requests,
                    "throttled": r.throttled,
                    "budget_used": r.budget_used,
                    "polls_before_first_completion": r.early,
                    "undetected": r.undetected,
                    "delay_p50": _p50(r),
                    "delay_p99": _p99(r),
                    "per_kind": {
                        k: {"p50": percentile(v, 50), "p99": percentile(v, 99), "n": len(v)}
                        for k, v in r.delays.items()
                    },
                    **r.extra,
                }
                for r in rows
            ],
        }
    section.notes += [
        "The three pollers ran at the same time, each in its own process against its own "
        "fake server process (same seed, so the same durations), token bucket of 10 requests "
        "refilled at 10 per second, 2-6 ms simulated latency.",
        "Delay: terminal status reaching the caller minus the server's true finish time "
        "(both `time.monotonic()`, one clock on Linux). Operations never seen done count "
        "with their delay up to the deadline.",
        "Budget used: requests the server admitted between the first true completion and the "
        "moment 90 % of operations were detected, over 10 req/s x that window. The floor "
        "rows are simulations on the same durations: polls are instant, so they have no "
        "429s and no budget figure; 'round robin (simulated)' is the ideal of both peers.",
        "Populations are half of DESIGN.md §6 (same durations, same budget) to keep each run "
        "under about two minutes.",
    ]
    return section
