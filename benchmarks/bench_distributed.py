"""Distributed: four processes on one server budget, sharing a Redis limiter or not.

One fake server (its own process) enforces one budget for one token and project. Four worker
processes each run loops of ``client.exports.get`` as fast as their limiter lets them, for the
same fixed time, started together. Demand is unbounded, so the budget binds. The server plays
several policies, one per row:

* the vendor's way, scaled down (50 requests per 5 s fixed window from the first request,
  ``X-RateLimit-*`` headers), with the limit **configured** in every process;
* the default ``RedisRateLimiter`` (nothing configured) against a fixed window aligned to the
  clock (100 per 10 s, all headers, Reset as an epoch), and against an API gateway's token
  bucket (burst 20, 10 per second; ``Limit`` = the bucket, ``Reset`` = seconds to the next
  token): the cells of the policies benchmark, with four processes instead of one.

Modes: **shared**, every process uses a ``RedisRateLimiter`` on one real ``redis-server``
(started on a free 127.0.0.1 port for the run and stopped after it); **independent** (first row
only), every process has its own ``LocalRateLimiter`` configured with the whole budget (each
believes it is alone; only the response headers can tell it otherwise).

Figures, counted by the server: requests, 429s, and budget used = admitted requests / what the
policy allowed between the first and the last admission (`FakeDocument360.budget_use`).
"""

from __future__ import annotations

import asyncio
import time
from multiprocessing.connection import Connection
from typing import Any

from ._harness import MP, Section, ServerProcess, Table, TargetCheck, fmt, log, redis_server

__all__ = ["run_distributed"]

API_TOKEN = "test-api-token"
PROCESSES = 4
LOOPS_PER_PROCESS = 8
LIMIT = 50
WINDOW = 5.0
LATENCY = (0.002, 0.006)
RUN_SECONDS = 40.0
POLICY_SECONDS = 150.0  # as long as the policies benchmark runs each cell, to compare
QUICK_RUN_SECONDS = 5.0

# (label, FakeRateLimit keywords, the limit configured in every process, modes, seconds)
CELLS: tuple[tuple[str, dict[str, Any], bool, tuple[str, ...], float], ...] = (
    (
        f"fixed window {LIMIT} / {WINDOW:g} s, limit configured",
        {"limit": LIMIT, "window": WINDOW, "algorithm": "fixed_window"},
        True,
        ("shared", "independent"),
        RUN_SECONDS,
    ),
    (
        "fixed window aligned to the clock, 100 / 10 s, all headers, nothing configured",
        {"limit": 100, "window": 10.0, "algorithm": "fixed_window_aligned"},
        False,
        ("shared",),
        POLICY_SECONDS,
    ),
    (
        "fixed window aligned to the clock, 100 / 10 s, gateway dialect, nothing configured",
        {
            "limit": 100,
            "window": 10.0,
            "algorithm": "fixed_window_aligned",
            "dialect": "gateway",
        },
        False,
        ("shared",),
        POLICY_SECONDS,
    ),
    (
        "gateway token bucket, burst 20, 10/s, nothing configured",
        {
            "limit": 10,
            "window": 1.0,
            "burst": 20,
            "algorithm": "token_bucket",
            "dialect": "gateway",
        },
        False,
        ("shared",),
        POLICY_SECONDS,
    ),
)


def server_seed(fake: Any) -> dict[str, Any]:
    ids = fake.seed("v3.export", 8, pending=0.0, running=1e6)
    return {"project_id": fake.project_id, "ids": ids}


def server_counts(fake: Any) -> dict[str, Any]:
    stats = fake.stats
    uses = fake.budget_use()
    admitted = sum(use.admitted for use in uses.values())
    allowed = sum(use.allowed for use in uses.values())
    return {
        "requests": stats.requests,
        "rate_limited": stats.rate_limited,
        "admitted": admitted,
        "budget_used": admitted / allowed if allowed else 0.0,
    }


