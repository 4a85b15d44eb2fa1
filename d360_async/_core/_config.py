"""Small immutable configuration objects for the transport."""

from __future__ import annotations

import enum
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from d360_async._core._ratelimit._protocol import Priority, RateLimitKey

__all__ = [
    "ConnectionLimits",
    "Hooks",
    "LimiterWaitEvent",
    "Region",
    "RequestEndEvent",
    "RequestEvent",
    "ResponseEvent",
    "RetryEvent",
    "Timeouts",
    "notify",
]

logger = logging.getLogger("d360_async.hooks")


class Region(enum.Enum):
    """The vendor's API hosts; V2 and V3 share them (Document360 API docs, "Base URL")."""

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
    """A request attempt is about to be sent.

    Attributes:
        method: the HTTP method.
        url: the redacted URL.
        attempt: 1 for the first attempt, 2 for the first retry...
        call: identifies the call this attempt belongs to: every event of one call (its
            limiter waits, attempts, retries and its end) carries the same number.
        headers: headers a hook may add to this attempt (trace context propagation). The
            credential is added after the hooks ran and is never in it; a hook cannot replace
            the credential or the standard headers.
    """

    method: str
    url: str
    attempt: int
    call: int = 0
    headers: dict[str, str] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(slots=True)
class ResponseEvent:
    """A response arrived (any status)."""

    method: str
    url: str
    attempt: int
    status: int
    elapsed: float
    call: int = 0


@attrs.frozen(slots=True)
class RetryEvent:
    """A failed attempt will be retried after ``delay`` seconds."""

    method: str
    url: str
    attempt: int
    delay: float
    error: BaseException
    call: int = 0


@attrs.frozen(slots=True)
class LimiterWaitEvent:
    """The rate limiter admitted an attempt, after ``waited`` seconds (often 0).

    Emitted before each attempt the limiter admitted, including the first attempt of a watch
    poll, whose ticket the watch acquired (its wait is the ticket's). The watch's own pacing
    before it asks for a ticket is not counted.

    Added in version 0.2.0.

    Attributes:
        method: the HTTP method.
        url: the redacted URL.
        attempt: the attempt admitted.
        waited: seconds spent waiting for admission.
        key: the budget drawn from; it names the credential by fingerprint only.
        priority: the priority the ticket was asked with.
        call: the call this attempt belongs to (see [RequestEvent][d360_async.RequestEvent]).
    """

    method: str
    url: str
    attempt: int
    waited: float
    key: RateLimitKey
    priority: Priority
    call: int = 0


@attrs.frozen(slots=True)
class RequestEndEvent:
    """A call ended: it returned, raised, or was cancelled. Emitted once per call.

    Added in version 0.2.0.

    Attributes:
        method: the HTTP method.
        url: the redacted URL.
        call: the call (see [RequestEvent][d360_async.RequestEvent]).
        elapsed: seconds from the start of the call, limiter waits and retries included.
        error: what the call raised (``asyncio.CancelledError`` when cancelled), or None.
    """

    method: str
    url: str
    call: int
    elapsed: float
    error: BaseException | None = None


HookFn = Callable[..., Awaitable[None] | None]


def _hooks(value: Iterable[HookFn]) -> tuple[HookFn, ...]:
    return tuple(value)


@attrs.frozen(slots=True, kw_only=True)
class Hooks:
    """Observability callbacks; each may be a plain function or a coroutine function.

    URLs in events are redacted; no credential is ever passed to a hook.  An exception raised by
    a hook is logged and swallowed: observability must never break a request.  The
    OpenTelemetry support (see the Observability page) is built on these same hooks.

    Attributes:
        on_request: a [RequestEvent][d360_async.RequestEvent] before each attempt.
        on_response: a [ResponseEvent][d360_async.ResponseEvent] for each response.
        on_retry: a [RetryEvent][d360_async.RetryEvent] before each retry's delay.
        on_limiter_wait: a [LimiterWaitEvent][d360_async.LimiterWaitEvent] when the rate
            limiter admitted an attempt (added in version 0.2.0).
        on_request_end: a [RequestEndEvent][d360_async.RequestEndEvent] once per call, when
            it ends (added in version 0.2.0).
        on_transition: each [Transition][d360_async.Transition] a watch hands to its consumer
            (``client.watch`` and ``client.wait`` pass the client's hooks; added in version
            0.2.0).
        on_target_finished: a [TargetFinished][d360_async.TargetFinished] when a watched target
            yields its final transition or is removed (added in version 0.2.0).
    """

    on_request: tuple[HookFn, ...] = attrs.field(default=(), converter=_hooks)
    on_response: tuple[HookFn, ...] = attrs.field(default=(), converter=_hooks)
    on_retry: tuple[HookFn, ...] = attrs.field(default=(), converter=_hooks)
    on_limiter_wait: tuple[HookFn, ...] = attrs.field(default=(), converter=_hooks)
    on_request_end: tuple[HookFn, ...] = attrs.field(default=(), converter=_hooks)
    on_transition: tuple[HookFn, ...] = attrs.field(default=(), converter=_hooks)
    on_target_finished: tuple[HookFn, ...] = attrs.field(default=(), converter=_hooks)
    # Says whether the request-side callbacks would do nothing now (the telemetry's, while no
    # SDK is configured): the transport then builds no events for the call. None: never idle.
    _idle: Callable[[], bool] | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def __add__(self, other: Hooks) -> Hooks:
        """Both sets of callbacks, ``self``'s first for each event."""
        if not isinstance(other, Hooks):
            return NotImplemented
        both = Hooks(**{name: getattr(self, name) + getattr(other, name) for name in _EVENTS})
        mine, theirs = self._idle, other._idle
        if not self._requests():
            idle = theirs
        elif not other._requests():
            idle = mine
        elif mine is not None and theirs is not None:
            idle = _both_idle(mine, theirs)
        else:
            idle = None
        return both._idle_when(idle)

    def _requests(self) -> bool:
        """Whether any callback listens to the transport's events."""
        return bool(
            self.on_request
            or self.on_response
            or self.on_retry
            or self.on_limiter_wait
            or self.on_request_end
        )

    def _idle_when(self, idle: Callable[[], bool] | None) -> Hooks:
        """These hooks, told when their request-side callbacks would do nothing (see
        `_idle`); for the library's own hooks only."""
        object.__setattr__(self, "_idle", idle)
        return self


_EVENTS = tuple(field.name for field in attrs.fields(Hooks) if field.init)
"""The callback lists of [Hooks][d360_async.Hooks]."""


def _both_idle(first: Callable[[], bool], second: Callable[[], bool]) -> Callable[[], bool]:
    return lambda: first() and second()


async def notify(hooks: tuple[HookFn, ...], event: object) -> None:
    """Call each hook with ``event``, awaiting coroutine hooks; log and swallow what they raise."""
    for hook in hooks:
        try:
            result = hook(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("an event hook raised; ignoring it")
