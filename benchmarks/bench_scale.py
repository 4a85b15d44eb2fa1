"""Scale: one watch of 1,000 and of 100,000 targets, with a limit generous enough not to bind.

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
* **a long-running service** (``keep_open``): one watch that 50,000 targets go through,
  about 200 live at a time, each finishing after a few polls (in-process targets, no
  HTTP, so the run takes seconds): RSS after 1,000 have finished and after 50,000, with the
  default (finished targets forgotten once delivered) and with ``keep_finished=True``.
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
SIZES = (1_000, 100_000)
QUICK_SIZES = (200,)
RUN_SECONDS = {1_000: 30.0, 10_000: 45.0, 100_000: 90.0, 200: 6.0}
FORGET_TOTAL = 50_000
QUICK_FORGET_TOTAL = 3_000
FORGET_LIVE = 200
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
    ids = fake.seed("v3.export", n, pending=pending, running=running)
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
    from d360_async._limiters import RateLimitConfig

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
    from d360_async._core._phase import Phase
    from d360_async._core._watch._policy import PollPolicy
    from d360_async._core._watch._scheduler import Scheduler

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


# -- a long-running service ---------------------------------------------------------------------


class _FreeLimiter:
    """A limiter that never makes anyone wait: the service benchmark measures memory only."""

    def __init__(self) -> None:
        from d360_async._core._ratelimit._protocol import Ticket

        self._ticket = Ticket

    async def acquire(self, key: Any, *, priority: Any = None) -> Any:
        return self._ticket(key=key, admitted_at=time.monotonic())

    async def complete(self, ticket: Any, *, status: Any, state: Any) -> None:
        return None

    def stats(self) -> list[Any]:
        return []

    def has_capacity(self, key: Any, priority: Any = None) -> bool:
        return True

    def next_available(self, key: Any, priority: Any = None) -> float:
        return 0.0

    def paused_for(self, key: Any) -> float:
        return 0.0

    def budget(self, key: Any) -> float:
        return 1e9

    async def aclose(self) -> None:
        return None


class _Job:
    """An in-process operation: pending, running, then done after a few polls."""

    __slots__ = ("key", "limiter", "polls", "rate_key", "steps")

    kind = "bench.job"

    def __init__(self, i: int, limiter: _FreeLimiter, rate_key: Any, steps: int) -> None:
        self.key = f"job-{i}"
        self.limiter = limiter
        self.rate_key = rate_key
        self.polls = 0
        self.steps = steps

    async def poll(self, *, ticket: Any = None) -> Any:
        from d360_async._core._phase import Phase
        from d360_async._core._target_protocol import Observation

        self.polls += 1
        if self.polls >= self.steps:
            phase, raw = Phase.SUCCEEDED, "Completed"
        elif self.polls > 1:
            phase, raw = Phase.RUNNING, "InProgress"
        else:
            phase, raw = Phase.PENDING, "Queued"
        if ticket is not None:
            await self.limiter.complete(ticket, status=200, state=None)
        return Observation(phase=phase, raw_status=raw, snapshot={"status": raw})

    def to_spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key}


def _forget_main(conn: Connection, total: int, keep_finished: bool) -> None:
    try:
        result = asyncio.run(_forget(total, keep_finished))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    conn.send(("ok", result))


async def _forget(total: int, keep_finished: bool) -> dict[str, Any]:
    from d360_async._core._ratelimit._protocol import RateLimitKey
    from d360_async._watch import PollPolicy, watch

    limiter = _FreeLimiter()
    rate_key = RateLimitKey(host="bench", token_fingerprint="x")
    policy = PollPolicy(interval=0.001, jitter=0.0)
    rng = random.Random(1)
    added = 0

    def job() -> _Job:
        nonlocal added
        added += 1
        return _Job(added, limiter, rate_key, rng.randint(3, 6))

    marks: dict[int, int] = {}
    finished = transitions = 0
    wall0 = time.perf_counter()
    async with watch(
        [job() for _ in range(FORGET_LIVE)],
        policy=policy,
        keep_open=True,
        keep_finished=keep_finished,
        max_concurrency=32,
    ) as w:
        async for transition in w:
            transitions += 1
            if not transition.final:
                continue
            finished += 1
            if added < total:
                w.add(job())
            if finished in (1_000, total):
                gc.collect()
                marks[finished] = rss_bytes()
            if finished >= total:
                break
        table = len(w._entries)
        stats = w.stats()
    return {
        "total": total,
        "keep_finished": keep_finished,
        "rss_at_1000": marks.get(1_000),
        "rss_at_total": marks.get(total),
        "transitions": transitions,
        "table_entries_at_end": table,
        "forgotten": stats.forgotten,
        "wall": time.perf_counter() - wall0,
    }


def _in_child(main: Any, args: tuple[Any, ...], timeout: float, what: str) -> dict[str, Any]:
    """Run ``main(conn, *args)`` in a fresh process and return what it sends back."""
    parent, child = MP.Pipe()
    proc = MP.Process(target=main, args=(child, *args), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise RuntimeError(f"{what} did not finish in time")
        status, value = parent.recv()
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        parent.close()
    if status != "ok":
        raise RuntimeError(f"{what} failed: {value}")
    result: dict[str, Any] = value
    return result


def _run_forget(total: int, keep_finished: bool) -> dict[str, Any]:
    return _in_child(_forget_main, (total, keep_finished), 600, "the keep_open benchmark")


def _forget_table(section: Section, quick: bool) -> None:
    total = QUICK_FORGET_TOTAL if quick else FORGET_TOTAL
    table = Table(
        f"A keep_open watch that {total:,} targets go through, ~{FORGET_LIVE} live at a time",
        [
            "finished targets",
            "RSS after 1,000 finished (MiB)",
            f"RSS after {total:,} finished (MiB)",
            "growth (MiB)",
            "entries left in the watch",
            "ran (s)",
        ],
    )
    for keep in (False, True):
        log(f"scale: keep_open service, {total:,} targets, keep_finished={keep}")
        r = _run_forget(total, keep)
        growth = (r["rss_at_total"] - r["rss_at_1000"]) / 2**20
        table.rows.append(
            [
                "kept (keep_finished=True)" if keep else "forgotten (default)",
                fmt(r["rss_at_1000"] / 2**20, 1),
                fmt(r["rss_at_total"] / 2**20, 1),
                fmt(growth, 1),
                f"{r['table_entries_at_end']:,}",
                fmt(r["wall"], 1),
            ]
        )
        section.data[f"keep_open/{'kept' if keep else 'forgotten'}"] = {**r, "growth_mib": growth}
        if not keep:
            section.targets.append(
                TargetCheck(
                    f"keep_open: memory after {total:,} finished vs 1,000",
                    "no more (within 2 MiB of noise)",
                    f"{growth:+.1f} MiB",
                    growth <= 2.0,
                )
            )
    section.tables.append(table)


# -- the parent --------------------------------------------------------------------------------


def _run_size(n: int, seconds: float) -> dict[str, Any]:
    from d360_async.testing import FakeRateLimit

    with ServerProcess(
        rate_limit=FakeRateLimit(limit=10**9, window=60.0), latency=LATENCY, seed=3
    ) as server:
        seeded = server.call("benchmarks.bench_scale:server_seed", n, seconds)
        return _in_child(
            _watch_main,
            (server.url, seeded["project_id"], seeded["ids"], seconds),
            seconds + 180,
            f"the watch of {n} targets",
        )


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
    _forget_table(section, quick)
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