def server_reset(fake: Any) -> None:
    fake.reset_stats()
    fake.reset_rate_limits()


def _make_limiter(mode: str, redis_url: str | None, configured: bool, prefix: str) -> Any:
    from d360_async._limiters import RateLimitConfig

    config = RateLimitConfig(rate=float(LIMIT), period=WINDOW) if configured else None
    if mode == "shared":
        from d360_async._limiters._redis import RedisRateLimiter  # type: ignore[import-not-found]

        # A fresh redis-server serves each run, so no key prefix is needed to isolate it.
        return RedisRateLimiter.from_url(redis_url, config=config, prefix=prefix)
    from d360_async._limiters import LocalRateLimiter

    return LocalRateLimiter(config)


def _worker_main(
    conn: Connection,
    mode: str,
    url: str,
    redis_url: str | None,
    project_id: str,
    ids: list[str],
    seconds: float,
    configured: bool,
    prefix: str,
) -> None:
    try:
        result = asyncio.run(
            _worker(conn, mode, url, redis_url, project_id, ids, seconds, configured, prefix)
        )
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    conn.send(("ok", result))


async def _worker(
    conn: Connection,
    mode: str,
    url: str,
    redis_url: str | None,
    project_id: str,
    ids: list[str],
    seconds: float,
    configured: bool,
    prefix: str,
) -> dict[str, Any]:
    from d360_async._core._errors import D360Error

    from ._harness import client_class

    Client = client_class()

    limiter = _make_limiter(mode, redis_url, configured, prefix)
    ok = failed = 0
    loop = asyncio.get_running_loop()
    async with Client(api_token=API_TOKEN, base_url=url, rate_limiter=limiter) as client:
        conn.send(("ready", None))
        start_at: float = await loop.run_in_executor(None, conn.recv)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        stop_at = time.monotonic() + seconds

        async def run(i: int) -> None:
            nonlocal ok, failed
            n = i
            while time.monotonic() < stop_at:
                try:
                    await client.exports.get(project_id, ids[n % len(ids)])
                    ok += 1
                except D360Error:
                    failed += 1
                n += 1

        try:
            async with asyncio.timeout(seconds + 1.0):
                await asyncio.gather(*(run(i) for i in range(LOOPS_PER_PROCESS)))
        except TimeoutError:
            pass  # loops blocked in the limiter at the end of the run
        stats = client.rate_limit_stats()
    await limiter.aclose()
    return {
        "ok": ok,
        "failed": failed,
        "throttled_seen": sum(s.throttled for s in stats),
        "waits": sum(s.waits for s in stats),
    }


def _run_mode(
    mode: str,
    server: ServerProcess,
    seeded: dict[str, Any],
    redis_url: str | None,
    seconds: float,
    configured: bool,
    prefix: str,
) -> dict[str, Any]:
    server.call("benchmarks.bench_distributed:server_reset")
    workers = []
    try:
        for _ in range(PROCESSES):
            parent, child = MP.Pipe()
            proc = MP.Process(
                target=_worker_main,
                args=(
                    child,
                    mode,
                    server.url,
                    redis_url,
                    seeded["project_id"],
                    seeded["ids"],
                    seconds,
                    configured,
                    prefix,
                ),
                daemon=True,
            )
            proc.start()
            child.close()
            workers.append((parent, proc))
        for parent, _ in workers:
            if not parent.poll(60):
                raise RuntimeError("a worker did not start")
            status, value = parent.recv()
            if status != "ready":
                raise RuntimeError(f"a worker failed to start: {value}")
        start_at = time.time() + 0.5
        for parent, _ in workers:
            parent.send(start_at)
        results = []
        for parent, _ in workers:
            if not parent.poll(seconds + 90):
                raise RuntimeError("a worker did not finish in time")
            status, value = parent.recv()
            if status != "ok":
                raise RuntimeError(f"a worker failed: {value}")
            results.append(value)
    finally:
        for parent, proc in workers:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            parent.close()
    counts = server.call("benchmarks.bench_distributed:server_counts")
    return {
        "requests": counts["requests"],
        "rate_limited": counts["rate_limited"],
        "admitted": counts["admitted"],
        "budget_used": counts["budget_used"],
        "client_ok": sum(r["ok"] for r in results),
        "client_failed": sum(r["failed"] for r in results),
        "client_waits": sum(r["waits"] for r in results),
    }


