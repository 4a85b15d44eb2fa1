"""Warm start: one small watch per request, as a web service does it.

40 watches of 3 exports each, started 0.5 s apart on one client, against a fake server whose
budget never binds; every export lasts 10-16 s (pending 0.2-0.5 s, then running).  Three runs,
one after the other:

* **cold**: a fresh client.  The watches that start before any export of the client has
  finished know nothing; they are the *cold* figures.
* **warm**: the same client again: every watch starts from what the earlier ones learned.
* **priors**: a new client given ``priors=`` from the first one's :meth:`Client.priors`
  (what a restarted service does with the priors saved in its last checkpoint).

The three runs replay the same durations: watch *i* of every run gets exports lasting exactly
what watch *i* of the first run got (drawn once, seeded), so the runs differ only in what the
client knows, not in the luck of the draw.

Figures per run: polls per operation (counted by the server) and the median detection delay
(the final transition reaching the caller minus the server's true finish).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

from ._harness import Section, ServerProcess, Table, TargetCheck, fmt, log, percentile

__all__ = ["run_warm"]

API_TOKEN = "test-api-token"
LATENCY = (0.002, 0.006)
PENDING = (0.2, 0.5)
RUNNING = (9.8, 15.5)


def server_seed(fake: Any, durations: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Runs in the server process: one export per ``(pending, running)`` pair, exactly."""
    ids = [
        op
        for pending, running in durations
        for op in fake.seed("v3.export", 1, pending=pending, running=running)
    ]
    return {"ids": ids, "project_id": fake.project_id}


def draws(watches: int, per_watch: int, seed: int = 5) -> list[list[tuple[float, float]]]:
    """Each watch's exports' (pending, running) durations: the same in every run."""
    rng = random.Random(seed)
    return [
        [(rng.uniform(*PENDING), rng.uniform(*RUNNING)) for _ in range(per_watch)]
        for _ in range(watches)
    ]


def server_truth(fake: Any, ids: Sequence[str]) -> dict[str, Any]:
    return {
        op_id: {
            "finished_at": fake.operation(op_id).finished_at,
            "polls": fake.operation(op_id).polls,
        }
        for op_id in ids
    }


async def _one_run(
    server: ServerProcess,
    client: Any,
    durations: Sequence[Sequence[tuple[float, float]]],
    gap: float,
) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    results: list[dict[str, Any]] = []

    async def request(i: int) -> None:
        await asyncio.sleep(i * gap)
        seeded = await loop.run_in_executor(
            None, server.call, "benchmarks.bench_warm:server_seed", list(durations[i])
        )
        targets = [client.exports.target(seeded["project_id"], op) for op in seeded["ids"]]
        trained = client.durations.get(targets[0].kind, None).trained
        by_key = {t.key: op for t, op in zip(targets, seeded["ids"], strict=True)}
        detected: dict[str, float] = {}
        async with client.watch(targets) as watch:
            async for transition in watch:
                if transition.final:
                    detected[by_key[transition.key]] = time.monotonic()
        results.append({"warm_at_start": trained, "detected": detected})

    await asyncio.gather(*(request(i) for i in range(len(durations))))
    ids = [op for r in results for op in r["detected"]]
    truth = await loop.run_in_executor(None, server.call, "benchmarks.bench_warm:server_truth", ids)
    for r in results:
        r["polls"] = [truth[op]["polls"] for op in r["detected"]]
        r["delays"] = [r["detected"][op] - truth[op]["finished_at"] for op in r["detected"]]
    return results


def _summary(results: Sequence[dict[str, Any]]) -> dict[str, float]:
    polls = [p for r in results for p in r["polls"]]
    delays = [d for r in results for d in r["delays"]]
    return {
        "watches": len(results),
        "polls_per_op": sum(polls) / max(1, len(polls)),
        "delay_p50": percentile(delays, 50),
        "delay_p90": percentile(delays, 90),
    }


async def _main(watches: int, per_watch: int, gap: float) -> dict[str, Any]:
    from d360_async._limiters import RateLimitConfig
    from d360_async.testing import FakeRateLimit

    from ._harness import client_class

    Client = client_class()
    out: dict[str, Any] = {}
    durations = draws(watches, per_watch)
    with ServerProcess(
        rate_limit=FakeRateLimit(limit=10**6, window=1.0), latency=LATENCY, seed=5
    ) as server:
        config = RateLimitConfig(rate=10_000.0, period=1.0)
        async with Client(api_token=API_TOKEN, base_url=server.url, rate_limit=config) as client:
            first = await _one_run(server, client, durations, gap)
            out["cold"] = _summary([r for r in first if not r["warm_at_start"]])
            out["first run, warm part"] = _summary([r for r in first if r["warm_at_start"]])
            out["warm"] = _summary(await _one_run(server, client, durations, gap))
            priors = client.priors()
        async with Client(
            api_token=API_TOKEN, base_url=server.url, rate_limit=config, priors=priors
        ) as fresh:
            out["priors"] = _summary(await _one_run(server, fresh, durations, gap))
    return out


def run_warm(quick: bool = False) -> Section:
    watches, per_watch, gap = (12, 3, 0.5) if quick else (40, 3, 0.5)
    log(f"warm: {watches} watches of {per_watch} exports, {gap:g} s apart, three runs")
    figures = asyncio.run(_main(watches, per_watch, gap))
    section = Section(name="warm", title="Warm start: one small watch per request", command="")
    table = Table(
        f"{watches} watches of {per_watch} exports started {gap:g} s apart on one client; "
        "exports last 10-16 s; the budget never binds",
        ["run", "watches", "polls per operation", "delay p50 (s)", "delay p90 (s)"],
    )
    for name, f in figures.items():
        table.rows.append(
            [
                name,
                str(f["watches"]),
                fmt(f["polls_per_op"], 2),
                fmt(f["delay_p50"], 2),
                fmt(f["delay_p90"], 2),
            ]
        )
    section.tables.append(table)
    section.data = figures
    cold = figures["cold"]
    for name in ("warm", "priors"):
        f = figures[name]
        section.targets.append(
            TargetCheck(
                f"{name}: polls per operation vs cold",
                "<= 0.5x, median delay no worse",
                f"{f['polls_per_op']:.2f} vs {cold['polls_per_op']:.2f} "
                f"({f['polls_per_op'] / cold['polls_per_op']:.2f}x); delay p50 "
                f"{f['delay_p50']:.2f} s vs {cold['delay_p50']:.2f} s",
                f["polls_per_op"] <= 0.5 * cold["polls_per_op"]
                and f["delay_p50"] <= cold["delay_p50"],
            )
        )
    section.notes += [
        "cold: the watches of the first run that started before any export of the client had "
        "finished (the client's models untrained); warm: the same client, a second run; "
        "priors: a new client given the first one's `client.priors()`.",
        "The three runs replay the same durations, drawn once (seeded): watch i of every run "
        "watches exports lasting exactly what watch i of the first run watched.",
        "Polls are counted by the server; delay is the final transition reaching the caller "
        "minus the server's true finish.",
    ]
    return section
