"""The exception tree.

Every failure the library reports is a [D360Error][d360_async.D360Error]; no aiohttp, redis or
cattrs type reaches a caller:

```text
D360Error
├── TransportError                 no usable HTTP exchange happened
│   ├── ConnectError               could not connect (request surely not sent)
│   │   └── ConnectTimeout         connecting timed out (also a TimeoutError)
│   ├── TimeoutError               connect/read timeout (also a builtins.TimeoutError)
│   └── ProtocolError              connection dropped, truncated body, bad framing
├── APIError                       the server answered, and the answer is an error
│   ├── AuthenticationError        401
│   │   └── CredentialsUnavailable the token provider failed (no request was sent)
│   ├── PermissionDenied           403
│   ├── NotFound                   404
│   ├── ValidationError            400, 422, and V2 success: false
│   ├── RateLimited                429, or a wait longer than the configured cap
│   └── ServerError                5xx
├── MalformedResponse              2xx whose body cannot be read (HTML, bad JSON, fields)
├── DownloadLinkExpired            a signed export link refused (403) even after refresh
├── ExportNotReady                 a download of an export that has not completed
├── MissingCredential              no token for the API called (also a RuntimeError)
├── WatchError                     code of yours raised a foreign exception in a watch
└── CheckpointError                a checkpoint is damaged or malformed (also a ValueError)
```

Redaction happens here, once: every message, URL, id and error detail an exception is built
with passes through `_redact.scrub`, so no `str`, `repr` or traceback of ours can show a
credential the process holds or a link signature, whatever a server echoed. Library exceptions
are never chained to foreign ones whose text could hold a secret; the facts of the cause are
kept as attributes (`cause_type`) instead.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from d360_async._core._redact import redact_url, scrub

if TYPE_CHECKING:
    from d360_async._core._ratelimit._headers import RateLimitState

__all__ = [
    "APIError",
    "AuthenticationError",
    "CheckpointError",
    "ConnectError",
    "ConnectTimeout",
    "CredentialsUnavailable",
    "D360Error",
    "DownloadLinkExpired",
    "ErrorDetail",
    "ExportNotReady",
    "MalformedResponse",
    "MissingCredential",
    "NotFound",
    "PermissionDenied",
    "ProtocolError",
    "RateLimited",
    "ServerError",
    "TimeoutError",
    "TransportError",
    "ValidationError",
    "WatchError",
]


@attrs.frozen(slots=True)
class ErrorDetail:
    """One entry of a problem's ``errors`` list (V3) or of a V2 envelope's ``errors``."""

    code: str | None = None
    message: str | None = None
    field: str | None = None
    details: Any = None


class D360Error(Exception):
    """Root of every exception this library raises.

    Attributes:
        method: HTTP method of the request, when there was one.
        url: the request URL with every secret (signatures, tokens) removed.
        status: the HTTP status, when a response arrived.
        request_id: ``request_id`` (V3 success envelope) when present.
        trace_id: ``trace_id`` (RFC 7807 problem) when present.
        errors: the structured errors the server sent.
        rate_limit: what the response's rate-limit headers said.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        url: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        trace_id: str | None = None,
        errors: Sequence[ErrorDetail] = (),
        rate_limit: RateLimitState | None = None,
    ) -> None:
        message = scrub(message)
        super().__init__(message)
        self.message = message
        self.method = method
        self.url = None if url is None else redact_url(url)
        self.status = status
        self.request_id = None if request_id is None else scrub(request_id)
        self.trace_id = None if trace_id is None else scrub(trace_id)
        self.errors: tuple[ErrorDetail, ...] = tuple(_scrub_detail(e) for e in errors)
        self.rate_limit = rate_limit
        self.cause_type: str | None = None

    def __str__(self) -> str:
        parts = [self.message]
        if self.method and self.url:
            parts.append(f"({self.method} {self.url}")
            if self.status is not None:
                parts[-1] += f" -> {self.status}"
            parts[-1] += ")"
        ident = self.trace_id or self.request_id
        if ident:
            parts.append(f"[trace {ident}]")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r}, url={self.url!r})"


