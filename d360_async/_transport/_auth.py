"""Credentials: how a request is authenticated, without ever exposing the secret.

* V3 uses ``Authorization: Bearer <token>``; the token may come from an async provider, which
  is asked again once after a 401.
* V2 uses a separate token in the ``api_token`` header (vendor docs: "Header parameter name
  api_token").
* A provider that raises, or returns anything but a non-empty string, raises
  [CredentialsUnavailable][d360_async.CredentialsUnavailable] (not chained to the provider's
  exception, whose text may hold the provider's own secret; its class is ``cause_type``). The
  transport retries it with backoff like a connection failure, and a watch keeps the target.
  After a failed refresh the old token is dropped, so the next request asks the provider again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from d360_async._core._errors import CredentialsUnavailable
from d360_async._core._redact import Secret, fingerprint

__all__ = ["ApiTokenAuth", "Auth", "BearerAuth", "TokenProvider"]

TokenProvider = Callable[[], Awaitable[str]]
"""An async callable returning a fresh bearer token; called again once after a 401."""


@runtime_checkable
class Auth(Protocol):
    """Adds a credential to a request."""

    @property
    def fingerprint(self) -> str:
        """A short non-reversible digest identifying the credential (part of rate-limit keys)."""
        ...

    async def apply(self, headers: dict[str, str]) -> None:
        """Add the credential to ``headers``."""
        ...

    async def refresh(self) -> bool:
        """Called once after a 401; return True when a retry may now succeed."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """Every secret value currently in use, so logs and errors can be scrubbed."""
        ...


class BearerAuth:
    """``Authorization: Bearer ...`` from a static token or an async provider."""

    __slots__ = ("_fingerprint", "_lock", "_provider", "_refreshed_at", "_token")

    REFRESH_COALESCE_SECONDS = 1.0
    """A 401 seen this soon after a refresh is answered with the new token, not another
    provider call: many requests in flight at the moment a token expires must cause one
    refresh, not one each."""

    def __init__(self, token: str | TokenProvider) -> None:
        self._lock = asyncio.Lock()
        self._refreshed_at = -1e18
        if isinstance(token, str):
            if not token.strip():
                raise ValueError("api_token must not be empty")
            self._token: Secret | None = Secret(token)
            self._provider: TokenProvider | None = None
            self._fingerprint = fingerprint(token)
        else:
            self._token = None
            self._provider = token
            # A provider's token can change; the budget belongs to the provider, not the value.
            self._fingerprint = fingerprint(f"provider:{id(token)}")

    @property
    def fingerprint(self) -> str:
        """A short non-reversible digest of the token (of the provider, for a provider)."""
        return self._fingerprint

    async def _current(self) -> str:
        if self._token is None:
            assert self._provider is not None
            async with self._lock:
                if self._token is None:
                    self._token = await _ask(self._provider)
        return self._token.get()

    async def apply(self, headers: dict[str, str]) -> None:
        """Set `Authorization: Bearer <token>` (asking the provider on first use)."""
        token = self._token
        if token is not None:  # static, or the provider's current one: nothing to await
            headers["Authorization"] = f"Bearer {token.get()}"
            return
        headers["Authorization"] = f"Bearer {await self._current()}"

    async def refresh(self) -> bool:
        """Ask the provider for a new token after a 401; False for a static token."""
        if self._provider is None:
            return False
        async with self._lock:
            now = time.monotonic()
            if now - self._refreshed_at >= self.REFRESH_COALESCE_SECONDS:
                # The old token was refused: whatever happens now, it is not sent again.
                self._token = None
                self._token = await _ask(self._provider)
                self._refreshed_at = time.monotonic()
        return True

    def secrets(self) -> tuple[str, ...]:
        """The token in use, so logs and errors can be scrubbed of it."""
        return (self._token.get(),) if self._token is not None else ()

    def __repr__(self) -> str:
        source = "provider" if self._provider is not None else "static"
        return f"BearerAuth({source}, {self._fingerprint})"


async def _ask(provider: TokenProvider) -> Secret:
    """Call the provider once; any failure becomes `CredentialsUnavailable`."""
    try:
        value = await provider()
    except Exception as exc:
        failure = CredentialsUnavailable(f"the token provider failed: {type(exc).__name__}: {exc}")
        failure.cause_type = type(exc).__name__
    else:
        if isinstance(value, str) and value.strip():
            return Secret(value)
        shown = "an empty string" if isinstance(value, str) else f"a {type(value).__name__}"
        failure = CredentialsUnavailable(f"the token provider returned {shown}, not a token")
    raise failure  # outside the except block: the provider's exception is not chained


class ApiTokenAuth:
    """The V2 ``api_token`` header."""

    __slots__ = ("_fingerprint", "_token")

    def __init__(self, token: str) -> None:
        if not token.strip():
            raise ValueError("v2_api_token must not be empty")
        self._token = Secret(token)
        self._fingerprint = fingerprint(token)

    @property
    def fingerprint(self) -> str:
        """A short non-reversible digest of the token."""
        return self._fingerprint

    async def apply(self, headers: dict[str, str]) -> None:
        """Set the `api_token` header."""
        headers["api_token"] = self._token.get()

    async def refresh(self) -> bool:
        """Always False: a static V2 token cannot be refreshed."""
        return False

    def secrets(self) -> tuple[str, ...]:
        """The token, so logs and errors can be scrubbed of it."""
        return (self._token.get(),)

    def __repr__(self) -> str:
        return f"ApiTokenAuth({self._fingerprint})"
