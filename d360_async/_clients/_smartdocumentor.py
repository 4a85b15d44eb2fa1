"""[SmartDocumentorClient][d360_async.smartdocumentor.SmartDocumentorClient]: a transport, a
limiter, client-credentials auth and the task resource put together."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import aiohttp

from d360_async._clock import Clock, as_clock
from d360_async._core._config import ConnectionLimits, Hooks, Timeouts
from d360_async._core._ratelimit._protocol import RateLimiter
from d360_async._core._retry import RetryPolicy
from d360_async._core._target_protocol import Target
from d360_async._limiters import LocalRateLimiter
from d360_async._resources._resource_target import (
    target_from_spec,
)
from d360_async._resources.smartdocumentor import SmartDocumentorTasks
from d360_async._transport._lifecycle import TransportOwner
from d360_async._transport._sd_auth import ClientCredentialsAuth
from d360_async._transport._telemetry import Telemetry, instrument
from d360_async._transport._transport import Transport

__all__ = ["DEFAULT_BASE_URL", "SmartDocumentorClient"]

DEFAULT_BASE_URL: Final = "https://cloud.smartdocumentor.net"
"""The SmartDocumentor host a client talks to when no `base_url` is given."""


class SmartDocumentorClient(TransportOwner):
    """An asyncio client for SmartDocumentor's external task API.

    Args:
        client_id: the OAuth2 client id.
        client_secret: the OAuth2 client secret; never shown anywhere.
        base_url: the API host.
        token_url: the token endpoint; defaults to ``base_url + "/connect/token"``.
        scope: the OAuth2 scope (the vendor's is ``WebAPI``).
        session: an aiohttp session to borrow (then never closed by this client).
        rate_limiter: a limiter to share; by default the client has its own.
        retry: the [RetryPolicy][d360_async.RetryPolicy].
        timeouts: per-attempt timeouts.
        limits: connection pool bounds for a session the client creates.
        hooks: observability callbacks.
        telemetry: OpenTelemetry spans and metrics, as for [Client][d360_async.Client]
            (``False`` turns them off).
        token_refresh_margin: seconds before expiry at which a cached token is replaced.
        clock: where time comes from ([Clock][d360_async.Clock]): token expiry, the retry
            back-off and the client's own limiter; tests pass a
            [ManualClock][d360_async.testing.ManualClock].

    Added in version 0.1.0.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        base_url: str = DEFAULT_BASE_URL,
        token_url: str | None = None,
        scope: str = "WebAPI",
        session: aiohttp.ClientSession | None = None,
        rate_limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        limits: ConnectionLimits | None = None,
        hooks: Hooks | None = None,
        telemetry: bool | Telemetry = True,
        token_refresh_margin: float = 60.0,
        clock: Clock | Callable[[], float] | None = None,
    ) -> None:
        source = as_clock(clock, owner="SmartDocumentorClient")
        self._transport = Transport(
            base_url=base_url,
            session=session,
            limiter=rate_limiter if rate_limiter is not None else LocalRateLimiter(clock=source),
            owns_limiter=rate_limiter is None,
            retry=retry,
            timeouts=timeouts,
            limits=limits,
            hooks=instrument(self, hooks, telemetry, "smartdocumentor"),
            clock=source,
        )
        self._auth = ClientCredentialsAuth(
            self._transport,
            token_url=token_url or f"{self._transport.base_url}/connect/token",
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            refresh_margin=token_refresh_margin,
            clock=source,
        )
        self.tasks = SmartDocumentorTasks(self._transport, self._auth)

    def __repr__(self) -> str:
        return f"<SmartDocumentorClient {self._transport.base_url} {self._transport.state.value}>"

    @property
    def auth(self) -> ClientCredentialsAuth:
        """The cached client-credentials token source."""
        return self._auth

    def _target_resources(self) -> tuple[object, ...]:
        # What target_from_spec looks among for the resource registered for a spec's kind.
        return (self.tasks,)

    def target_from_spec(self, spec: Mapping[str, Any]) -> Target[Any]:
        """Rebuild a task target from the ``spec`` stored in a watch checkpoint."""
        return target_from_spec(self, spec)
