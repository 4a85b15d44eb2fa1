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
import socket
import ssl
from typing import Final

from d360_async import (
    AuthenticationError,
    D360Error,
    MissingCredential,
    PermissionDenied,
    TransportError,
    redact_url,
)

__all__ = [
    "FINAL_CAUSES",
    "CLIError",
    "ExitCode",
    "UsageError",
    "connection_cause",
    "describe_error",
    "exit_code_for",
]

FINAL_CAUSES: Final = frozenset({"refused", "dns", "tls"})
"""Causes a retry seconds later will not fix: a refused port, a name that does not resolve,
a TLS handshake or certificate failure."""


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


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code an exception that ended a command maps to."""
    if isinstance(exc, CLIError):
        return exc.code
    if isinstance(exc, AuthenticationError | PermissionDenied | MissingCredential):
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
        cause = connection_cause(exc)
        return f"cannot reach{target}: {cause[1] if cause is not None else exc.message}"
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


def connection_cause(exc: BaseException) -> tuple[str, str] | None:
    """Why a connection failed, as ``(kind, text)``, read from the chain of ``exc``.

    Our transport errors keep the aiohttp (or OS) exception as their ``__cause__``; this walks
    that chain and names the first cause it recognises.  ``kind`` is one of ``"refused"``,
    ``"dns"``, ``"tls"``, ``"reset"`` or ``"os"``; ``text`` is what a person
    reads ("connection refused", "name not resolved", "TLS: certificate verify failed ...").
    ``None`` when nothing in the chain is a connection failure.
    """
    current: BaseException | None = exc
    for _ in range(8):  # chains are short; a cycle must not hang the error path
        if current is None:
            return None
        found = _classify(current)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def _classify(exc: BaseException) -> tuple[str, str] | None:
    import aiohttp  # here, not at the top: `d360-async --help` does not need it

    # aiohttp 3.10 added a class of its own for resolver failures; older ones carry a gaierror.
    dns_error: type[BaseException] = getattr(aiohttp, "ClientConnectorDNSError", socket.gaierror)
    if isinstance(exc, D360Error):
        return None  # ours says what it knows in its message; its cause says why
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return _tls(exc.certificate_error)
    if isinstance(exc, dns_error | socket.gaierror):
        return ("dns", "name not resolved")
    if isinstance(exc, aiohttp.ClientConnectorError):
        # aiohttp's wrapper (itself an SSLError for TLS failures) carries the real one.
        inner = exc.os_error
        if inner is not exc:
            found = _classify(inner)
            if found is not None:
                return found
        return _tls(exc) if isinstance(exc, ssl.SSLError) else _os(inner)
    if isinstance(exc, ssl.SSLError):
        return _tls(exc)
    if isinstance(exc, ConnectionRefusedError):
        return ("refused", "connection refused")
    if isinstance(exc, ConnectionResetError):
        return ("reset", "connection reset by the server")
    if isinstance(exc, TimeoutError):
        return None  # our own message says which timeout it was
    if isinstance(exc, OSError):
        return _os(exc)
    return None


def _tls(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return ("tls", f"TLS: certificate verify failed ({exc.verify_message})")
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return ("tls", f"TLS: {reason.replace('_', ' ').lower()}")
    return ("tls", f"TLS: {_one_line(str(exc)) or type(exc).__name__}")


def _os(exc: OSError) -> tuple[str, str] | None:
    if isinstance(exc, ConnectionRefusedError):
        return ("refused", "connection refused")
    if isinstance(exc, ConnectionResetError):
        return ("reset", "connection reset by the server")
    if exc.strerror:
        return ("os", exc.strerror[0].lower() + exc.strerror[1:])
    return None
