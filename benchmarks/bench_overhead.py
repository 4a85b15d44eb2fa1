"""Overhead: what the client costs per status check, and what the limiter costs per request.

**overhead**: the same number of status checks, at the same concurrency, against the same
fake server, two ways: through the full client (``client.exports.get``: limiter, retry loop,
error and envelope decoding, the typed ``Export`` model) and as a bare aiohttp ``GET`` plus
``json()``.  The figure is this process's CPU time (``time.process_time``: user + system)
per check; wall time is shown too.  The fake server runs in a *separate process* so none of
its CPU is counted (its own CPU per request is reported for scale).  The loops are
interleaved: each round runs every loop once, back to back, in an order that turns by one each
round, after a ``gc.collect()`` outside the timing.  The ratio is taken per round (a loop's CPU
over the bare loop's in the same round), and the median over rounds is reported with its
interquartile range: the machine's slow spells move both sides of a round together.

Both sides get the same fair treatment: one server, one event loop, connections kept alive
(one ``aiohttp.ClientSession`` for the bare loop, the client's own for the client), the same
concurrency, and each reads the whole body and decodes its JSON.

The client runs three ways: as built by default (``telemetry=True``: with ``opentelemetry-api``
installed and no SDK configured, the global providers are no-ops), with ``telemetry=False``,
and with the OpenTelemetry SDK recording every span and metric (an in-memory span exporter and
metric reader): the cost of telemetry per request is the difference.

The server announces an honest count (`honest_rate_limit`: a million requests per 10-second
fixed window, far above the loops' demand). One more row runs the default client against a
second server announcing a limit of 1e9 (`clamped_rate_limit`), this benchmark's server until
December 2026: the parser clamps it, so every answer reads as a refill, the limiter's costliest
case. Its ratio is against the same round's bare loop (the bare loop's cost does not depend on
the rate-limit headers it ignores).

**limiter**: ``LocalRateLimiter.acquire`` + ``complete`` pairs on one key with a limit so
large it never waits, in a tight loop: nanoseconds per pair.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._harness import Section, ServerProcess, Stopwatch, Table, TargetCheck, fmt, log

__all__ = ["run_limiter", "run_overhead"]

API_TOKEN = "test-api-token"
LATENCY = 0.003
CONCURRENCY = 16


def honest_rate_limit() -> Any:
    """The rate limit of the target's server: a count a real server could announce.

    A million requests per 10-second fixed window (`X-RateLimit-Limit`, `-Remaining` counting
    down by one per request, `-Reset`): within the parser's range (`MAX_COUNT`), and so far
    above the loops' demand (a few thousand per second) that the limiter never waits.
    """
    from d360_async.testing import FakeRateLimit

    return FakeRateLimit(limit=HONEST_LIMIT, window=HONEST_WINDOW)


def clamped_rate_limit() -> Any:
    """The rate limit this benchmark used before: a limit of 1e9, clamped by the parser.

    The parser clamps both `Limit` and `Remaining` to `MAX_COUNT` (1e6), so every answer
    reads as a budget refilled by exactly the requests sent since: the learner does its most
    expensive work on every answer, a stream no real server sends. Kept as a second row so
    the figure stays comparable with earlier runs.
    """
    from d360_async.testing import FakeRateLimit

    return FakeRateLimit(limit=10**9, window=60.0)


HONEST_LIMIT = 10**6
HONEST_WINDOW = 10.0


def token(loop: str) -> str:
    """The API token of one loop: each spends its own budget on the server (one per token
    per project, as the vendor counts), as a client alone on its token does; sharing one,
    every loop would see the others' requests, and the budget's rollovers while it was
    idle, as a refill."""
    return f"{API_TOKEN}-{loop}"


def server_seed(fake: Any, loops: list[str] | None = None) -> dict[str, Any]:
    """One export that stays running for the whole benchmark, and the loops' tokens."""
    for loop in LOOPS if loops is None else loops:
        fake.accept_token(token(loop))
    [export_id] = fake.seed("v3.export", 1, pending=0.0, running=1e6)
    return {"project_id": fake.project_id, "export_id": export_id}