def run_distributed(quick: bool = False) -> Section:
    section = Section(
        name="distributed", title="Distributed: four processes, one budget", command=""
    )
    results: dict[str, dict[str, dict[str, Any]]] = {}
    from d360_async.testing import FakeRateLimit

    with redis_server() as redis_url:
        for index, (label, policy, configured, modes, full) in enumerate(CELLS):
            seconds = QUICK_RUN_SECONDS if quick else full
            with ServerProcess(
                rate_limit=FakeRateLimit(**policy), latency=LATENCY, seed=4
            ) as server:
                seeded = server.call("benchmarks.bench_distributed:server_seed")
                for mode in modes:
                    log(f"distributed: {PROCESSES} processes, {mode}, {label}, {seconds:g} s")
                    results.setdefault(label, {})[mode] = _run_mode(
                        mode,
                        server,
                        seeded,
                        redis_url if mode == "shared" else None,
                        seconds,
                        configured,
                        f"bench-distributed-{index}",
                    )
                    results[label][mode]["seconds"] = seconds
    table = Table(
        f"{PROCESSES} processes x {LOOPS_PER_PROCESS} loops of `client.exports.get` (one "
        "token, one project), started together; the policy rows run as long as the policies "
        "benchmark runs each cell",
        [
            "server policy",
            "limiters",
            "seconds",
            "requests",
            "429s",
            "budget used",
            "calls ok",
            "calls failed",
        ],
    )
    labels = {
        "shared": "shared RedisRateLimiter",
        "independent": "independent LocalRateLimiter",
    }
    cells = [(label, r) for label, by_mode in results.items() for r in [by_mode]]
    # The bad ones first: the rows sorted by the shared limiter's budget used.
    for label, by_mode in sorted(cells, key=lambda c: c[1]["shared"]["budget_used"]):
        for mode, r in by_mode.items():
            table.rows.append(
                [
                    label,
                    labels[mode],
                    f"{r['seconds']:g}",
                    str(r["requests"]),
                    str(r["rate_limited"]),
                    fmt(r["budget_used"], 3),
                    str(r["client_ok"]),
                    str(r["client_failed"]),
                ]
            )
    section.tables.append(table)
    shared = [by_mode["shared"] for by_mode in results.values()]
    throttled = sum(r["rate_limited"] for r in shared)
    # The cells: a default limiter (nothing configured) against policies it learns.
    learned = {
        label: results[label]["shared"]
        for label, _, configured, _, _ in CELLS
        if not configured and label in results
    }
    worst_label = min(learned, key=lambda label: learned[label]["budget_used"])
    worst = learned[worst_label]["budget_used"]
    section.targets += [
        TargetCheck("shared Redis limiter: 429s, every row", "0", str(throttled), throttled == 0),
        TargetCheck(
            "shared Redis limiter, nothing configured: budget used (aligned, gateway cells)",
            ">= 0.97",
            f"worst {fmt(worst, 3)} ({worst_label})",
            worst >= 0.97,
        ),
    ]
    section.notes += [
        "Budget used: requests the server admitted over what its policy allowed between the "
        "first and the last admission. 'calls failed' are calls that raised after the "
        "client's retries (for instance `RateLimited` beyond the retry cap).",
        "Independent limiters are each configured with the whole budget, as four copies "
        "of one service would be; only the response headers can slow them down.",
        "The first row's policy (5 s windows opened by the first request, resets as whole-"
        "second epochs) costs one process alone about as much: a few tenths of a second a "
        "window (see the policies section for 10 s windows).",
    ]
    section.data = {"results": results}
    return section
