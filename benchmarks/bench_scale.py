"""Scale: one watch of 1,000 and of 10,000 targets, with a limit generous enough not to bind.

Each size runs in a *fresh process* (so its RSS baseline is clean) against a fake server in
another process (so the server's CPU and memory are not counted).  The process first warms
up (imports, a session, a few direct calls, which also give the client's own CPU per status
check), records its RSS, then builds the targets and runs the watch for a bounded time while
a ticker task measures event-loop lag every 10 ms and samples RSS.

Figures:

* **bytes per target**: (peak RSS during the watch - RSS before the targets were built) /
  targets.  Peak RSS is the highest of the ticker's samples and the kernel's ``ru_maxrss``.
* **loop lag**: how late the 10 ms ticker woke, p50/p99/max.
* **CPU per poll**: the watch process's CPU during the watch / polls sent; minus the CPU
  of a direct ``client.exports.get`` measured in the same process, that leaves the watch's
  own share (scheduler, transitions, stream).
* **scheduler alone**: the pure ``Scheduler`` driven with a fake clock through
  select + observe + release cycles over the same number of targets: its CPU per poll.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from multiprocessing.connection import Connection
from typing import Any

from ._harness import (
    MP,
    LagTicker,
    Section,
    ServerProcess,
    Table,
    TargetCheck,
    fmt,
    log,
    peak_rss_bytes,
    rss_bytes,
)

__all__ = ["run_scale", "scheduler_cost"]

API_TOKEN = "test-api-token"
LATENCY = (0.002, 0.006)
SIZES = (1_000, 10_000)
QUICK_SIZES = (200,)
RUN_SECONDS = {1_000: 30.0, 10_000: 45.0, 200: 6.0}
KIB_TARGET = 4.0
LAG_P99_TARGET_MS = 20.0


def _stages(run_seconds: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Pending and running ranges that end every operation within the run."""
    third = run_seconds / 3
    return (0.5, third), (1.0, 1.6 * third)


def _lifetime(run_seconds: float) -> tuple[float, float]:
    pending, running = _stages(run_seconds)
    return pending[0] + running[0], pending[1] + running[1]


def server_seed(fake: Any, n: int, run_seconds: float) -> dict[str, Any]:
    """``n`` exports whose lifecycles end within the run (so transitions keep coming)."""
    pending, running = _stages(run_seconds)
    ids = fake.seed("export", n, pending=pending, running=running)
    return {"project_id": fake.project_id, "ids": ids}


# -- in the watch process ----------------------------------------------------------------------


def _watch_main(
    conn: Connection, url: str, project_id: str, ids: list[str], seconds: float
) -> None:
    try:
        result = asyncio.run(_watch(url, project_id, ids, seconds))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    conn.send(("ok", result))


async def _watch(url: str, project_id: str, ids: list[str], seconds: float) -> dict[str, Any]:
    from ._harness import client_class

    Client = client_class()
    from d360_async._ratelimit import RateLimitConfig

    async with Client(
        api_token=API_TOKEN, base_url=url, rate_limit=RateLimitConfig(rate=1e9, period=60.0)
    ) as client:
        # Warm up, and measure the client's own CPU per direct status check.
        sample = ids[: min(len(ids), 64)]
        for op_id in sample[:8]:
            await client.exports.get(project_id, op_id)
        direct = 400
        cpu0 = time.process_time()
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with sem:
                await client.exports.get(project_id, sample[i % len(sample)])

        await asyncio.gather(*(one(i) for i in range(direct)))
        client_cpu_per_check = (time.process_time() - cpu0) / direct
        requests_before = sum(s.requests for s in client.rate_limit_stats())

        gc.collect()
        baseline = rss_bytes()
        targets = [client.exports.target(project_id, op_id) for op_id in ids]
        after_targets = rss_bytes()
        transitions = terminal = 0
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        async with LagTicker(0.01) as ticker:
            try:
                async with asyncio.timeout(seconds):
                    async with client.watch(targets) as watch:
                        async for transition in watch:
                            transitions += 1
                            if transition.phase.is_terminal:
                                terminal += 1
            except TimeoutError:
                pass
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        polls = sum(s.requests for s in client.rate_limit_stats()) - requests_before
        peak = max(ticker.peak_rss, peak_rss_bytes())
    return {
        "targets": len(ids),
        "baseline_rss": baseline,
        "after_targets_rss": after_targets,
        "peak_rss": peak,
        "lag_ms": ticker.summary_ms(),
        "cpu": cpu,
        "wall": wall,
        "polls": polls,
        "transitions": transitions,
        "terminal": terminal,
        "client_cpu_per_check": client_cpu_per_check,
    }


# -- the scheduler alone ---------------------------------------------------------------------


def scheduler_cost(n: int, polls: int, *, seed: int = 0) -> float:
    """Seconds of CPU per select + observe + release cycle over ``n`` targets (fake clock).

    Each target has a drawn pending and running duration; time advances 1 ms per poll and
    ended targets are replaced, so the population stays at ``n``.
    """
    from d360_async._phase import Phase
    from d360_async._watch._policy import PollPolicy
    from d360_async._watch._scheduler import Scheduler

    rng = random.Random(seed)
    scheduler = Scheduler(rng=random.Random(seed))
    policy = PollPolicy()
    lifecycles: dict[str, tuple[float, float]] = {}
    now = 0.0
    counter = 0

    def add() -> None:
        nonlocal counter
        counter += 1
        key = f"t{counter}"
        pending = rng.uniform(2.0, 20.0)
        lifecycles[key] = (now + pending, now + pending + rng.uniform(10.0, 60.0))
        scheduler.add(key, kind="v3.export", group="g", policy=policy, now=now)

    for _ in range(n):
        add()
    step = 0.001
    cpu0 = time.process_time()
    for _ in range(polls):
        now += step
        state = scheduler.select("g", now)
        if state is None:
            add()
            continue
        running_at, finished_at = lifecycles[state.key]
        phase = (
            Phase.SUCCEEDED
            if now >= finished_at
            else Phase.RUNNING
            if now >= running_at
            else Phase.PENDING
        )
        outcome = scheduler.observe(state, now, phase, phase.name)
        scheduler.release(state, now)
        if outcome.final:
            del lifecycles[state.key]
            add()
    return (time.process_time() - cpu0) / polls


