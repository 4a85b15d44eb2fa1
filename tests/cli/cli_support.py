"""Helpers for running the ``d360-async`` console script as a subprocess against a fake.

The fake server runs in the test's event loop, so the subprocess is awaited with asyncio (a
blocking ``subprocess.run`` would stop the loop and the fake with it).  Credentials go to the
child through ``env`` only, and are distinctive so that a leak into any output is caught.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

V3_TOKEN = "v3-token-Zq8JQmXv2pL"
V2_TOKEN = "v2-token-Hn4sTfW9kRc"
SD_ID = "sd-client-cli"
SD_SECRET = "sd-secret-Yb7uKd3Ga1"
SECRETS = (V3_TOKEN, V2_TOKEN, SD_SECRET)

# Every variable the CLI reads credentials from; removed from the inherited environment.
CREDENTIAL_VARS = ("D360_API_TOKEN", "D360_V2_API_TOKEN", "SD_CLIENT_ID", "SD_CLIENT_SECRET")


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("d360-async")
    if script.exists():
        return [str(script)]
    found = shutil.which("d360-async")  # pragma: no cover - installed elsewhere
    return [found] if found else [sys.executable, "-m", "d360_async.cli"]


@attrs.frozen
class Result:
    """What one run of the console script produced."""

    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[dict[str, Any]]:
        """stdout parsed as JSON lines (every line must be one object)."""
        parsed = [json.loads(line) for line in self.stdout.splitlines()]
        assert all(isinstance(item, dict) for item in parsed)
        return parsed

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["type"] == kind]

    def assert_no_secret(self) -> None:
        for secret in SECRETS:
            assert secret not in self.stdout
            assert secret not in self.stderr

    def assert_one_error_line(self, *fragments: str) -> str:
        """stderr is exactly one ``d360-async: error: ...`` line, with no traceback."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1, self.stderr
        assert lines[0].startswith("d360-async: error: "), lines[0]
        assert "Traceback" not in self.stderr
        for fragment in fragments:
            assert fragment in lines[0], lines[0]
        return lines[0]


RunCli = Callable[..., Awaitable[Result]]


def cli_env(credentials: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    env.update(credentials)
    # Show every warning (ResourceWarning included) so a leak shows up on stderr.
    env["PYTHONWARNINGS"] = "default"
    env.pop("COLUMNS", None)
    return env
