"""Bad input: one clear line on stderr, the documented exit code, never a traceback."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from cli_support import V2_TOKEN, V3_TOKEN, RunCli

from d360_async import ConnectError
from d360_async.cli._exit import connection_cause, describe_error
from d360_async.testing import FakeDocument360

PROJECT = "9a3b4c5d-6e7f-8a9b-0c1d-2e3f4a5b6c7d"
EXPORT = "0f8fad5b-d9cb-469f-a165-70867728950e"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_missing_token_exits_3(run_cli: RunCli) -> None:
    result = await run_cli("watch", "exports", EXPORT, "--project", PROJECT, env={})
    assert result.code == 3
    assert result.stdout == ""
    result.assert_one_error_line("D360_API_TOKEN is not set")


async def test_missing_v2_token_names_its_variable(run_cli: RunCli) -> None:
    result = await run_cli("status", "v2-deletes", "abc123", env={"D360_API_TOKEN": V3_TOKEN})
    assert result.code == 3
    result.assert_one_error_line("D360_V2_API_TOKEN is not set")
    result.assert_no_secret()


async def test_refused_token_exits_3(fake_d360: FakeDocument360, run_cli: RunCli) -> None:
    ids = fake_d360.seed("v3.export", 2)
    result = await run_cli(
        "watch", "exports", *ids, "--project", fake_d360.project_id,
        "--base-url", fake_d360.url, "--json",
        env={"D360_API_TOKEN": "not-the-right-token-Qx93"},
    )  # fmt: skip
    assert result.code == 3
    [summary] = result.lines  # --json: the run still ends with its summary object
    assert summary["type"] == "summary"
    assert summary["exit_code"] == 3
    assert "authentication failed" in summary["error"]
    line = result.assert_one_error_line("authentication failed", "401")
    assert "not-the-right-token-Qx93" not in line
    assert "not-the-right-token-Qx93" not in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["watch", "exports", "../../etc", "--project", PROJECT], "malformed V3 export id"),
        (["watch", "exports", EXPORT, "--project", "not-a-uuid"], "malformed project id"),
        (["watch", "tasks", "a/b", "--project", PROJECT], "malformed V3 drive task id"),
        (["watch", "v2-deletes", "x%2Fy"], "malformed V2 drive file deletion id"),
        (["watch", "sd-tasks", "twelve"], "malformed SmartDocumentor task id"),
        (["status", "exports", "nope", "--project", PROJECT], "malformed V3 export id"),
        (["watch", "exports", EXPORT], "need --project"),
        (["watch", "exports", "--project", PROJECT], "no ids given"),
        (["watch", "widgets", "1"], "unknown kind 'widgets'"),
        (["watch", "exports", EXPORT, "--project", PROJECT, "--region", "mars"], "unknown region"),
        (["watch", "exports", EXPORT, "--project", PROJECT, "--rate-limit", "fast"], "rate limit"),
        (["watch", "exports", EXPORT, "--project", PROJECT, "--timeout", "-1"], "--timeout"),
        (["watch", "exports", EXPORT, "--project", PROJECT, "--base-url", "ftp://x"], "base-url"),
        (["watch", "exports", EXPORT, "--project", PROJECT, "--bogus"], "unrecognized"),
        (["status", "exports"], "required"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v)[:40],
)
async def test_usage_errors_exit_2(run_cli: RunCli, args: list[str], fragment: str) -> None:
    result = await run_cli(*args)
    assert result.code == 2, result.stderr
    assert result.stdout == ""
    result.assert_one_error_line(fragment)


async def test_unreadable_ids_file_exits_2(run_cli: RunCli, tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    result = await run_cli("watch", "v2-deletes", "--ids-file", str(missing))
    assert result.code == 2
    result.assert_one_error_line("cannot read ids file", "missing.txt")
    undecodable = tmp_path / "binary.txt"
    undecodable.write_bytes(b"\xff\xfe\x00\x81")
    result = await run_cli("watch", "v2-deletes", "--ids-file", str(undecodable))
    assert result.code == 2
    result.assert_one_error_line("cannot read ids file")


async def test_unreachable_host_exits_1(run_cli: RunCli) -> None:
    port = closed_port()
    result = await run_cli(
        "watch", "exports", EXPORT, "--project", PROJECT,
        "--base-url", f"http://127.0.0.1:{port}", "--json",
    )  # fmt: skip
    assert result.code == 1
    result.assert_one_error_line(f"cannot reach http://127.0.0.1:{port}: connection refused")
    # With --json, stdout still ends with the summary object, the error in it.
    [summary] = result.lines
    assert summary == {
        "type": "summary",
        "command": "watch",
        "error": f"cannot reach http://127.0.0.1:{port}: connection refused",
        "exit_code": 1,
    }


@pytest.mark.parametrize("command", ["watch", "status", "export"])
async def test_a_refused_port_is_named_within_a_second(run_cli: RunCli, command: str) -> None:
    port = closed_port()
    args = {
        "watch": ["watch", "exports", EXPORT],
        "status": ["status", "exports", EXPORT],
        "export": ["export", "--workspace", "w"],
    }[command]
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await run_cli(
        *args, "--project", PROJECT, "--base-url", f"http://127.0.0.1:{port}", "--json"
    )
    took = loop.time() - started
    assert result.code == 1
    result.assert_one_error_line("connection refused")
    assert result.lines[-1]["type"] == "summary"
    # The interpreter's start-up is most of this; four attempts paced by the limiter took 4 s.
    assert took < 3.0, f"{took:.1f} s"


def _chained(cause: BaseException) -> ConnectError:
    """A ConnectError as the transport raises it: ``raise ConnectError(...) from cause``."""
    try:
        try:
            raise cause
        except BaseException as exc:
            raise ConnectError("could not connect", method="GET", url="http://h/x") from exc
    except ConnectError as error:
        return error


def _connector_error(os_error: OSError) -> BaseException:
    key = SimpleNamespace(host="h", port=443, ssl=True)
    return aiohttp.ClientConnectorError(key, os_error)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cause", "kind", "text"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "refused", "connection refused"),
        (socket.gaierror(-2, "Name or service not known"), "dns", "name not resolved"),
        (ConnectionResetError(104, "reset"), "reset", "connection reset by the server"),
        (OSError(101, "Network is unreachable"), "os", "network is unreachable"),
    ],
    ids=["refused", "dns", "reset", "unreachable"],
)
def test_connection_causes_are_named(cause: OSError, kind: str, text: str) -> None:
    # Bare, and wrapped the way aiohttp wraps them, under our ConnectError.
    for inner in (cause, _connector_error(cause)):
        assert connection_cause(_chained(inner)) == (kind, text)
    assert describe_error(_chained(_connector_error(cause))) == f"cannot reach http://h: {text}"


def test_tls_causes_are_named() -> None:
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "self-signed certificate"
    key = SimpleNamespace(host="h", port=443, ssl=True)
    wrapped = aiohttp.ClientConnectorCertificateError(key, verify)  # type: ignore[arg-type]
    assert connection_cause(_chained(wrapped)) == (
        "tls",
        "TLS: certificate verify failed (self-signed certificate)",
    )
    handshake = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    handshake.reason = "WRONG_VERSION_NUMBER"
    assert connection_cause(_chained(handshake)) == ("tls", "TLS: wrong version number")


@pytest.mark.parametrize("cause", [ValueError("odd"), TimeoutError()], ids=["other", "timeout"])
def test_an_error_without_a_connection_cause_keeps_its_message(cause: BaseException) -> None:
    error = _chained(cause)
    assert connection_cause(error) is None
    assert describe_error(error) == "cannot reach http://h: could not connect"


def test_the_command_policy_gives_up_at_once_only_on_final_causes() -> None:
    from d360_async.cli._connect import CommandRetryPolicy

    policy = CommandRetryPolicy()
    refused = _chained(_connector_error(ConnectionRefusedError(111, "refused")))
    reset = _chained(_connector_error(ConnectionResetError(104, "reset")))
    assert not policy.is_retryable("GET", refused)
    assert policy.is_retryable("GET", reset)  # may well work a moment later
    assert policy.is_retryable("POST", reset)  # a ConnectError: surely not sent


async def test_a_tls_failure_is_named(fake_d360: FakeDocument360, run_cli: RunCli) -> None:
    # https:// to a plain-HTTP server: the handshake fails.
    url = fake_d360.url.replace("http://", "https://")
    result = await run_cli(
        "status", "exports", EXPORT, "--project", PROJECT, "--base-url", url, "--json"
    )
    assert result.code == 1
    line = result.assert_one_error_line(f"cannot reach {url}: TLS: ")
    assert result.lines[-1]["error"] == line.removeprefix("d360-async: error: ")


@pytest.mark.parametrize(
    "args",
    [
        ["watch", "exports", EXPORT, "--json"],  # no --project
        ["watch", "exports", "--project", PROJECT, "--json"],  # no ids
        ["status", "exports", "nope", "--project", PROJECT, "--json"],
        ["watch", "--json", "exports", EXPORT, "--project", PROJECT, "--rate-limit", "x"],
    ],
)
async def test_usage_errors_end_with_a_json_summary(run_cli: RunCli, args: list[str]) -> None:
    result = await run_cli(*args)
    assert result.code == 2
    line = result.assert_one_error_line()
    [summary] = result.lines
    assert summary["type"] == "summary"
    assert summary["exit_code"] == 2
    assert summary["error"] == line.removeprefix("d360-async: error: ")


async def test_help_and_version(run_cli: RunCli) -> None:
    # Four interpreters at once: each run is mostly one starting.
    top, watch, demo, version = await asyncio.gather(
        run_cli("--help"),
        run_cli("watch", "--help"),
        run_cli("demo", "--help"),
        run_cli("--version"),
    )
    assert top.code == 0
    assert "demo" in top.stdout
    assert "Exit codes" in top.stdout
    assert watch.code == 0
    assert "--ids-file" in watch.stdout
    assert demo.code == 0
    assert "--time-scale" not in demo.stdout
    assert version.code == 0
    assert version.stdout.startswith("d360-async ")


async def test_python_dash_m_works(run_cli: RunCli) -> None:
    import sys

    result = await run_cli(
        "status", "v2-deletes", "abc", env={}, command=[sys.executable, "-m", "d360_async.cli"]
    )
    assert result.code == 3
    result.assert_one_error_line("D360_V2_API_TOKEN")
    assert V2_TOKEN not in result.stderr


async def test_a_refused_port_fails_in_under_a_second_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from d360_async.cli import main

    monkeypatch.setenv("D360_API_TOKEN", V3_TOKEN)
    port = closed_port()
    loop = asyncio.get_running_loop()
    started = loop.time()
    code = await asyncio.to_thread(
        main,
        ["watch", "exports", EXPORT, "--project", PROJECT,
         "--base-url", f"http://127.0.0.1:{port}"],
    )  # fmt: skip
    took = loop.time() - started
    assert code == 1
    assert "connection refused" in capsys.readouterr().err
    assert took < 1.0, f"{took:.2f} s"