# -- the parent --------------------------------------------------------------------------------


def _run_size(n: int, seconds: float) -> dict[str, Any]:
    from d360_async.testing import FakeRateLimit

    with ServerProcess(
        rate_limit=FakeRateLimit(limit=10**9, window=60.0), latency=LATENCY, seed=3
    ) as server:
        seeded = server.call("benchmarks.bench_scale:server_seed", n, seconds)
        parent, child = MP.Pipe()
        proc = MP.Process(
            target=_watch_main,
            args=(child, server.url, seeded["project_id"], seeded["ids"], seconds),
            daemon=True,
        )
        proc.start()
        child.close()
        try:
            if not parent.poll(seconds + 180):
                raise RuntimeError("the watch process did not finish in time")
            status, value = parent.recv()
        finally:
            proc.join(30)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            parent.close()
    if status != "ok":
        raise RuntimeError(f"watch of {n} targets failed: {value}")
    result: dict[str, Any] = value
    return result


def run_scale(quick: bool = False) -> Section:
    sizes = QUICK_SIZES if quick else SIZES
    section = Section(name="scale", title="Scale: one watch of many targets", command="")
    table = Table(
        "Generous limit (never binds); fake server in its own process, 2-6 ms latency",
        [
            "targets",
            "ran (s)",
            "polls",
            "transitions",
            "KiB per target",
            "lag p50 (ms)",
            "lag p99 (ms)",
            "lag max (ms)",
            "CPU per poll (µs)",
            "of which watch (µs)",
            "scheduler alone (µs)",
        ],
    )
    for n in sizes:
        seconds = RUN_SECONDS[n]
        log(f"scale: {n} targets for up to {seconds:.0f} s")
        r = _run_size(n, seconds)
        per_target = (r["peak_rss"] - r["baseline_rss"]) / n / 1024
        cpu_per_poll = r["cpu"] / max(1, r["polls"]) * 1e6
        watch_share = cpu_per_poll - r["client_cpu_per_check"] * 1e6
        sched = scheduler_cost(n, 5_000 if quick else 50_000) * 1e6
        lag = r["lag_ms"]
        table.rows.append(
            [
                f"{n:,}",
                fmt(r["wall"], 1),
                f"{r['polls']:,}",
                f"{r['transitions']:,}",
                fmt(per_target, 2),
                fmt(lag["p50"], 2),
                fmt(lag["p99"], 2),
                fmt(lag["max"], 1),
                fmt(cpu_per_poll, 0),
                fmt(watch_share, 0),
                fmt(sched, 1),
            ]
        )
        section.data[str(n)] = {
            **r,
            "kib_per_target": per_target,
            "cpu_us_per_poll": cpu_per_poll,
            "watch_cpu_us_per_poll": watch_share,
            "scheduler_us_per_poll": sched,
        }
        if n == max(sizes):
            section.targets.append(
                TargetCheck(
                    f"memory per target at {n:,}",
                    f"<= {KIB_TARGET:g} KiB",
                    f"{per_target:.2f} KiB",
                    per_target <= KIB_TARGET,
                )
            )
            section.targets.append(
                TargetCheck(
                    f"loop lag p99 at {n:,}",
                    f"<= {LAG_P99_TARGET_MS:g} ms",
                    f"{lag['p99']:.1f} ms",
                    lag["p99"] <= LAG_P99_TARGET_MS,
                )
            )
    section.tables.append(table)
    if len(sizes) > 1:
        small, large = (section.data[str(n)] for n in (min(sizes), max(sizes)))
        grow = (large["peak_rss"] - large["baseline_rss"]) - (
            small["peak_rss"] - small["baseline_rss"]
        )
        marginal = grow / (max(sizes) - min(sizes)) / 1024
        section.data["marginal_kib_per_target"] = marginal
        section.notes.append(
            f"Marginal memory per target between {min(sizes):,} and {max(sizes):,} targets "
            f"(the growth of the peak RSS delta over the extra targets): {marginal:.2f} KiB. "
            f"The {min(sizes):,}-target figure is higher per target because fixed costs (the "
            "connection pool's buffers, the stream, first-use allocations) are shared by fewer "
            "targets; the target is judged at the largest size, fixed costs included."
        )
    section.notes += [
        "Each size ran in a fresh process, the fake server in another; the run stops at its "
        "time bound or when every target has ended. Operations last "
        + " or ".join(
            f"{lo:g}-{hi:g} s ({n:,} targets)"
            for n in sizes
            for lo, hi in [_lifetime(RUN_SECONDS[n])]
        )
        + ", so transitions keep arriving while memory is sampled.",
        "KiB per target: (peak RSS during the watch - RSS before the targets were built) / "
        "targets; it includes the targets themselves, the scheduler's state and whatever "
        "the watch buffers.",
        "CPU per poll is the whole watch process (client, aiohttp, scheduler) over polls "
        "sent; 'of which watch' subtracts the CPU of a direct `client.exports.get` measured "
        "in the same process; 'scheduler alone' drives the pure `Scheduler` with a fake "
        "clock over the same number of targets.",
    ]
    return section