def _scrub_detail(detail: ErrorDetail) -> ErrorDetail:
    return ErrorDetail(
        code=None if detail.code is None else scrub(detail.code),
        message=None if detail.message is None else scrub(detail.message),
        field=None if detail.field is None else scrub(detail.field),
        details=_scrub_value(detail.details, 0),
    )


def _scrub_value(value: Any, depth: int) -> Any:
    """Scrub the strings of a JSON-like value; anything deeper than a few levels is dropped."""
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= 8:
        return None
    if isinstance(value, dict):
        return {scrub(str(k)): _scrub_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v, depth + 1) for v in value]
    return scrub(str(value))


class TransportError(D360Error):
    """No usable HTTP exchange happened."""


class ConnectError(TransportError):
    """The connection could not be established, so the request was certainly not sent."""


class TimeoutError(TransportError, builtins.TimeoutError):  # shadows the builtin, like httpx
    """A connect or read timeout expired."""


class ConnectTimeout(ConnectError, TimeoutError):
    """Connecting timed out: a timeout, and the request was certainly not sent."""


class ProtocolError(TransportError):
    """The connection broke mid-exchange: dropped, reset, truncated or badly framed."""


class APIError(D360Error):
    """The server answered with an error status (or a V2 ``success: false`` envelope)."""


class AuthenticationError(APIError):
    """401: the token is missing, invalid, expired or revoked."""


class CredentialsUnavailable(AuthenticationError):
    """The token provider failed (raised, returned no token, or returned something else).

    No request was sent with a credential, so it is retried like a connection failure: with
    backoff by the transport, and by a watch, which keeps the target. ``cause_type`` names the
    provider's exception; its message (scrubbed of every known secret) is in the message.
    """


class PermissionDenied(APIError):
    """403: the token is valid but lacks the permission for this call."""


class NotFound(APIError):
    """404: the project, operation or resource does not exist (or no longer does)."""


class ValidationError(APIError):
    """400 or 422, or a V2 envelope with ``success: false``."""


class RateLimited(APIError):
    """429, or a required wait longer than the configured cap.

    Attributes:
        retry_at: ``time.time()`` value after which a retry may succeed, when known.
    """

    def __init__(self, message: str, *, retry_at: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_at = retry_at


class ServerError(APIError):
    """5xx: the server failed."""


class MalformedResponse(D360Error):
    """A response whose body cannot be understood: HTML, malformed JSON, missing fields."""


class DownloadLinkExpired(D360Error):
    """The signed download link was refused even after fetching a fresh one."""


class ExportNotReady(D360Error):
    """The export has not completed (or completed without a link), so there is nothing to
    download yet.

    Attributes:
        export: the [Export][d360_async.Export] the API returned (typed loosely here only
            because the models import this module).

    Added in version 0.1.0.
    """

    def __init__(self, message: str, *, export: Any) -> None:
        super().__init__(message)
        self.export = export


class MissingCredential(D360Error, RuntimeError):
    """The client has no token for the API called: a usage error, found before any request.

    ``Client()`` raises it when neither token was passed nor set in the environment, and a
    resource on its first call when the client was built without the token its API needs
    (``client.v2`` without ``v2_api_token``).  Also a ``RuntimeError``, as it was documented
    before it joined the tree; the command line reports it with exit code 3.

    Added in version 0.1.0.
    """


class WatchError(D360Error):
    """Code of yours raised an exception that is not a [D360Error][d360_async.D360Error] inside
    a watch: the ``poll`` of a target you implemented, or an ``until=`` predicate.

    The watch does not raise it: that target ends with an ``ERROR`` transition whose ``error``
    is this exception, with the original as ``__cause__``, and every other target goes on.  A
    target that fails on one of our own errors (``NotFound``, ``MalformedResponse``...) ends
    with that error itself, not with a ``WatchError``.
    """


class CheckpointError(D360Error, ValueError):
    """A checkpoint cannot be used: not a checkpoint, damaged, of another version, or malformed.

    Also a ``ValueError``, as documented before it existed. Nothing is partly loaded: the
    watch that was given it is not created.
    """
