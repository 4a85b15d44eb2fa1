"""The policies matrix of ``bench_policies`` in virtual time: every policy and header dialect.

Each cell runs a default ``Client()`` with `bench_policies.CALLERS` callers of
``client.exports.get`` against an in-process :class:`~d360_async.testing.FakeDocument360`
playing the cell's policy and dialect, all on one :class:`~d360_async.testing.ManualClock`, for
`bench_policies.DURATION` seconds of virtual time; the server counts its 429s and the share
of its budget used (``FakeDocument360.budget_use``), as in the real benchmark.  The whole
matrix takes about twenty seconds of CPU and is exact and repeatable, so a change to the
limiter's arithmetic can be judged before the real (wall-clock, loaded-machine) run.

``python -m benchmarks.sim_policies`` prints one line per cell.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cell_in_virtual_time"]


async def cell_in_virtual_time(
    family: dict[str, Any], dialect: dict[str, Any], duration: float | None = None
) -> tuple[int, float]:
    """``(429s, budget used)`` of one cell of the matrix, on a virtual clock."""
    from d360_async import RateLimited
    from d360_async.testing import FakeDocument360, FakeRateLimit, ManualClock

    from . import bench_policies
    from ._harness import client_class

    duration = bench_policies.DURATION if duration is None else duration
    clock = ManualClock()
    fake = FakeDocument360(
        clock=clock,
        rate_limit=FakeRateLimit(**family, **dialect),
        latency=bench_policies.LATENCY,
        seed=1,
    )
    async with fake:
        [export_id] = fake.seed("v3.export", 1, pending=0.0, running=1e9)
        async with client_class()(
            api_token=fake.api_token, base_url=fake.url, clock=clock
        ) as client:
            end = clock.now + duration

            async def caller() -> None:
                while clock.now < end:
                    try:
                        await client.exports.get(fake.project_id, export_id)
                    except RateLimited as exc:
                        # As the real benchmark's callers: wait as told (on this clock).
                        await clock.sleep(max(0.05, (exc.retry_at or 0.0) - clock.time()))

            async def callers() -> None:
                await asyncio.gather(*(caller() for _ in range(bench_policies.CALLERS)))

            await clock.run(callers())
        uses = fake.budget_use().values()
        admitted = sum(use.admitted for use in uses)
        allowed = sum(use.allowed for use in uses)
        return fake.stats.rate_limited, admitted / allowed if allowed else 1.0


def _main() -> None:  # pragma: no cover - a manual check
    from . import bench_policies

    async def run() -> None:
        for family_name, family in {**bench_policies.FAMILIES, **bench_policies.BEYOND}.items():
            for dialect_name, dialect in bench_policies.DIALECTS.items():
                throttled, used = await cell_in_virtual_time(family, dialect)
                print(f"{family_name:50} {dialect_name:52} 429s {throttled:3d} used {used:.3f}")

    asyncio.run(run())


if __name__ == "__main__":  # pragma: no cover
    _main()
