"""Correctness of the benchmark code itself: the floor, the peers, the harness, the results.

No timing is asserted here; the figures are the benchmarks' job (``python -m benchmarks``).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from pathlib import Path

import aiohttp
import pytest

from benchmarks import floor
from benchmarks._harness import (
    LagTicker,
    Section,
    Table,
    TargetCheck,
    percentile,
    render_markdown,
    write_results,
)
from benchmarks.bench_budget import budget_used, busy_window
from benchmarks.peers import PollJob, aiolimiter_poller, naive_gather, status_of
from d360_async import TargetKind
from d360_async.testing import FakeDocument360, FakeRateLimit

# -- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0], 50, 1.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 50, 3.0),
        ([1.0, 2.0], 50, 1.5),
        ([5.0, 1.0, 3.0], 0, 1.0),
        ([5.0, 1.0, 3.0], 100, 5.0),
    ],
    ids=["one", "odd", "even", "min", "max"],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


# -- the floor -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pending", "running", "not_done_at", "t"),
    [
        ((2.0, 20.0), (10.0, 60.0), 0.0, 40.0),
        ((2.0, 20.0), (10.0, 60.0), 30.0, 50.0),
        ((0.0, 1.0), (1.0, 5.0), 2.0, 4.0),
        ((5.0, 6.0), (15.0, 60.0), 25.0, 90.0),
    ],
    ids=["prior", "not-done-at-30", "quick", "narrow-pending"],
)
def test_expected_undetected_matches_sampling(
    pending: tuple[float, float], running: tuple[float, float], not_done_at: float, t: float
) -> None:
    rng = random.Random(1)
    samples = []
    while len(samples) < 40_000:
        c = rng.uniform(*pending) + rng.uniform(*running)
        if c > not_done_at:
            samples.append(max(0.0, t - c))
    sampled = sum(samples) / len(samples)
    exact = floor.expected_undetected(t, pending, running, not_done_at)
    assert exact == pytest.approx(sampled, rel=0.03, abs=0.05)


def test_expected_undetected_is_zero_before_anything_can_finish() -> None:
    assert floor.expected_undetected(11.9, (2.0, 20.0), (10.0, 60.0), 0.0) == 0.0
    assert floor.expected_undetected(5.0, (2.0, 20.0), (10.0, 60.0), 5.0) == 0.0


TINY = floor.Workload(
    "tiny",
    (
        floor.Population("drive_task", 10, (0.0, 1.0), (1.0, 3.0)),
        floor.Population("export", 30, (2.0, 8.0), (5.0, 20.0)),
    ),
    budget=2.0,
)


@pytest.mark.parametrize("policy", ["oracle", "round_robin"])
def test_floor_detects_everything_with_sane_delays(policy: floor.Policy) -> None:
    result = floor.simulate(TINY, policy=policy, seed=3)
    assert len(result.all_delays) == TINY.size
    assert all(d >= 0 for d in result.all_delays)
    assert result.polls <= result.slots
    # Nobody waits longer than the last completion plus a full cycle of the budget.
    ops = floor.sample_operations(TINY, seed=3)
    longest = max(op.completes_at for op in ops)
    assert max(result.all_delays) <= longest + TINY.size / TINY.budget


def test_oracle_beats_round_robin_on_a_mixed_population() -> None:
    ops = floor.sample_operations(TINY, seed=5)
    oracle = floor.simulate(TINY, ops, policy="oracle")
    rr = floor.simulate(TINY, ops, policy="round_robin")
    assert percentile(oracle.delays["drive_task"], 50) < percentile(rr.delays["drive_task"], 50)
    assert percentile(oracle.all_delays, 50) <= percentile(rr.all_delays, 50)


def test_oracle_leaves_slots_unused_while_nothing_can_have_finished() -> None:
    workload = floor.Workload(
        "late", (floor.Population("export", 5, (10.0, 10.0), (5.0, 6.0)),), 1.0
    )
    result = floor.simulate(workload, policy="oracle")
    assert result.polls < result.slots
    assert len(result.all_delays) == 5


# -- budget accounting -----------------------------------------------------------------------


def test_busy_window_and_budget_used() -> None:
    finished = [5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0]
    detected = [6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 15.0, 30.0]
    window = busy_window(finished, detected)
    assert window == (5.0, 15.0)  # the 9th of 10 detections closes it
    admitted = [i * 0.1 for i in range(400)]  # 10 per second for 40 s
    assert budget_used(admitted, window, 10.0) == pytest.approx(1.0, abs=0.02)
    assert budget_used(admitted, window, 20.0) == pytest.approx(0.5, abs=0.02)


# -- the peers -------------------------------------------------------------------------------


def test_status_of() -> None:
    assert status_of({"data": {"status": "Completed"}}) == "Completed"
    assert status_of({"data": None}) is None
    assert status_of("nope") is None


@pytest.mark.parametrize("peer", ["naive", "aiolimiter"])
async def test_peer_polls_every_operation_to_the_end_and_stops(peer: str) -> None:
    async with FakeDocument360(
        rate_limit=FakeRateLimit(limit=100, window=1.0, algorithm="token_bucket"), seed=2
    ) as fake:
        ids = fake.seed("v3.export", 6, pending=(0.0, 0.1), running=(0.1, 0.3))
        ids += fake.seed("v3.drive_task", 4, pending=0.0, running=(0.1, 0.2))
        kinds = {i: fake.operation(i).kind for i in ids}
        paths = {TargetKind.V3_EXPORT: "exports", TargetKind.V3_DRIVE_TASK: "drive/tasks"}
        jobs = [
            PollJob(i, kinds[i], f"{fake.url}/v3/projects/{fake.project_id}/{paths[kinds[i]]}/{i}")
            for i in ids
        ]
        headers = {"Authorization": f"Bearer {fake.api_token}"}
        async with aiohttp.ClientSession() as session:
            if peer == "naive":
                result = await naive_gather.poll_all(
                    session, jobs, headers=headers, interval=0.2, deadline=10.0
                )
            else:
                result = await aiolimiter_poller.poll_all(
                    session, jobs, headers=headers, rate=50.0, deadline=10.0
                )
        assert set(result.detected_at) == set(ids)
        for op_id, seen in result.detected_at.items():
            assert seen >= fake.operation(op_id).finished_at
        assert result.requests == fake.stats.requests
        assert result.throttled == fake.stats.rate_limited
        polls = fake.stats.requests
        await asyncio.sleep(0.2)
        assert fake.stats.requests == polls  # nothing keeps polling after the return


async def test_peer_gives_up_at_its_deadline() -> None:
    async with FakeDocument360(rate_limit=None) as fake:
        [op_id] = fake.seed("v3.export", 1, pending=100.0, running=100.0)
        url = f"{fake.url}/v3/projects/{fake.project_id}/exports/{op_id}"
        async with aiohttp.ClientSession() as session:
            result = await aiolimiter_poller.poll_all(
                session,
                [PollJob(op_id, "export", url)],
                headers={"Authorization": f"Bearer {fake.api_token}"},
                rate=50.0,
                deadline=0.3,
            )
    assert result.detected_at == {}
    assert result.requests > 0


# -- harness and results ---------------------------------------------------------------------


async def test_lag_ticker_records_lag_and_rss() -> None:
    async with LagTicker(0.005, rss_every=2) as ticker:
        await asyncio.sleep(0.05)
    assert len(ticker.lags) >= 3
    assert all(lag >= 0 for lag in ticker.lags)
    assert ticker.peak_rss > 0
    assert set(ticker.summary_ms()) == {"ticks", "p50", "p99", "max"}


MACHINE = {
    "cpu_model": "Test CPU",
    "cpu_cores_logical": 2,
    "cpu_cores_physical": 1,
    "ram_gib": 1.0,
    "os": "TestOS",
    "python": "CPython 3.11",
    "aiohttp": "3",
    "aiolimiter": "1",
    "d360_async": "0",
    "redis_py": "5",
    "redis_server": "7",
    "git_commit": "abc",
    "load_average_at_start": [0.1, 0.2, 0.3],
    "date": "2026-01-01T00:00:00+00:00",
}


def _section(name: str, value: float) -> Section:
    return Section(
        name=name,
        title=f"Section {name}",
        command=f"python -m benchmarks --only {name}",
        tables=[Table("t", ["a", "b|c"], [["1", "2"]])],
        targets=[TargetCheck("x", "<= 1", f"{value}", value <= 1)],
        notes=["a note"],
        data={"value": value, "missing": math.nan},
    )


def test_results_are_strict_json_and_readable_markdown(tmp_path: Path) -> None:
    doc = write_results(
        [_section("overhead", 0.5), _section("scale", 2.0)],
        directory=tmp_path,
        command="python -m benchmarks",
        machine=MACHINE,
    )
    loaded = json.loads((tmp_path / "latest.json").read_text(), parse_constant=pytest.fail)
    assert loaded == doc
    assert loaded["sections"]["overhead"]["data"]["missing"] is None
    assert loaded["machine"]["cpu_model"] == "Test CPU"
    md = (tmp_path / "latest.md").read_text()
    assert "Test CPU" in md
    assert "**MISSED**" in md  # scale's target was not met, and says so
    assert "| met |" in md
    assert "`python -m benchmarks --only scale`" in md
    assert "b\\|c" in md
    assert not list(tmp_path.glob("*.tmp"))


def test_results_merge_keeps_sections_not_rerun(tmp_path: Path) -> None:
    write_results(
        [_section("overhead", 0.5), _section("scale", 2.0)],
        directory=tmp_path,
        command="all",
        machine=MACHINE,
    )
    write_results(
        [_section("scale", 0.9)], directory=tmp_path, command="one", merge=True, machine=MACHINE
    )
    loaded = json.loads((tmp_path / "latest.json").read_text())
    assert list(loaded["sections"]) == ["overhead", "scale"]
    assert loaded["sections"]["scale"]["data"]["value"] == 0.9
    assert "**MISSED**" not in render_markdown(loaded)


def test_an_operation_never_seen_done_counts_until_the_deadline() -> None:
    from benchmarks.bench_budget import _measured_row

    truth = {
        "ops": {
            "a": {"finished_at": 10.0},
            "b": {"finished_at": 20.0},
        },
        "requests": 7,
        "rate_limited": 1,
        "admitted_times": [5.0, 11.0, 12.0, 13.0, 14.0, 15.0],
    }
    result = {"detected_at": {"a": 12.5}, "cpu": 0.1}
    row = _measured_row("p", {"a": "export", "b": "export"}, truth, result, deadline_at=50.0)
    assert sorted(row.delays["export"]) == [2.5, 30.0]
    assert row.undetected == 1
    assert row.throttled == 1
    assert row.early == 1  # the request at t=5 came before the first completion (t=10)


def test_runner_lists_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.__main__ import SECTIONS, main

    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SECTIONS)


def test_the_library_scheduler_in_the_simulation_is_round_robin_on_look_alikes() -> None:
    """The real pure scheduler, driven on the same draws: look-alike operations are served
    exactly round robin; on a mixed population it sends the polls to the quick kind."""
    from benchmarks.sim_scheduler import simulate_library

    alike = floor.Workload(
        "alike", (floor.Population("export", 60, (2.0, 20.0), (10.0, 60.0)),), 2.0
    )
    ops = floor.sample_operations(alike, 3)
    lib = simulate_library(alike, ops)
    rr = floor.simulate(alike, ops, policy="round_robin")
    assert sorted(lib.all_delays) == pytest.approx(sorted(rr.all_delays))
    mixed = floor.Workload(
        "mixed",
        (
            floor.Population("drive_task", 20, (0.0, 1.0), (1.0, 5.0)),
            floor.Population("export", 80, (5.0, 20.0), (15.0, 60.0)),
        ),
        2.0,
    )
    ops = floor.sample_operations(mixed, 3)
    lib = simulate_library(mixed, ops)
    rr = floor.simulate(mixed, ops, policy="round_robin")
    assert len(lib.all_delays) == len(ops)
    assert percentile(lib.delays["drive_task"], 50) < 0.5 * percentile(rr.delays["drive_task"], 50)
    assert lib.eta_inside, "first sightings after the models were trained carry an ETA"
    outside = len(lib.eta_inside) - sum(lib.eta_inside)
    assert lib.eta_early + lib.eta_late == outside


def test_the_eta_calibration_summary_accounts_for_every_announced_interval() -> None:
    """``python -m benchmarks.sim_scheduler --eta``: per workload and token spacing, the
    shares inside, early and late of the intervals announced at first sight add up."""
    from benchmarks.sim_scheduler import eta_calibration

    rows = eta_calibration([0])
    assert {(name, tokens) for name, tokens, *_ in rows} == {
        (name, tokens) for name in ("alike", "mixed") for tokens in ("even", "fixed 10 s")
    }
    for _, _, announced, inside, early, late in rows:
        assert announced > 100  # most operations are first seen after their kind is known
        assert inside + early + late == pytest.approx(1.0)
        assert 0.5 < inside < 1.0
