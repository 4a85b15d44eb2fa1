"""``d360-async demo`` end to end, with lifecycles shrunk so a run takes about a second.

``--fast --time-scale 0.3`` shrinks every lifecycle to 1.5 % of the demo's own (an export
runs for at most 0.7 s); where the default budget (300 requests per 10 s, which paces a run at
30 a second) is not what a test checks, a larger one keeps the run from waiting on it.
"""

from __future__ import annotations

import sys
from collections import Counter

from cli_support import RunCli

from d360_async.cli._demo import DEFAULT_BUDGET, plan_demo

TERMINAL = {"succeeded", "failed", "cancelled"}
QUICK = ("--fast", "--time-scale", "0.3")


def test_plan_splits_the_count_between_populations() -> None:
    plan = plan_demo(500, budget=DEFAULT_BUDGET, scale=1.0, seed=1)
    assert {p.group: n for p, n in plan.counts} == {
        "v3.export": 300,
        "v3.drive_task": 100,
        "v2.delete_file": 100,
    }
    odd = plan_demo(7, budget=DEFAULT_BUDGET, scale=0.5, seed=1)
    assert odd.total == 7
    assert odd.scaled((2.0, 10.0)) == (1.0, 5.0)


async def test_demo_json(run_cli: RunCli) -> None:
    result = await run_cli(
        "demo", "--count", "40", "--seed", "5", "--json", *QUICK, "--rate-limit", "300/s", env={}
    )
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    lines = result.lines
    assert lines[0]["type"] == "demo"
    assert lines[0]["operations"] == {"v3.export": 24, "v3.drive_task": 8, "v2.delete_file": 8}
    transitions = result.of_type("transition")
    finals = [t for t in transitions if t["final"]]
    # Every operation was watched to a terminal phase, exactly once.
    assert len(finals) == 40
    assert len({t["id"] for t in finals}) == 40
    assert all(t["phase"] in TERMINAL and t["kind"] == "changed" for t in finals)
    assert Counter(t["operation"] for t in finals) == {
        "v3.export": 24,
        "v3.drive_task": 8,
        "v2.delete_file": 8,
    }
    summary = lines[-1]
    assert summary["type"] == "summary"
    assert summary["total"] == 40
    assert summary["succeeded"] + summary["failed"] == 40
    assert summary["throttled"] == 0
    assert summary["exit_code"] == 0
    assert summary["delay_p50"] is not None
    assert summary["delay_p99"] >= summary["delay_p50"] >= 0
    assert summary["requests"] >= 40 + 24  # a poll per operation at least, plus the creates


async def test_demo_plain_output_in_a_pipe(run_cli: RunCli) -> None:
    result = await run_cli("demo", "--count", "10", "--seed", "6", *QUICK, env={})
    assert result.code == 0, result.stderr
    out = result.stdout
    assert "\x1b[" not in out
    assert "budget 300/10s per token" in out
    assert "0/10 done" in out  # a plain progress line, not a live panel
    assert "10/10 operations watched to the end" in out
    assert "delay p50" in out
    assert "0 answered 429" in out


async def test_demo_without_rich_falls_back_to_plain(run_cli: RunCli) -> None:
    program = (
        "import sys; sys.modules['rich'] = None\n"
        "from d360_async.cli import main\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    result = await run_cli(
        "demo", "--count", "10", *QUICK, "--rate-limit", "200/s", env={},
        command=[sys.executable, "-c", program],
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert result.stderr.splitlines() == [
        "d360-async: rich is not installed; showing plain output (pip install 'd360-async[cli]')"
    ]
    assert "10/10 operations watched to the end" in result.stdout
    assert "budget 200/s per token" in result.stdout
