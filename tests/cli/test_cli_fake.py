"""``d360-async fake``: the fake server from the shell, used by the other commands, stopped by
Ctrl-C; and the option plumbing that forwards to ``FakeRateLimit``."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import attrs
import pytest
from cli_support import RunCli, cli_env, console_script

from d360_async import Client, Phase, TargetKind
from d360_async.cli._exit import UsageError
from d360_async.cli._fake import (
    RATE_LIMIT_FIELDS,
    SEED_OPTIONS,
    parse_fault,
    parse_range,
    rate_limit_from,
)
from d360_async.cli._parser import build_parser, parse_command_line
from d360_async.testing import FakeRateLimit


def _args(*words: str) -> argparse.Namespace:
    return parse_command_line(build_parser(), ["fake", *words])


# -- the option plumbing (no I/O) ------------------------------------------------------------


def test_every_rate_limit_field_listed_exists_and_has_an_option() -> None:
    fields = {f.name for f in attrs.fields(FakeRateLimit)}
    help_text = build_parser()._subparsers._group_actions[0].choices["fake"].format_help()  # type: ignore[union-attr]
    for name, _ in RATE_LIMIT_FIELDS:
        assert name in fields
        assert "--rate-limit-" + name.replace("_", "-") in help_text


def test_no_option_means_the_fakes_own_defaults() -> None:
    assert rate_limit_from(_args()) == FakeRateLimit()


def test_options_forward_to_fake_rate_limit() -> None:
    args = _args(
        "--rate-limit", "300/10s",
        "--rate-limit-algorithm", "token_bucket",
        "--rate-limit-reset-format", "delay",
        "--rate-limit-send-limit-and-reset", "when_exhausted",
        "--rate-limit-headers", "off",
        "--rate-limit-dialect", "vendor_page",
        "--rate-limit-burst", "50",
    )  # fmt: skip
    assert rate_limit_from(args) == FakeRateLimit(
        limit=300,
        window=10.0,
        algorithm="token_bucket",
        reset_format="delay",
        send_limit_and_reset="when_exhausted",
        headers=False,
        dialect="vendor_page",
        burst=50,
    )


def test_no_rate_limit() -> None:
    assert rate_limit_from(_args("--no-rate-limit")) is None
    with pytest.raises(UsageError, match="cannot be combined"):
        rate_limit_from(_args("--no-rate-limit", "--rate-limit", "10/s"))


@pytest.mark.parametrize(
    ("words", "fragment"),
    [
        (["--rate-limit-algorithm", "leaky"], "invalid choice"),
        (["--rate-limit-headers", "maybe"], "invalid choice"),
        (["--rate-limit-burst", "lots"], "expected a whole number"),
        (["--port", "70000"], "port"),
        (["--exports", "-1"], "whole number"),
        (["--fault", "gremlins"], "unknown fault"),
        (["--fault", "abort=2"], "within [0, 1]"),
        (["--pending", "5-1"], "LOW <= HIGH"),
        (["--failure-ratio", "1.5"], "ratio"),
    ],
)
def test_bad_options_are_usage_errors(words: list[str], fragment: str) -> None:
    with pytest.raises(UsageError, match=re.escape(fragment)):
        _args(*words)


def test_every_operation_kind_can_be_seeded() -> None:
    assert set(SEED_OPTIONS) == set(TargetKind)


def test_fault_and_range_syntax() -> None:
    assert parse_fault("http_503") == ("http_503", 0.1, None)
    assert parse_fault("abort=0.05@v3.*,v2.*") == ("abort", 0.05, ("v3.*", "v2.*"))
    assert parse_range("5") == (5.0, 5.0)
    assert parse_range("0.5-1.5") == (0.5, 1.5)


# -- the command, as a user runs it ----------------------------------------------------------


@asynccontextmanager
async def running_fake(*words: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """Start ``d360-async fake`` and yield it with its first stdout block, once it listens."""
    process = await asyncio.create_subprocess_exec(
        *console_script(), "fake", "--port", "0", *words,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env({}),
    )  # fmt: skip
    assert process.stdout is not None
    try:
        first = await asyncio.wait_for(process.stdout.readline(), 30)
        if b"{" not in first:  # the plain banner: read it up to the commands to try
            first += await asyncio.wait_for(process.stdout.readuntil(b"Then try:\n"), 30)
        yield process, first.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _stop(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_fake_serves_the_client_and_stops_cleanly_on_ctrl_c() -> None:
    async with running_fake(
        "--exports", "2", "--pending", "0", "--running", "0.1", "--json",
        "--rate-limit", "600/min", "--rate-limit-reset-format", "delay",
    ) as (process, first):  # fmt: skip
        info = json.loads(first)
        assert info["type"] == "fake"
        assert info["rate_limit"]["limit"] == 600
        assert info["rate_limit"]["reset_format"] == "delay"
        exports = info["operations"]["v3.export"]
        assert len(exports) == 2
        await asyncio.sleep(0.3)  # past the seeded lifecycles
        async with Client(api_token=info["api_token"], base_url=info["url"]) as client:
            export = await client.exports.get(info["project_id"], exports[0])
        assert export.phase is Phase.SUCCEEDED
        # The dialect asked for: the reset is a delay in seconds, not an epoch.
        headers = {"Authorization": f"Bearer {info['api_token']}"}
        url = f"{info['url']}/v3/projects/{info['project_id']}/exports/{exports[1]}"
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
            assert r.status == 200
            assert int(r.headers["X-RateLimit-Limit"]) == 600
            assert 0 < int(r.headers["X-RateLimit-Reset"]) <= 60
        code, out, err = await _stop(process)
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary == {
        "type": "summary",
        "command": "fake",
        "requests": 2,
        "rate_limited": 0,
        "exit_code": 0,
    }
    assert "Traceback" not in err
    assert "Unclosed" not in err


async def test_the_printed_export_lines_point_the_other_commands_at_it(run_cli: RunCli) -> None:
    async with running_fake("--exports", "1", "--pending", "0", "--running", "0") as (
        process,
        banner,
    ):
        exports = dict(re.findall(r"^  export (\w+)=(\S+)$", banner, re.MULTILINE))
        assert set(exports) >= {
            "D360_BASE_URL",
            "D360_API_TOKEN",
            "D360_V2_API_TOKEN",
            "D360_PROJECT_ID",
            "D360_WORKSPACE_ID",
        }
        [export_id] = re.findall(r"^  v3\.export: (\S+)$", banner, re.MULTILINE)
        assert "Ctrl-C" in banner
        # No --base-url: the status command reads D360_BASE_URL, as Client() does.
        result = await run_cli(
            "status", "exports", export_id, "--project", exports["D360_PROJECT_ID"], "--json",
            env=exports,
        )  # fmt: skip
        assert result.code == 0, result.stderr
        assert result.lines[0]["phase"] == "succeeded"
        started = await run_cli(
            "export", "--project", exports["D360_PROJECT_ID"],
            "--workspace", exports["D360_WORKSPACE_ID"], "--json",
            env=exports,
        )  # fmt: skip
        assert started.code == 0, started.stderr
        code, out, err = await _stop(process)
    assert code == 0, err
    assert "Stopped after 2 requests (0 answered 429)." in out  # one status, one create


async def test_a_busy_port_is_a_clear_error(run_cli: RunCli) -> None:
    async with running_fake("--json") as (process, first):
        port = json.loads(first)["url"].rsplit(":", 1)[1]
        result = await run_cli("fake", "--port", port, env={})
        assert result.code == 1
        result.assert_one_error_line(f"cannot listen on 127.0.0.1:{port}", "--port")
        code, _, _ = await _stop(process)
    assert code == 0
