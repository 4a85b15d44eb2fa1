"""Small immutable configuration objects for the transport."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

__all__ = [
    "ConnectionLimits",
    "Hooks",
    "Region",
    "RequestEvent",
    "ResponseEvent",
    "RetryEvent",
    "Timeouts",
]


class Region(enum.Enum):
    """The vendor's API hosts; V2 and V3 share them (DESIGN.md §2)."""

    EU = "https://apihub.document360.io"
    US = "https://apihub.us.document360.io"
    CA = "https://apihub.ca.document360.io"

    @classmethod
    def parse(cls, name: str) -> Region:
        """Look a region up by name (``"eu"``, ``"US"``...); raises ``ValueError``."""
        try:
            return cls[name.strip().upper()]
        except KeyError:
            choices = ", ".join(r.name.lower() for r in cls)
            raise ValueError(f"unknown region {name!r} (choose from {choices})") from None


def _positive(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


@attrs.frozen(slots=True, kw_only=True)
class Timeouts:
    """Per-attempt timeouts, in seconds (``None`` disables one).

    ``total`` bounds one attempt from sending to the end of the body; retries each get their
    own.  The overall bound for a call, retries included, is ``RetryPolicy.deadline``.
    """

    connect: float | None = attrs.field(default=10.0, validator=_positive)
    read: float | None = attrs.field(default=30.0, validator=_positive)
    total: float | None = attrs.field(default=60.0, validator=_positive)
    download_read: float | None = attrs.field(default=60.0, validator=_positive)
    """Longest silence while streaming a download; a download has no total timeout."""


@attrs.frozen(slots=True, kw_only=True)
class ConnectionLimits:
    """Connection pool bounds for a session the client creates (ignored for a borrowed one)."""

    max_connections: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    max_connections_per_host: int = attrs.field(default=32, validator=attrs.validators.ge(1))
    keepalive_timeout: float = attrs.field(default=15.0, validator=attrs.validators.gt(0))


@attrs.frozen(slots=True)
class RequestEvent:
    """A request attempt is about to be sent."""

    method: str
    url: str
    attempt: int


@attrs.frozen(slots=True)
class ResponseEvent:
    """A response arrived (any status)."""

    method: str
    url: str
    attempt: int
    status: int
    elapsed: float


@attrs.frozen(slots=True)
class RetryEvent:
    """A failed attempt will be retried after ``delay`` seconds."""

    method: str
    url: str
    attempt: int
    delay: float
    error: BaseException


HookFn = Callable[..., Awaitable[None] | None]


@attrs.frozen(slots=True, kw_only=True)
class Hooks:
    """Observability callbacks; each may be a plain function or a coroutine function.

    URLs in events are redacted; no credential is ever passed to a hook.  An exception raised by
    a hook is logged and swallowed: observability must never break a request.
    """

    on_request: tuple[HookFn, ...] = attrs.field(default=(), converter=tuple)
    on_response: tuple[HookFn, ...] = attrs.field(default=(), converter=tuple)
    on_retry: tuple[HookFn, ...] = attrs.field(default=(), converter=tuple)