def server_requests(fake: Any) -> int:
    return int(fake.stats.requests)


async def _loop(check: Callable[[], Awaitable[Any]], total: int, concurrency: int) -> None:
    per_worker, extra = divmod(total, concurrency)

    async def worker(n: int) -> None:
        for _ in range(n):
            await check()

    await asyncio.gather(*(worker(per_worker + (i < extra)) for i in range(concurrency)))


LOOPS = {
    "bare": "bare aiohttp GET + json()",
    "bare_timeouts": "the same, with the client's timeouts (informative)",
    "client": "client.exports.get (limiter, retry, decode, model)",
    "client_off": "the same, telemetry=False",
    "client_sdk": "the same, OpenTelemetry SDK recording (in-memory exporter)",
    "client_clamped": (
        "client.exports.get against a server announcing a limit of 1e9 (clamped to 1e6: "
        "every answer reads as a refill; the figure before December 2026)"
    ),
}


def _sdk_telemetry() -> tuple[Any, Callable[[], None]] | None:
    """A Telemetry on SDK providers with in-memory outputs, and how to empty them."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from d360_async import Telemetry
    except ImportError:
        return None
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry = Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)

    def drain() -> None:
        if not exporter.get_finished_spans():
            raise RuntimeError("the SDK loop recorded no span")
        exporter.clear()
        reader.get_metrics_data()

    return telemetry, drain


async def _measure(
    url: str,
    project_id: str,
    export_id: str,
    *,
    checks: int,
    rounds: int,
    clamped: tuple[str, str, str] | None = None,
) -> dict[str, Any]:
    import contextlib

    import aiohttp

    from ._harness import client_class

    Client = client_class()
    from d360_async import Timeouts
    from d360_async._limiters import RateLimitConfig

    status_url = f"{url}/v3/projects/{project_id}/exports/{export_id}"

    def headers(loop: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(loop)}", "Accept": "application/json"}

    bare_headers, timed_headers = headers("bare"), headers("bare_timeouts")
    sdk = _sdk_telemetry()
    variants: dict[str, Any] = {"client": True, "client_off": False}
    if sdk is not None:
        variants["client_sdk"] = sdk[0]
    # Each client loop's server: the honest one, or (`client_clamped`) the clamped one.
    where = {name: (url, project_id, export_id) for name in variants}
    if clamped is not None:
        where["client_clamped"] = clamped
        variants["client_clamped"] = True
    samples: dict[str, list[tuple[float, float]]] = {
        "bare": [],
        "bare_timeouts": [],
        **{n: [] for n in variants},
    }
    waits = throttled = 0
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        # The client bounds every request (total, connect, and each read, as a library must);
        # aiohttp arms a timer for each bound. This loop shows what that costs aiohttp
        # itself; the target compares against the plain bare loop above.
        t = Timeouts()
        timed = await stack.enter_async_context(
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=t.total, sock_connect=t.connect, sock_read=t.read
                )
            )
        )
        clients = {
            name: await stack.enter_async_context(
                Client(
                    api_token=token(name),
                    base_url=where[name][0],
                    rate_limit=RateLimitConfig(rate=1e9, period=60.0),
                    telemetry=telemetry,
                )
            )
            for name, telemetry in variants.items()
        }

        async def bare() -> Any:
            async with session.get(status_url, headers=bare_headers) as response:
                response.raise_for_status()
                return await response.json()

        async def bare_timeouts() -> Any:
            async with timed.get(status_url, headers=timed_headers) as response:
                response.raise_for_status()
                return await response.json()

        def full(client: Any, project: str, export: str) -> Callable[[], Awaitable[Any]]:
            async def check() -> Any:
                return await client.exports.get(project, export)

            return check

        loops = {
            "bare": bare,
            "bare_timeouts": bare_timeouts,
            **{name: full(client, *where[name][1:]) for name, client in clients.items()},
        }
        for check in loops.values():  # warm up: connections, caches, first-call costs
            await _loop(check, max(CONCURRENCY * 4, checks // 10), CONCURRENCY)
        names = list(loops)
        for r in range(rounds):
            # Interleaved: every round runs each loop once, back to back, and the order turns
            # by one each round, so no loop always runs first (or right after another).
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                gc.collect()  # outside the stopwatch: no loop pays for another's garbage
                with Stopwatch() as sw:
                    await _loop(loops[name], checks, CONCURRENCY)
                samples[name].append((sw.cpu, sw.wall))
                if name == "client_sdk" and sdk is not None:
                    sdk[1]()  # outside the stopwatch: memory stays flat over rounds
        for client in clients.values():
            waits += sum(s.waits for s in client.rate_limit_stats())
            throttled += sum(s.throttled for s in client.rate_limit_stats())
    return {"samples": samples, "limiter_waits": waits, "throttled": throttled}


async def _hook_path(hooks: Any, n: int, drain: Callable[[], None] | None) -> float:
    """CPU µs per request for the events the transport emits for one plain GET."""
    from d360_async._core._config import (
        LimiterWaitEvent,
        RequestEndEvent,
        RequestEvent,
        ResponseEvent,
        notify,
    )
    from d360_async._core._ratelimit._protocol import Priority, RateLimitKey

    key = RateLimitKey(host="127.0.0.1:1", token_fingerprint="fp:bench", project_id="p")
    url = "http://127.0.0.1:1/v3/projects/p/exports/e"
    start = time.process_time()
    for call in range(1, n + 1):
        await notify(
            hooks.on_limiter_wait,
            LimiterWaitEvent("GET", url, 1, 0.0, key, Priority.DIRECT, call),
        )
        await notify(hooks.on_request, RequestEvent("GET", url, 1, call))
        await notify(hooks.on_response, ResponseEvent("GET", url, 1, 200, 0.001, call))
        await notify(hooks.on_request_end, RequestEndEvent("GET", url, call, 0.002, None))
        if drain is not None and call % 5000 == 0:
            drain()
    return (time.process_time() - start) / n * 1e6


def _hook_table(quick: bool) -> tuple[Table, dict[str, float]]:
    from d360_async import Hooks, Telemetry

    n = 20_000 if quick else 100_000
    rows: list[tuple[str, Any, Callable[[], None] | None]] = [
        ("no subscriber (the events alone; telemetry=False skips even these)", Hooks(), None),
        (
            "telemetry on, no SDK configured, if called (the transport calls none of them then)",
            Telemetry().hooks(),
            None,
        ),
    ]
    sdk = _sdk_telemetry()
    if sdk is not None:
        rows.append(("telemetry on, SDK recording (in-memory exporter)", sdk[0].hooks(), sdk[1]))
    table = Table(
        f"the hook events of one GET ({n:,} in a tight loop, no network), best of 3",
        ["hooks", "CPU per request (µs)"],
    )
    figures: dict[str, float] = {}
    for label, hooks, drain in rows:
        best = min(asyncio.run(_hook_path(hooks, n, drain)) for _ in range(3))
        figures[label] = best
        table.rows.append([label, fmt(best, 1)])
    return table, figures


def _spread(values: list[float]) -> tuple[float, float, float]:
    """Median and interquartile range (p25, p75) of a sample."""
    ordered = sorted(values)
    if len(ordered) < 2:
        return ordered[0], ordered[0], ordered[0]
    p25, p50, p75 = statistics.quantiles(ordered, n=4, method="inclusive")
    return p50, p25, p75


def run_overhead(quick: bool = False) -> Section:
    checks = 300 if quick else 2000
    rounds = 3 if quick else 15
    section = Section(name="overhead", title="Overhead per status check", command="")
    with (
        ServerProcess(rate_limit=honest_rate_limit(), latency=LATENCY, seed=1) as server,
        ServerProcess(rate_limit=clamped_rate_limit(), latency=LATENCY, seed=1) as old,
    ):
        ids = server.call("benchmarks.bench_overhead:server_seed")
        old_ids = old.call("benchmarks.bench_overhead:server_seed")
        log(f"overhead: {rounds} rounds x {checks} checks per loop, concurrency {CONCURRENCY}")
        cpu_server0 = server.cpu_seconds()
        requests0 = server.call("benchmarks.bench_overhead:server_requests")
        result = asyncio.run(
            _measure(
                server.url,
                ids["project_id"],
                ids["export_id"],
                checks=checks,
                rounds=rounds,
                clamped=(old.url, old_ids["project_id"], old_ids["export_id"]),
            )
        )
        server_cpu = server.cpu_seconds() - cpu_server0
        served = server.call("benchmarks.bench_overhead:server_requests") - requests0

    samples = result["samples"]

    def per_check(name: str, index: int) -> list[float]:
        return [s[index] / checks * 1e6 for s in samples[name]]

    measured = [name for name in LOOPS if samples.get(name)]
    cpu_spread = {n: _spread(per_check(n, 0)) for n in measured}
    cpu = {n: cpu_spread[n][0] for n in measured}
    wall = {n: statistics.median(per_check(n, 1)) for n in measured}
    # The ratio of each round (a loop against the bare loop of the same round, minutes apart
    # at most), then the median over rounds: a slow spell of the machine moves both sides.
    bare_cpu = per_check("bare", 0)
    ratios = {
        n: _spread([c / b for c, b in zip(per_check(n, 0), bare_cpu, strict=True)])
        for n in measured
    }
    ratio, ratio_p25, ratio_p75 = ratios["client"]
    table = Table(
        f"{checks} checks per round, {rounds} interleaved rounds, {CONCURRENCY} concurrent, "
        f"{LATENCY * 1000:g} ms server latency; medians over rounds, interquartile range "
        "in brackets",
        ["loop", "CPU per check (µs)", "wall per check (µs)", "CPU ratio (per round)"],
    )
    for name in measured:
        mid, lo, hi = cpu_spread[name]
        r_mid, r_lo, r_hi = ratios[name]
        table.rows.append(
            [
                LOOPS[name],
                f"{fmt(mid, 0)} [{fmt(lo, 0)}-{fmt(hi, 0)}]",
                fmt(wall[name], 0),
                f"{r_mid:.2f}x [{r_lo:.2f}-{r_hi:.2f}]",
            ]
        )
    section.tables.append(table)
    section.targets.append(
        TargetCheck(
            "client CPU / bare aiohttp CPU",
            "<= 1.25x",
            f"{ratio:.2f}x (IQR {ratio_p25:.2f}-{ratio_p75:.2f})",
            ratio <= 1.25,
        )
    )
    hook_table, hook_figures = _hook_table(quick)
    section.tables.append(hook_table)
    telemetry_cost: dict[str, float] = {}
    if "client_sdk" in cpu:
        telemetry_cost["sdk_us_per_request"] = cpu["client_sdk"] - cpu["client_off"]
        telemetry_cost["noop_us_per_request"] = cpu["client"] - cpu["client_off"]
        section.notes.append(
            "Telemetry per request (CPU): "
            f"{telemetry_cost['sdk_us_per_request']:.0f} µs with the SDK recording every span "
            f"and metric, {telemetry_cost['noop_us_per_request']:.0f} µs with the API "
            "installed and no SDK configured (the default client), against "
            "`telemetry=False`, in the loops above; differences of ~20 µs between identical "
            "clients are noise there, so the second table measures the telemetry's own work "
            "on the events of one request, without the network."
        )
    else:
        section.notes.append("opentelemetry-sdk is not installed: the telemetry rows are missing.")
    section.notes += [
        "CPU is this process's `time.process_time()` (user + system); the fake server runs in "
        "its own process, so its CPU is not counted. For scale, the server spent "
        f"{server_cpu / max(served, 1) * 1e6:.0f} µs of CPU per request.",
        f"The server announces {HONEST_LIMIT:,} requests per {HONEST_WINDOW:g}-second fixed "
        "window (`X-RateLimit-Limit`, `-Remaining` counting down by one per request, "
        "`-Reset`), far above what the loops ask: the limiter made "
        f"{result['limiter_waits']} requests wait, and {result['throttled']} were answered "
        "429. The target is the first client row. The last row runs the same client against "
        "a second server announcing a limit of 1e9, this benchmark's server until December "
        "2026: the parser clamps it to 1e6 for both `Limit` and `Remaining`, so every answer "
        "reads as a budget refilled by exactly the requests sent, and the limiter learns a "
        "refill from every answer (a stream no real server sends).",
    ]
    section.data = {
        "cpu_us_per_check": cpu,
        "wall_us_per_check": wall,
        "ratio": ratio,
        "ratio_iqr": [ratio_p25, ratio_p75],
        "ratio_per_loop": {n: list(ratios[n]) for n in measured},
        "cpu_iqr_us_per_check": {n: [cpu_spread[n][1], cpu_spread[n][2]] for n in measured},
        "telemetry": telemetry_cost,
        "hook_path_us_per_request": hook_figures,
        "checks": checks,
        "rounds": rounds,
        "concurrency": CONCURRENCY,
        "samples": result["samples"],
        "server_cpu_us_per_request": server_cpu / max(served, 1) * 1e6,
    }
    return section


# -- the limiter alone -------------------------------------------------------------------------


async def _limiter_pairs(n: int, with_headers: bool) -> float:
    from d360_async._limiters import (
        LocalRateLimiter,
        RateLimitConfig,
        RateLimitKey,
        RateLimitState,
    )

    limiter = LocalRateLimiter(RateLimitConfig(rate=1e12, period=1.0))
    key = RateLimitKey(host="127.0.0.1:1", token_fingerprint="sha256:bench", project_id="p")
    state = RateLimitState(limit=10**12, remaining=10**12 - 1) if with_headers else None
    for _ in range(1000):  # warm up
        ticket = await limiter.acquire(key)
        await limiter.complete(ticket, status=200, state=state)
    start = time.perf_counter_ns()
    for _ in range(n):
        ticket = await limiter.acquire(key)
        await limiter.complete(ticket, status=200, state=state)
    elapsed = time.perf_counter_ns() - start
    waits = sum(s.waits for s in limiter.stats())
    await limiter.aclose()
    if waits:
        raise RuntimeError(f"the limiter made {waits} acquisitions wait; the limit is too low")
    return elapsed / n


def run_limiter(quick: bool = False) -> Section:
    n = 20_000 if quick else 200_000
    repeats = 1 if quick else 5
    section = Section(name="limiter", title="Rate limiter acquire + complete", command="")
    table = Table(
        f"{n:,} sequential acquire + complete pairs on one key, best of {repeats}",
        ["variant", "ns per pair"],
    )
    figures = {}
    for label, headers in (("no rate-limit headers", False), ("with Limit/Remaining", True)):
        best = min(asyncio.run(_limiter_pairs(n, headers)) for _ in range(repeats))
        figures[label] = best
        table.rows.append([label, fmt(best, 0)])
    section.tables.append(table)
    section.notes.append(
        "Measured with `LocalRateLimiter(RateLimitConfig(rate=1e12, period=1))` so it never "
        "waits; the figure is the bookkeeping cost each request pays."
    )
    section.data = {"ns_per_pair": figures, "pairs": n}
    return section
