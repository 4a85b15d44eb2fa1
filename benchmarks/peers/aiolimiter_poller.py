"""Peer 2: a fixed-rate ``aiolimiter.AsyncLimiter`` shared by all tasks, plus a semaphore.

What a careful user writes: every request goes through one ``AsyncLimiter(budget, 1 s)``
(the budget is known in advance) and a semaphore bounds requests in flight.  A task whose
operation is not finished queues again at once, so the limiter's first-come order makes the
polls a round robin at exactly the budget.  ``Retry-After`` is honoured on a 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence

import aiohttp
from aiolimiter import AsyncLimiter

from . import TERMINAL_STATUSES, PeerResult, PollJob, retry_after_seconds, status_of

__all__ = ["poll_all"]


async def poll_all(
    session: aiohttp.ClientSession,
    jobs: Sequence[PollJob],
    *,
    headers: Mapping[str, str],
    rate: float,
    period: float = 1.0,
    concurrency: int = 10,
    deadline: float | None = None,
) -> PeerResult:
    """Follow every job at ``rate`` requests per ``period`` until done or ``deadline``."""
    result = PeerResult()
    limiter = AsyncLimiter(rate, period)
    in_flight = asyncio.Semaphore(concurrency)

    async def follow(job: PollJob) -> None:
        while True:
            wait = 0.0
            body = None
            async with in_flight, limiter:
                try:
                    async with session.get(job.url, headers=headers) as response:
                        result.requests += 1
                        if response.status == 429:
                            result.throttled += 1
                            wait = retry_after_seconds(response.headers)
                        elif response.status != 200:
                            result.errors += 1
                        else:
                            body = await response.json()
                except (aiohttp.ClientError, TimeoutError):
                    result.errors += 1
            if status_of(body) in TERMINAL_STATUSES:
                result.detected_at[job.key] = time.monotonic()
                return
            await asyncio.sleep(wait)  # 0 when not throttled: yield, then queue again

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(deadline):
            await asyncio.gather(*(follow(job) for job in jobs))
    result.ended_at = time.monotonic()
    return result
