"""``d360-async watch --save-priors / --priors / --interval`` against the fake."""

from __future__ import annotations

import json
from pathlib import Path

from cli_support import RunCli

from d360_async.testing import FakeDocument360

QUICK = {"pending": (0.05, 0.2), "running": (0.6, 1.2)}


async def test_priors_saved_by_one_run_make_the_next_warm(
    fake_d360: FakeDocument360, run_cli: RunCli, tmp_path: Path
) -> None:
    saved = tmp_path / "exports.priors"
    first = fake_d360.seed("v3.export", 8, failure_ratio=0.0, **QUICK)
    result = await run_cli(
        "watch", "exports", "--project", fake_d360.project_id, *first,
        "--base-url", fake_d360.url, "--json", "--interval", "0.1", "--save-priors", str(saved),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    priors = json.loads(saved.read_text())
    assert priors["version"] == 1
    assert any(m["kind"] == "v3.export" and m["n"] >= 8 for m in priors["models"])
    # The second run knows how long exports take from its first status on.  Its exports wait
    # longer than a loaded machine takes to start the CLI, so none has ended by its first poll.
    second = fake_d360.seed(
        "v3.export", 4, failure_ratio=0.0, pending=(4.0, 5.0), running=(0.6, 1.2)
    )
    result = await run_cli(
        "watch", "exports", "--project", fake_d360.project_id, *second,
        "--base-url", fake_d360.url, "--json", "--interval", "0.1", "--priors", str(saved),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    firsts = [t for t in result.of_type("transition") if t["previous"] is None]
    assert len(firsts) == 4
    assert not any(t["final"] for t in firsts), "an export ended before the CLI's first poll"
    assert all(t["eta"] is not None and t["eta"]["low"] <= t["eta"]["high"] for t in firsts)
    assert all(t["eta"] is None for t in result.of_type("transition") if t["final"])


async def test_bad_priors_file_is_a_usage_error(
    fake_d360: FakeDocument360, run_cli: RunCli, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.priors"
    bad.write_text('{"version": 1, "models": "nope"}')
    ids = fake_d360.seed("v3.export", 1, failure_ratio=0.0, **QUICK)
    result = await run_cli(
        "watch", "exports", "--project", fake_d360.project_id, *ids,
        "--base-url", fake_d360.url, "--priors", str(bad),
    )  # fmt: skip
    assert result.code == 2
    assert "--priors" in result.stderr
    assert "not a priors or checkpoint file" in result.stderr
    missing = await run_cli(
        "watch", "exports", "--project", fake_d360.project_id, *ids,
        "--base-url", fake_d360.url, "--priors", str(tmp_path / "absent"),
    )  # fmt: skip
    assert missing.code == 2
    assert "cannot read --priors" in missing.stderr
