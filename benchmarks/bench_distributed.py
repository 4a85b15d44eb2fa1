"""Distributed: four processes on one server budget, sharing a Redis limiter or not.

One fake server (its own process) enforces one budget for one token and project, the
vendor's way: a fixed window (50 requests per 5 s here, i.e. 10 per second, a scaled-down
"60 per minute") with ``X-RateLimit-*`` headers and ``Retry-After`` on a 429.  Four worker
processes each run four loops of ``client.exports.get`` as fast as their limiter lets them,
for the same fixed time, started together.  Demand is unbounded, so the budget binds.

* **shared**: every process uses a ``RedisRateLimiter`` on one real ``redis-server``
  (started on a free 127.0.0.1 port for the run and stopped after it).
* **independent**: every process has its own ``LocalRateLimiter``, configured with the
  whole budget (each believes it is alone); only the response headers can tell it otherwise.

Figures, counted by the server: requests, 429s, and budget used = admitted requests / (limit
x windows in the run).
"""

from __future__ import annotations

import asyncio
import math
import time
from multiprocessing.connection import Connection
from typing import Any

from ._harness import MP, Section, ServerProcess, Table, TargetCheck, fmt, log, redis_server

__all__ = ["run_distributed"]

API_TOKEN = "test-api-token"
PROCESSES = 4
LOOPS_PER_PROCESS = 4
LIMIT = 50
WINDOW = 5.0
LATENCY = (0.002, 0.006)
RUN_SECONDS = 30.0
QUICK_RUN_SECONDS = 5.0


def server_seed(fake: Any) -> dict[str, Any]:
    ids = fake.seed("export", 8, pending=0.0, running=1e6)
    return {"project_id": fake.project_id, "ids": ids}


def server_counts(fake: Any) -> dict[str, Any]:
    stats = fake.stats
    return {
        "requests": stats.requests,
        "rate_limited": stats.rate_limited,
        "admitted_times": list(stats.admitted_times),
    }


def server_reset(fake: Any) -> None:
    fake.reset_stats()
    fake.reset_rate_limits()


def _make_limiter(mode: str, redis_url: str | None) -> Any:
    from d360_async._limiters import RateLimitConfig

    config = RateLimitConfig(rate=float(LIMIT), period=WINDOW)
    if mode == "shared":
        from d360_async._limiters._redis import RedisRateLimiter  # type: ignore[import-not-found]

        # A fresh redis-server serves each run, so no key prefix is needed to isolate it.
        return RedisRateLimiter.from_url(redis_url, config=config)
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
) -> None:
    try:
        result = asyncio.run(_worker(conn, mode, url, redis_url, project_id, ids, seconds))
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
) -> dict[str, Any]:
    from d360_async._core._errors import D360Error

    from ._harness import client_class

    Client = client_class()

    limiter = _make_limiter(mode, redis_url)
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
    mode: str, server: ServerProcess, seeded: dict[str, Any], redis_url: str | None, seconds: float
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
    admitted = counts["admitted_times"]
    if admitted:
        first = min(admitted)
        windows = max(1, math.ceil(seconds / WINDOW))
        in_run = sum(1 for t in admitted if t < first + windows * WINDOW)
        used = in_run / (LIMIT * windows)
    else:
        used = 0.0
    return {
        "requests": counts["requests"],
        "rate_limited": counts["rate_limited"],
        "admitted": len(admitted),
        "budget_used": used,
        "client_ok": sum(r["ok"] for r in results),
        "client_failed": sum(r["failed"] for r in results),
        "client_waits": sum(r["waits"] for r in results),
    }


def run_distributed(quick: bool = False) -> Section:
    from d360_async.testing import FakeRateLimit

    seconds = QUICK_RUN_SECONDS if quick else RUN_SECONDS
    section = Section(
        name="distributed", title="Distributed: four processes, one budget", command=""
    )
    rate_limit = FakeRateLimit(limit=LIMIT, window=WINDOW, algorithm="fixed_window")
    results: dict[str, dict[str, Any]] = {}
    with ServerProcess(rate_limit=rate_limit, latency=LATENCY, seed=4) as server:
        seeded = server.call("benchmarks.bench_distributed:server_seed")
        with redis_server() as redis_url:
            for mode in ("shared", "independent"):
                log(f"distributed: {PROCESSES} processes, {mode} limiters, {seconds:.0f} s")
                results[mode] = _run_mode(
                    mode, server, seeded, redis_url if mode == "shared" else None, seconds
                )
    table = Table(
        f"{PROCESSES} processes x {LOOPS_PER_PROCESS} loops of `client.exports.get`, "
        f"{seconds:g} s; server budget {LIMIT} per {WINDOW:g} s fixed window (one token, "
        "one project)",
        ["limiters", "requests", "429s", "budget used", "calls ok", "calls failed"],
    )
    labels = {
        "shared": "shared RedisRateLimiter",
        "independent": "independent LocalRateLimiter",
    }
    for mode, r in results.items():
        table.rows.append(
            [
                labels[mode],
                str(r["requests"]),
                str(r["rate_limited"]),
                fmt(r["budget_used"], 3),
                str(r["client_ok"]),
                str(r["client_failed"]),
            ]
        )
    section.tables.append(table)
    shared = results["shared"]
    section.targets += [
        TargetCheck(
            "shared Redis limiter: 429s",
            "0",
            str(shared["rate_limited"]),
            shared["rate_limited"] == 0,
        ),
        TargetCheck(
            "shared Redis limiter: budget used",
            ">= 0.97",
            fmt(shared["budget_used"], 3),
            shared["budget_used"] >= 0.97,
        ),
    ]
    section.notes += [
        "Budget used: requests the server admitted in the whole windows the run covered, "
        "over the limit times those windows. 'calls failed' are calls that raised after "
        "the client's retries (for instance `RateLimited` beyond the retry cap).",
        "Independent limiters are each configured with the whole budget, as four copies "
        "of one service would be; only the response headers can slow them down.",
    ]
    section.data = {"results": results, "seconds": seconds, "limit": LIMIT, "window": WINDOW}
    return section
