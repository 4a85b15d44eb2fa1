"""Peer 1: one task per operation under ``asyncio.gather``, each polling then sleeping.

What a user writes first: ``await asyncio.gather(*(follow(op) for op in ops))`` where
``follow`` GETs the status, returns on a terminal one, and otherwise sleeps a fixed interval.
To be fair it is given the interval that fits the budget on average (``len(ops) / budget``
seconds), and it honours ``Retry-After`` on a 429.  It has no shared limiter, so all tasks
start together and the first round arrives as a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence

import aiohttp

from . import TERMINAL_STATUSES, PeerResult, PollJob, retry_after_seconds, status_of

__all__ = ["poll_all"]


async def poll_all(
    session: aiohttp.ClientSession,
    jobs: Sequence[PollJob],
    *,
    headers: Mapping[str, str],
    interval: float,
    deadline: float | None = None,
) -> PeerResult:
    """Follow every job until it reaches a terminal status or ``deadline`` seconds pass."""
    result = PeerResult()

    async def follow(job: PollJob) -> None:
        while True:
            wait = interval
            try:
                async with session.get(job.url, headers=headers) as response:
                    result.requests += 1
                    if response.status == 429:
                        result.throttled += 1
                        wait = retry_after_seconds(response.headers)
                        body = None
                    elif response.status != 200:
                        result.errors += 1
                        body = None
                    else:
                        body = await response.json()
            except (aiohttp.ClientError, TimeoutError):
                result.errors += 1
                body = None
            if status_of(body) in TERMINAL_STATUSES:
                result.detected_at[job.key] = time.monotonic()
                return
            await asyncio.sleep(wait)

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(deadline):
            await asyncio.gather(*(follow(job) for job in jobs))
    result.ended_at = time.monotonic()
    return result
