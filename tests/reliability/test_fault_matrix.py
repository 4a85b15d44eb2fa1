"""The fault matrix: 500 watched operations against a misbehaving FakeDocument360.

Each fault the fake can inject is run on its own at 20 % of the requests it applies to, then
all of them together, then a mix on a tight budget.  Every run must end each operation at its
true terminal status (the fake's own record) or with a typed error, yield no duplicate or
backwards transition, send nothing after the watch ends, and stay within the number of
requests the retry policy and its quota allow (``request_bound`` in conftest.py).

The figures of each run are printed (``pytest -s``) for the issue's closing note.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from d360_async import (
    Client,
    MalformedResponse,
    Phase,
    PollPolicy,
    RateLimitConfig,
    RetryPolicy,
    TransitionKind,
)
from d360_async._watch._watch import MALFORMED_STREAK
from d360_async.testing import FAULT_KINDS, FakeDocument360

API_FAULTS = [kind for kind in FAULT_KINDS if kind != "expired_link"]


@pytest.mark.parametrize("kind", API_FAULTS)
async def test_one_fault_at_twenty_percent(
    kind: str, run_faults: Any, scenario_cls: Any, check: Callable[..., None]
) -> None:
    # Retry-After is waited on the clock: that run takes no real time on a ManualClock.
    outcome = await run_faults(scenario_cls(faults={kind: 0.2}, manual_clock=kind == "http_503"))
    print(f"\n{kind}: {outcome.figures()}")
    check(outcome)
    assert outcome.stats.faults[kind] > 0
    if kind == "slow":  # aiohttp's real read timeout cut the held answers short, and retried
        assert outcome.attempts > outcome.first_attempts, "no read timed out"


async def test_expired_download_links(
    run_faults: Any, scenario_cls: Any, check: Callable[..., None]
) -> None:
    outcome = await run_faults(scenario_cls(faults={"expired_link": 0.2}, download=True))
    print(f"\nexpired_link: {outcome.figures()}")
    check(outcome)
    assert outcome.stats.faults["expired_link"] > 0
    assert outcome.stats.downloads_with_credentials == 0
    # A refused link is fetched again once: only two refusals in a row fail a download.
    failed = [v for v in outcome.downloads.values() if isinstance(v, BaseException)]
    assert len(failed) <= 0.1 * len(outcome.downloads)


async def test_every_fault_at_once(
    run_faults: Any, scenario_cls: Any, check: Callable[..., None]
) -> None:
    faults = dict.fromkeys(API_FAULTS, 0.02) | {"expired_link": 0.2}
    outcome = await run_faults(scenario_cls(faults=faults, download=True, seed=7))
    print(f"\nmixed: {outcome.figures()}")
    check(outcome)
    assert set(outcome.stats.faults) == set(FAULT_KINDS)


async def test_faults_on_a_tight_budget(
    run_faults: Any, scenario_cls: Any, check: Callable[..., None]
) -> None:
    # 200 requests per 2 s window for each budget (the V3 project's and the V2 token's), a
    # fraction of what the generous runs spend: the limiter, not the faults, sets the pace,
    # every operation must still end right, and 429s stay away.  (Not a 1 s window: the
    # server's Date header has whole-second resolution, so the client reads such a window's
    # reset with up to a second of uncertainty and, safely, paces it at about half speed.)
    faults = dict.fromkeys(API_FAULTS, 0.02)
    outcome = await run_faults(
        scenario_cls(faults=faults, rate=(200, 2.0), seed=11, manual_clock=True)
    )
    print(f"\ntight: {outcome.figures()}")
    check(outcome, max_429=3)
    windows = math.ceil(outcome.elapsed / 2.0) + 1
    assert outcome.stats.requests <= 2 * 200 * windows, "never faster than both budgets"


# -- the rules the matrix forced, pinned down deterministically ---------------------------------

FAST = RateLimitConfig(rate=1000.0, period=1.0)


@pytest.mark.parametrize("streak", [1, MALFORMED_STREAK - 1, MALFORMED_STREAK])
async def test_unreadable_answers_end_a_target_only_when_they_persist(streak: int) -> None:
    # With the transport's retries off (as when its retry quota has run dry), every garbled
    # 200 reaches the watch: it must poll again, and give up only after MALFORMED_STREAK.
    async with FakeDocument360(rate_limit=None) as fake:
        (export_id,) = fake.seed("v3.export", 1, pending=0.05, running=0.05, failure_ratio=0.0)
        fake.faults.next("malformed_json", count=streak, route="v3.exports.get")
        async with Client(
            api_token=fake.api_token,
            base_url=fake.url,
            rate_limit=FAST,
            retry=RetryPolicy(max_attempts=1),
        ) as client:
            target = client.exports.target(fake.project_id, export_id)
            final = await client.wait(target, policy=PollPolicy(interval=0.02, jitter=0.0))
    if streak < MALFORMED_STREAK:
        assert final.kind is TransitionKind.CHANGED
        assert final.phase is Phase.SUCCEEDED
    else:
        assert final.kind is TransitionKind.ERROR
        assert isinstance(final.error, MalformedResponse)
        assert final.error.status == 200
        assert final.polls == MALFORMED_STREAK


async def test_an_unknown_v2_code_is_never_taken_for_success() -> None:
    # A failed deletion whose first terminal answer carries a code no table knows (but
    # is_complete: true) must not be reported as SUCCEEDED: the next answer says how it ended.
    async with FakeDocument360(rate_limit=None) as fake:
        (task_id,) = fake.seed("v2.delete_file", 1, pending=0.0, running=0.0, failure_ratio=1.0)
        fake.faults.next("unknown_status", count=2, route="v2.delete_file_status")
        async with Client(
            v2_api_token=fake.v2_api_token, base_url=fake.url, rate_limit=FAST
        ) as client:
            target = client.v2.delete_file_target(task_id)
            final = await client.wait(target, policy=PollPolicy(interval=0.02, jitter=0.0))
    assert final.phase is Phase.FAILED
    assert final.raw_status == 4
