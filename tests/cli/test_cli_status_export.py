"""``d360-async status`` and ``d360-async export`` as subprocesses against the fake."""

from __future__ import annotations

from pathlib import Path

from cli_support import RunCli

from d360_async.testing import FakeDocument360


async def test_status_json_redacts_the_download_link(
    fake_d360: FakeDocument360, run_cli: RunCli
) -> None:
    [export_id] = fake_d360.seed("v3.export", 1, pending=0.0, running=0.0)
    result = await run_cli(
        "status", "v3.export", export_id, "--project", fake_d360.project_id,
        "--base-url", fake_d360.url, "--json",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    record, summary = result.lines
    assert summary == {
        "type": "summary",
        "command": "status",
        "id": export_id,
        "phase": "succeeded",
        "exit_code": 0,
    }
    assert record["type"] == "status"
    assert record["id"] == export_id
    assert record["phase"] == "succeeded"
    assert record["raw_status"] == "Completed"
    assert record["terminal"] is True
    link = record["snapshot"]["download_url"]
    assert "sig=REDACTED" in link
    assert "se=REDACTED" in link
    result.assert_no_secret()


async def test_status_table_and_failed_exit_code(
    fake_d360: FakeDocument360, run_cli: RunCli
) -> None:
    [running] = fake_d360.seed("v3.drive_task", 1, pending=0.0, running=600.0)
    result = await run_cli(
        "status", "tasks", running, "--project", fake_d360.project_id, "--base-url", fake_d360.url
    )
    assert result.code == 0, result.stderr
    assert "phase       running" in result.stdout
    assert "raw status  Processing" in result.stdout
    [failed] = fake_d360.seed("v2.delete_file", 1, pending=0.0, running=0.0, failure_ratio=1.0)
    result = await run_cli("status", "v2-deletes", failed, "--base-url", fake_d360.url, "--json")
    assert result.code == 1
    assert result.lines[0]["phase"] == "failed"


async def test_status_of_an_unknown_operation_exits_1(
    fake_d360: FakeDocument360, run_cli: RunCli
) -> None:
    result = await run_cli(
        "status", "exports", "0f8fad5b-d9cb-469f-a165-70867728950e",
        "--project", fake_d360.project_id, "--base-url", fake_d360.url,
    )  # fmt: skip
    assert result.code == 1
    result.assert_one_error_line("404")


async def test_export_wait_and_download(
    fake_d360: FakeDocument360, run_cli: RunCli, tmp_path: Path
) -> None:
    fake_d360.lifecycle = type(fake_d360.lifecycle)(pending=(0.05, 0.1), running=(0.1, 0.3))
    dest = tmp_path / "out.zip"
    result = await run_cli(
        "export", "--project", fake_d360.project_id, "--workspace", "ws-1", "--format", "pdf",
        "--download", str(dest), "--base-url", fake_d360.url, "--json",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    lines = result.lines
    assert lines[0]["type"] == "export"
    export_id = lines[0]["id"]
    assert [line["phase"] for line in result.of_type("transition")][-1] == "succeeded"
    summary = lines[-1]
    assert summary["type"] == "summary"
    assert summary["outcome"] == "succeeded"
    assert summary["bytes"] == fake_d360.download_size
    assert dest.read_bytes() == fake_d360.download_bytes(export_id)
    assert fake_d360.stats.downloads_served == 1
    assert not fake_d360.stats.download_credentials_seen
    result.assert_no_secret()


async def test_export_without_wait_prints_the_id(
    fake_d360: FakeDocument360, run_cli: RunCli
) -> None:
    result = await run_cli(
        "export", "--project", fake_d360.project_id, "--workspace", "ws-1",
        "--base-url", fake_d360.url,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    [operation] = fake_d360.operations("v3.export")
    assert result.stdout.strip() == f"export {operation.id} started"


async def test_export_plain_output_with_progress(
    fake_d360: FakeDocument360, run_cli: RunCli, tmp_path: Path
) -> None:
    fake_d360.lifecycle = type(fake_d360.lifecycle)(pending=(0.05, 0.1), running=(0.1, 0.3))
    dest = tmp_path / "export.zip"
    result = await run_cli(
        "export", "--project", fake_d360.project_id, "--workspace", "ws-1",
        "--download", str(dest), "--base-url", fake_d360.url,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert "download: 100% of" in result.stdout
    assert f"saved to {dest}" in result.stdout
    assert dest.stat().st_size == fake_d360.download_size


async def test_export_without_wait_ends_with_a_json_summary(
    fake_d360: FakeDocument360, run_cli: RunCli
) -> None:
    result = await run_cli(
        "export", "--project", fake_d360.project_id, "--workspace", "ws-1",
        "--base-url", fake_d360.url, "--json",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    started, summary = result.lines
    assert started["type"] == "export"
    assert summary["type"] == "summary"
    assert summary["command"] == "export"
    assert summary["id"] == started["id"]
    assert summary["outcome"] == "started"
    assert summary["exit_code"] == 0
