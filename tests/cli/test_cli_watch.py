"""``d360-async watch`` as a subprocess against the fake: JSON lines, exit codes 0 and 1."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from cli_support import RunCli

from d360_async.testing import FakeDocument360

QUICK = {"pending": (0.05, 0.3), "running": (0.1, 0.6)}
# The fake's budget (tests/cli/conftest.py) told to the CLI, and polls 0.1 s apart instead of
# the default 1 s: without the budget, the client starts at the default 60 a minute, and the
# watch waits out that second before its second poll, though the first answer announced more.
# The defaults are kept by test_watch_exports_json_lines.
BRISK = ("--rate-limit", "40/s", "--interval", "0.1")
TERMINAL = {"succeeded", "failed", "cancelled"}


def check_transitions(
    lines: list[dict[str, Any]], ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """One line per change, in order per id, starting from None, ending final and terminal."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        assert set(line) >= {
            "id",
            "kind",
            "previous",
            "phase",
            "raw_status",
            "observed_at",
            "polls",
            "error",
        }
        by_id.setdefault(line["id"], []).append(line)
    assert sorted(by_id) == sorted(ids)
    for changes in by_id.values():
        assert changes[0]["previous"] is None
        for before, after in itertools.pairwise(changes):
            assert after["previous"] == before["phase"]
            if after["kind"] == "changed":
                # A change of phase or of raw status: SmartDocumentor's Running and InReview
                # are both the RUNNING phase.
                assert (after["phase"], after["raw_status"]) != (
                    before["phase"],
                    before["raw_status"],
                )
            assert after["polls"] >= before["polls"]
            assert after["observed_at"] >= before["observed_at"]
        assert changes[-1]["final"] is True
        assert all(not c["final"] for c in changes[:-1])
    return by_id


async def test_watch_exports_json_lines(fake_d360: FakeDocument360, run_cli: RunCli) -> None:
    ids = fake_d360.seed("v3.export", 6, failure_ratio=0.0, **QUICK)
    result = await run_cli(
        "watch", "exports", "--project", fake_d360.project_id, *ids,
        "--base-url", fake_d360.url, "--json",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    lines = result.lines
    assert lines[-1]["type"] == "summary"
    transitions = result.of_type("transition")
    assert len(transitions) == len(lines) - 1
    by_id = check_transitions(transitions, ids)
    for changes in by_id.values():
        assert changes[-1]["phase"] == "succeeded"
        assert changes[-1]["raw_status"] == "Completed"
        assert changes[-1]["kind"] == "changed"
    summary = lines[-1]
    assert summary["total"] == 6
    assert summary["succeeded"] == 6
    assert summary["exit_code"] == 0
    assert summary["transitions"] == len(transitions)
    assert summary["throttled"] == 0
    assert fake_d360.stats.rate_limited == 0
    # Every operation's end was served and seen.
    for export_id in ids:
        assert fake_d360.operation(export_id).first_terminal_served_at is not None
    result.assert_no_secret()


async def test_a_failed_operation_exits_1(fake_d360: FakeDocument360, run_cli: RunCli) -> None:
    good = fake_d360.seed("v3.drive_task", 2, failure_ratio=0.0, **QUICK)
    bad = fake_d360.seed("v3.drive_task", 1, failure_ratio=1.0, **QUICK)
    result = await run_cli(
        "watch", "tasks", *good, *bad, "--project", fake_d360.project_id,
        "--base-url", fake_d360.url, "--json", *BRISK,
    )  # fmt: skip
    assert result.code == 1, result.stderr
    by_id = check_transitions(result.of_type("transition"), good + bad)
    assert by_id[bad[0]][-1]["phase"] == "failed"
    assert by_id[bad[0]][-1]["raw_status"] == "Failed"
    summary = result.lines[-1]
    assert (summary["succeeded"], summary["failed"], summary["exit_code"]) == (2, 1, 1)


async def test_timeout_exits_1_with_timed_out_transitions(
    fake_d360: FakeDocument360, run_cli: RunCli
) -> None:
    [slow] = fake_d360.seed("v3.export", 1, pending=0.0, running=600.0)
    # Ended before the CLI starts: seen at its first poll, however late (a lifecycle on the
    # real clock would race the CLI's start-up against its 1 s timeout).
    [quick] = fake_d360.seed("v3.export", 1, failure_ratio=0.0, pending=0.0, running=0.0)
    result = await run_cli(
        "watch", "exports", slow, quick, "--project", fake_d360.project_id,
        "--base-url", fake_d360.url, "--json", "--timeout", "1", *BRISK,
    )  # fmt: skip
    assert result.code == 1, result.stderr
    by_id = check_transitions(result.of_type("transition"), [slow, quick])
    assert by_id[slow][-1]["kind"] == "timed_out"
    assert by_id[slow][-1]["phase"] == "running"
    assert by_id[quick][-1]["phase"] == "succeeded"
    summary = result.lines[-1]
    assert (summary["timed_out"], summary["succeeded"]) == (1, 1)


async def test_ids_file_and_v2_deletes(
    fake_d360: FakeDocument360, run_cli: RunCli, tmp_path: Path
) -> None:
    ids = fake_d360.seed("v2.delete_file", 4, failure_ratio=0.0, **QUICK)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# deletions started by the nightly job\n" + "\n".join(ids) + "\n\n")
    result = await run_cli(
        "watch", "v2-deletes", "--ids-file", str(ids_file), "--base-url", fake_d360.url, "--json",
        *BRISK,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    by_id = check_transitions(result.of_type("transition"), ids)
    assert {changes[-1]["raw_status"] for changes in by_id.values()} == {3}
    result.assert_no_secret()


async def test_ids_from_stdin_for_smartdocumentor(
    fake_d360: FakeDocument360, run_cli: RunCli
) -> None:
    ids = fake_d360.seed("smartdocumentor.task", 2, failure_ratio=0.0, review=(0.05, 0.2), **QUICK)
    result = await run_cli(
        "watch", "sd-tasks", "--ids-file", "-", "--base-url", fake_d360.url, "--json", *BRISK,
        stdin=" ".join(ids),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    by_id = check_transitions(result.of_type("transition"), ids)
    assert all(changes[-1]["phase"] == "succeeded" for changes in by_id.values())
    assert fake_d360.stats.token_requests == 1
    result.assert_no_secret()


async def test_plain_output_without_a_terminal(fake_d360: FakeDocument360, run_cli: RunCli) -> None:
    ids = fake_d360.seed("v3.import", 2, failure_ratio=0.0, **QUICK)
    result = await run_cli(
        "watch", "imports", *ids, "--project", fake_d360.project_id, "--base-url", fake_d360.url,
        *BRISK,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert "\x1b[" not in out  # no escape codes in a pipe
    for import_id in ids:
        assert f"v3.import {import_id}: " in out
    assert "2/2 operations ended" in out
    assert "v3.import      2          2" in out


async def test_verbose_logging_never_shows_a_token(
    fake_d360: FakeDocument360, run_cli: RunCli
) -> None:
    ids = fake_d360.seed("v3.export", 2, failure_ratio=0.0, **QUICK)
    result = await run_cli(
        "-vv", "watch", "exports", *ids, "--project", fake_d360.project_id,
        "--base-url", fake_d360.url, "--json", "--rate-limit", "20/s", "--max-concurrency", "2",
        "--interval", "0.1",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert "DEBUG" in result.stderr  # logging really was on
    result.assert_no_secret()
