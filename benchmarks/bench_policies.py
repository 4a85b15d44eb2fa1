"""Does the limiter spend whatever budget the server enforces? Every policy, every dialect.

Each cell is one fake Document360 server (in its own process) playing one rate-limit policy
and one header dialect, and one default `Client(api_token=...)` (no `rate_limit=`: the
vendor's 60 per minute is only its prior) whose callers always want more than the budget
allows. The server measures, from its side:

- **429s**: requests it refused;
- **budget used**: admitted requests / what the policy allowed, over the whole windows
  between the client's first and last admission (see
  `d360_async.testing._fake._ratelimit.budget_used`: end effects out, waste inside in).

All cells run at the same time (the servers are mostly idle; the client side is one event
loop), so the whole matrix takes about one cell's duration. The "no headers" cells configure
the limit (`rate_limit=`) correctly, then twice too high.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Mapping
from typing import Any

from ._harness import Section, ServerProcess, Table, TargetCheck, fmt, log

API_TOKEN = "bench-policies-token"
LATENCY = (0.002, 0.02)
INTERNET = (0.005, 0.15)
"""Latency each way of a server across the internet: the matrix again, beyond its target."""
CALLERS = 32
DURATION = 150.0
QUICK_DURATION = 30.0

FAMILIES: dict[str, dict[str, Any]] = {
    "fixed window aligned to the clock (100 / 10 s)": {
        "algorithm": "fixed_window_aligned",
        "limit": 100,
        "window": 10.0,
    },
    "fixed window from the first request (60 / 10 s)": {
        "algorithm": "fixed_window",
        "limit": 60,
        "window": 10.0,
    },
    "sliding window (100 / 10 s)": {"algorithm": "sliding_window", "limit": 100, "window": 10.0},
    "token bucket, burst 20, 10/s": {
        "algorithm": "token_bucket",
        "limit": 10,
        "window": 1.0,
        "burst": 20,
    },
}

BEYOND: dict[str, dict[str, Any]] = {
    "sliding-window counter (100 / 10 s)": {
        "algorithm": "sliding_counter",
        "limit": 100,
        "window": 10.0,
    },
}
"""Policies outside the target matrix, measured the same way and reported beside it: the
weighted two-window counter many gateways use instead of a sliding log (its `Reset` is the
current window's end, which does not bring the budget back)."""

DIALECTS: dict[str, dict[str, Any]] = {
    "all headers (Reset as epoch)": {"dialect": "x-ratelimit"},
    "Limit/Reset only when exhausted (Reset in seconds)": {"dialect": "vendor_page"},
    "Remaining only": {"dialect": "remaining_only"},
    "IETF RateLimit fields": {"dialect": "ietf"},
    "gateway (Reset = next token)": {"dialect": "gateway"},
}

BLIND = {
    "no headers, limit configured": 1.0,
    "no headers, configured 2x too high": 2.0,
}


def server_prepare(server: Any) -> dict[str, Any]:
    """Runs in the server process: one export to poll."""
    ids = server.seed("v3.export", 1, pending=0.0, running=1e9)
    return {"project_id": server.project_id, "export_id": ids[0]}


def server_outcome(server: Any) -> dict[str, Any]:
    """Runs in the server process: 429s and the budget used, as the server saw them."""
    uses = server.budget_use()
    admitted = sum(use.admitted for use in uses.values())
    allowed = sum(use.allowed for use in uses.values())
    return {
        "throttled": server.stats.rate_limited,
        "requests": server.stats.requests,
        "admitted": admitted,
        "allowed": allowed,
        "share": admitted / allowed if allowed else None,
    }


async def _drive(url: str, ids: Mapping[str, str], rate: Any, deadline: float) -> dict[str, Any]:
    from d360_async import Client, D360Error, RateLimited

    errors = 0
    async with Client(api_token=API_TOKEN, base_url=url, rate_limit=rate) as client:

        async def caller() -> None:
            nonlocal errors
            while True:
                try:
                    await client.exports.get(ids["project_id"], ids["export_id"])
                except RateLimited as exc:
                    # The budget is paused past the retry cap: wait as told, as a user would.
                    errors += 1
                    await asyncio.sleep(max(0.05, (exc.retry_at or 0.0) - time.time()))
                except D360Error:
                    errors += 1
                    await asyncio.sleep(0.05)

        # Demand stops at the deadline, waiters and requests in flight included.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await asyncio.gather(*(caller() for _ in range(CALLERS)))
        stats = client.rate_limit_stats()
    policy = stats[0].policy if stats and stats[0].policy is not None else None
    return {
        "errors": errors,
        "learned": policy.describe() if policy is not None else "-",
    }


async def _run_cells(cells: list[dict[str, Any]], duration: float) -> None:
    deadline = time.monotonic() + duration
    results = await asyncio.gather(
        *(_drive(c["server"].url, c["ids"], c["rate"], deadline) for c in cells)
    )
    for cell, result in zip(cells, results, strict=True):
        cell.update(result)


def run_policies(quick: bool = False) -> Section:
    from d360_async import RateLimitConfig
    from d360_async.testing import FakeRateLimit

    duration = QUICK_DURATION if quick else DURATION
    cells: list[dict[str, Any]] = []
    for family, fkw in {**FAMILIES, **BEYOND}.items():
        for dialect, dkw in DIALECTS.items():
            cells.append(
                {"family": family, "dialect": dialect, "policy": FakeRateLimit(**fkw, **dkw)}
            )
        for blind, factor in BLIND.items():
            policy = FakeRateLimit(**fkw, dialect="none")
            per_minute = policy.sustained_rate * 60.0 * factor
            cells.append(
                {
                    "family": family,
                    "dialect": blind,
                    "policy": policy,
                    "rate": RateLimitConfig(rate=per_minute, period=60.0),
                }
            )
    far = [
        {"family": family, "dialect": dialect, "policy": FakeRateLimit(**fkw, **dkw)}
        for family, fkw in FAMILIES.items()
        for dialect, dkw in DIALECTS.items()
    ]
    log(f"policies: {len(cells)} cells for {duration:.0f} s each, all at once")
    _run_phase(cells, duration, LATENCY)
    log(f"policies: the matrix across the internet, {len(far)} cells at 5-150 ms each way")
    _run_phase(far, duration, INTERNET)
    return _section(cells, far, duration)


def _run_phase(cells: list[dict[str, Any]], duration: float, latency: tuple[float, float]) -> None:
    """One fake server process per cell (`latency` each way), all driven at once."""
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            servers = list(
                pool.map(
                    lambda index: ServerProcess(
                        api_token=API_TOKEN,
                        rate_limit=cells[index]["policy"],
                        latency=latency,
                        seed=index,
                    ).start(),
                    range(len(cells)),
                )
            )
        for cell, server in zip(cells, servers, strict=True):
            cell["server"] = server
            cell["ids"] = server.call("benchmarks.bench_policies:server_prepare")
            cell.setdefault("rate", None)
        asyncio.run(_run_cells(cells, duration))
        for cell in cells:
            cell.update(cell["server"].call("benchmarks.bench_policies:server_outcome"))
    finally:
        for cell in cells:
            if "server" in cell:
                cell["server"].stop()


def _table(title: str, cells: list[dict[str, Any]]) -> Table:
    """One row per cell, the bad cells first: they are what to read."""
    table = Table(
        title=title, columns=["policy", "headers", "429s", "budget used", "requests", "learned"]
    )
    for cell in sorted(cells, key=lambda c: c["share"] if c["share"] is not None else 0.0):
        table.rows.append(
            [
                cell["family"],
                cell["dialect"],
                str(cell["throttled"]),
                fmt(cell["share"], 3),
                str(cell["requests"]),
                cell.get("learned", "-"),
            ]
        )
    return table


def _section(cells: list[dict[str, Any]], far: list[dict[str, Any]], duration: float) -> Section:
    section = Section(name="policies", title="Rate limiter: every server policy", command="")
    section.tables.append(
        _table(f"Default Client() against each policy, {CALLERS} callers, {duration:.0f} s", cells)
    )
    matrix = [c for c in cells if c["dialect"] in DIALECTS and c["family"] in FAMILIES]
    worst = min(matrix, key=lambda c: c["share"] or 0.0)
    section.targets.append(
        TargetCheck(
            "every policy x dialect: 429s",
            "0",
            str(sum(c["throttled"] for c in matrix)),
            all(c["throttled"] == 0 for c in matrix),
        )
    )
    met = sum(1 for c in matrix if (c["share"] or 0.0) >= 0.97)
    section.targets.append(
        TargetCheck(
            "every policy x dialect: budget used",
            ">= 0.97 in every cell",
            f"{met} of {len(matrix)} cells; worst {fmt(worst['share'], 3)} "
            f"({worst['family']}, {worst['dialect']})",
            met == len(matrix),
        )
    )
    for family in BEYOND:
        row = [c for c in cells if c["family"] == family and c["dialect"] in DIALECTS]
        low = min(row, key=lambda c: c["share"] or 0.0)
        throttled = [c for c in row if c["throttled"]]
        section.targets.append(
            TargetCheck(
                f"beyond the matrix, {family}: 429s and budget used, every dialect",
                "0 429s, >= 0.97 used",
                f"{sum(c['throttled'] for c in row)} 429s"
                + (f" ({', '.join(c['dialect'] for c in throttled)})" if throttled else "")
                + f"; worst {fmt(low['share'], 3)} ({low['dialect']})",
                not throttled and (low["share"] or 0.0) >= 0.97,
            )
        )
    for blind, factor in BLIND.items():
        group = [c for c in cells if c["dialect"] == blind and c["family"] in FAMILIES]
        requests = sum(c["requests"] for c in group) or 1
        refused = sum(c["throttled"] for c in group)
        lowest = min(c["share"] or 0.0 for c in group)
        if factor == 1.0:
            section.targets.append(
                TargetCheck(
                    blind,
                    "0 429s, >= 0.95 used",
                    f"{refused} 429s, worst {lowest:.3f}",
                    refused == 0 and lowest >= 0.95,
                )
            )
        else:
            share = refused / requests
            section.targets.append(
                TargetCheck(
                    blind,
                    "<= 1 % 429s, >= 0.90 used",
                    f"{share:.2%} 429s, worst {lowest:.3f}",
                    share <= 0.01 and lowest >= 0.90,
                )
            )
    section.tables.append(
        _table(f"Across the internet (5-150 ms each way), the same matrix, {duration:.0f} s", far)
    )
    far_low = min(far, key=lambda c: c["share"] or 0.0)
    far_met = sum(1 for c in far if (c["share"] or 0.0) >= 0.95)
    far_refused = sum(c["throttled"] for c in far)
    section.targets.append(
        TargetCheck(
            "beyond the matrix, across the internet (5-150 ms each way): 429s and budget used",
            "0 429s, >= 0.95 in every cell",
            f"{far_refused} 429s; {far_met} of {len(far)} cells; worst {fmt(far_low['share'], 3)} "
            f"({far_low['family']}, {far_low['dialect']})",
            far_refused == 0 and far_met == len(far),
        )
    )
    keep = ("server", "policy", "rate", "ids")
    section.data["cells"] = [{k: v for k, v in c.items() if k not in keep} for c in cells]
    section.data["internet"] = [{k: v for k, v in c.items() if k not in keep} for c in far]
    section.notes.append(
        "Budget used is measured by each server over the whole windows between the client's "
        "first and last admission (a token bucket: from the first to the last, allowed = "
        "burst + refill). Each cell's client is `Client(api_token=...)` with no `rate_limit=`, "
        "except the no-headers cells, which configure it. The matrix runs at 2-20 ms each way "
        "(a fake on 127.0.0.1); it runs again at 5-150 ms, after it, as a server across the "
        "internet would answer (a credit comes back no sooner than a window after its "
        "answer, so a round trip is a share of every window that no limiter can prove)."
    )
    return section
