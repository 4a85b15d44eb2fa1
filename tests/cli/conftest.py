"""Fixtures for the CLI tests: ``run_cli`` and the fake behind the plugin's ``fake_d360``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from cli_support import (
    SD_ID,
    SD_SECRET,
    V2_TOKEN,
    V3_TOKEN,
    Result,
    RunCli,
    cli_env,
    console_script,
)


@pytest.fixture
def run_cli() -> RunCli:
    """``await run_cli("watch", ..., env={...}, stdin=None)`` -> :class:`Result`."""

    async def run(
        *args: str,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        deadline: float = 60.0,
        command: list[str] | None = None,
    ) -> Result:
        credentials = (
            {
                "D360_API_TOKEN": V3_TOKEN,
                "D360_V2_API_TOKEN": V2_TOKEN,
                "SD_CLIENT_ID": SD_ID,
                "SD_CLIENT_SECRET": SD_SECRET,
            }
            if env is None
            else env
        )
        process = await asyncio.create_subprocess_exec(
            *(command or console_script()),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=cli_env(credentials),
        )
        try:
            out, err = await asyncio.wait_for(
                process.communicate(stdin.encode() if stdin is not None else None), deadline
            )
        except TimeoutError:  # pragma: no cover - only on a hang
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())

    return run


@pytest.fixture
def fake_d360_options() -> dict[str, Any]:
    """The fake behind ``fake_d360`` (the plugin's fixture) for the CLI tests."""
    from d360_async.testing import FakeRateLimit

    return {
        "api_token": V3_TOKEN,
        "v2_api_token": V2_TOKEN,
        "sd_client_id": SD_ID,
        "sd_client_secret": SD_SECRET,
        # Tight enough to bind within a test, loose enough to keep it fast.
        "rate_limit": FakeRateLimit(limit=40, window=1.0),
        "seed": 11,
    }
