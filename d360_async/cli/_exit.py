"""Exit codes, and the one place where an exception becomes a line on stderr and a code.

The codes are part of the command-line contract (``docs/cli.md``):

```text
0  OK            every operation succeeded
1  FAILED        an operation failed, was cancelled, timed out, ended with an error, or
                 the API could not be reached
2  USAGE         the command line or its input is wrong (argparse uses 2 as well)
3  AUTH          no credential was given, or the server refused it (401/403)
```
"""

from __future__ import annotations

import enum

from .._errors import (
    AuthenticationError,
    D360Error,
    PermissionDenied,
    TransportError,
)
from .._redact import redact_url

__all__ = [
    "CLIError",
    "ExitCode",
    "MissingCredential",
    "UsageError",
    "describe_error",
    "exit_code_for",
]


class ExitCode(enum.IntEnum):
    """What ``d360-async`` returns to the shell."""

    OK = 0
    FAILED = 1
    USAGE = 2
    AUTH = 3


class CLIError(Exception):
    """An error the CLI reports as one line on stderr, then exits with `code`."""

    code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class UsageError(CLIError):
    """The command line or one of its inputs (an id, an ids file, a region) is wrong."""

    code = ExitCode.USAGE


class MissingCredential(CLIError):
    """An environment variable holding a credential is unset or empty."""

    code = ExitCode.AUTH


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code an exception that ended a command maps to."""
    if isinstance(exc, CLIError):
        return exc.code
    if isinstance(exc, AuthenticationError | PermissionDenied):
        return ExitCode.AUTH
    if isinstance(exc, ValueError):
        # The library validates ids and arguments locally and raises ValueError before any
        # request: that is bad input, not a failed operation.
        return ExitCode.USAGE
    return ExitCode.FAILED


def describe_error(exc: BaseException) -> str:
    """One line, safe to print, saying what went wrong (no token, no link signature)."""
    if isinstance(exc, CLIError):
        return exc.message
    if isinstance(exc, AuthenticationError):
        return f"authentication failed: the server refused the credential ({_where(exc)})"
    if isinstance(exc, PermissionDenied):
        return f"permission denied: the credential may not do this ({_where(exc)})"
    if isinstance(exc, TransportError):
        host = _host(exc.url)
        target = f" {host}" if host else ""
        return f"cannot reach{target}: {exc.message}"
    if isinstance(exc, D360Error):
        return _one_line(str(exc))
    if isinstance(exc, TimeoutError):  # asyncio.timeout() around a command (--timeout)
        return "timed out (--timeout)"
    if isinstance(exc, ValueError):
        return _one_line(str(exc))
    return _one_line(f"{type(exc).__name__}: {exc}")


def _where(exc: D360Error) -> str:
    parts = [p for p in (exc.method, exc.url) if p]
    if exc.status is not None:
        parts.append(f"-> {exc.status}")
    return " ".join(parts) if parts else "no details"


def _host(url: str | None) -> str | None:
    if not url:
        return None
    safe = redact_url(url)
    scheme, sep, rest = safe.partition("://")
    if not sep:
        return None
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
