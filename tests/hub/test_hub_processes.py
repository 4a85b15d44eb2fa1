"""Four OS processes, one real redis-server, one budget: one poll per export, and kill -9.

The "Done when" of issue 17 part 2, run with the benchmark's own scenario
(``benchmarks/bench_hub.py``, section ``hub`` of ``make bench``): the fake server in its own
process, four worker processes each watching the same 300 exports through a
``RedisRateLimiter`` and an ``ObservationHub``.  Each export is PENDING 3-4 s then RUNNING 5-7
s, long enough that a change can only be missed by a watch that lost it (not by a slow poll).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks._harness import ServerProcess, redis_server
from benchmarks.bench_hub import LIMIT, WINDOW, Scenario, run_scenario
from d360_async.testing import FakeRateLimit

# Real OS processes over real seconds: not in the default run (`make test-slow`, run by .ci/run).
pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[ServerProcess, str]]:
    rate_limit = FakeRateLimit(limit=LIMIT, window=WINDOW, algorithm="fixed_window")
    with (
        ServerProcess(rate_limit=rate_limit, latency=(0.002, 0.006), seed=17) as server,
        redis_server() as url,
    ):
        yield server, url


def _check(result: dict[str, Any]) -> None:
    assert result["stories_ok"], result["story_problems"]
    assert result["rate_limited"] == 0


@pytest.mark.timeout(240)
def test_four_processes_poll_like_one(world: tuple[ServerProcess, str]) -> None:
    server, url = world
    alone = run_scenario(Scenario(processes=1, hub=False), server, url)
    shared = run_scenario(Scenario(), server, url)
    _check(alone)
    _check(shared)
    assert len(shared["used_per_process"]) == 4
    # Exact: no poll was made that some process did not use...
    assert shared["server_polls"] <= 1.1 * min(shared["used_per_process"]), shared
    assert sum(shared["polls_per_process"]) == shared["server_polls"]
    # ...and against one process watching as many exports alone.
    assert shared["server_polls"] <= 1.1 * alone["server_polls"], (shared, alone)


@pytest.mark.timeout(240)
def test_kill_9_of_a_lease_holder(world: tuple[ServerProcess, str]) -> None:
    server, url = world
    result = run_scenario(Scenario(kill=True), server, url)
    _check(result)  # every survivor: every change once, in order (none lost in the gap)
    assert len(result["used_per_process"]) == 3
    assert result["victim_leases"] > 0
    assert result["taken_over"] == result["victim_leases"]
    # Within the lease TTL of the kill (sampled every 20 ms).
    assert result["takeover_max"] <= result["lease_ttl"] + 0.05, result
    assert result["server_polls"] <= 1.1 * min(result["used_per_process"]), result
