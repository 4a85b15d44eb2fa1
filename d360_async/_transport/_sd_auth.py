"""OAuth2 client credentials for SmartDocumentor: one token request however many callers wait.

The token comes from the client-credentials grant at ``/connect/token`` (scope ``WebAPI``) and
lives 3600 s, so it is cached and reused until shortly before it expires. Concurrent callers
that find no valid token wait for *one* token request; a 401 makes the next caller fetch a
fresh token, once. The client secret and the access token live in `Secret` and never appear
in a ``repr``, a log record or an exception.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections.abc import Callable
from typing import Final

import attrs

from d360_async._clock import Clock, as_clock
from d360_async._core._models import (
    as_mapping,
    malformed,
)
from d360_async._core._redact import Secret, fingerprint, library_logger
from d360_async._core._response import Response
from d360_async._transport._transport import Transport

__all__ = ["ClientCredentialsAuth"]

logger = library_logger("d360_async.smartdocumentor")

_DEFAULT_LIFETIME: Final = 3600.0  # the vendor's documented token lifetime, in seconds

# Which token generation the current task's request was sent with, per credential object, so
# that a burst of 401s caused by one expired token triggers one refresh, not one each.
_sent_with: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "d360_async_sd_token_generation", default=None
)


@attrs.frozen(slots=True, repr=False)
class _Token:
    value: Secret
    expires_at: float
    generation: int


class ClientCredentialsAuth:
    """OAuth2 client-credentials [Auth][d360_async.Auth] with a cached token.

    The token is fetched through the transport (no credential on that request, outside the
    rate limiter), cached until ``refresh_margin`` seconds before ``expires_in`` runs out (at
    most half its lifetime early), and fetched by a single caller while others wait.

    Args:
        transport: where the token request goes.
        token_url: the token endpoint (absolute, or a path on the transport's base URL).
        client_id: the OAuth2 client id.
        client_secret: the OAuth2 client secret.
        scope: the scope requested; the vendor's is ``WebAPI``.
        refresh_margin: how long before expiry a token stops being used.
        clock: the [Clock][d360_async.Clock] whose ``monotonic()`` times token expiry.

    Added in version 0.1.0.
    """

    __slots__ = (
        "_client_id",
        "_clock",
        "_fingerprint",
        "_generation",
        "_lock",
        "_margin",
        "_scope",
        "_secret",
        "_token",
        "_token_url",
        "_transport",
        "token_requests",
    )

    def __init__(
        self,
        transport: Transport,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str = "WebAPI",
        refresh_margin: float = 60.0,
        clock: Clock | Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(client_id, str) or not client_id.strip():
            raise ValueError("client_id must not be empty")
        if not isinstance(client_secret, str) or not client_secret.strip():
            raise ValueError("client_secret must not be empty")
        if refresh_margin < 0:
            raise ValueError("refresh_margin must not be negative")
        self._transport = transport
        self._token_url = token_url
        self._client_id = client_id
        self._secret = Secret(client_secret)
        self._scope = scope
        self._margin = float(refresh_margin)
        self._clock = as_clock(clock, owner="ClientCredentialsAuth").monotonic
        self._lock = asyncio.Lock()
        self._token: _Token | None = None
        self._generation = 0
        # The budget is the client's, whatever token it currently holds.
        self._fingerprint = fingerprint(f"smartdocumentor:{token_url}:{client_id}")
        self.token_requests = 0
        """How many token requests this credential has sent (observability, tests)."""

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth(client_id={self._client_id!r}, {self._fingerprint})"

    @property
    def fingerprint(self) -> str:
        """A short non-reversible digest of the token URL and client id (the budget's key)."""
        return self._fingerprint

    def _valid(self) -> _Token | None:
        token = self._token
        if token is not None and self._clock() < token.expires_at:
            return token
        return None

    async def token(self) -> str:
        """A valid access token, fetched (once for all concurrent callers) when needed."""
        return (await self._current()).value.get()

    async def _current(self) -> _Token:
        token = self._valid()
        if token is None:
            async with self._lock:
                token = self._valid()
                if token is None:
                    token = await self._fetch()
        return token

    async def apply(self, headers: dict[str, str]) -> None:
        """Set `Authorization: Bearer <access token>`, fetching a token when none is valid."""
        token = await self._current()
        _sent_with.set((id(self), token.generation))
        headers["Authorization"] = f"Bearer {token.value.get()}"

    async def refresh(self) -> bool:
        """After a 401: fetch a new token unless another caller already replaced the one used."""
        sent = _sent_with.get()
        async with self._lock:
            current = self._token
            if (
                current is not None
                and sent is not None
                and sent[0] == id(self)
                and current.generation != sent[1]
            ):
                return True
            self._token = None
            await self._fetch()
        return True

    def secrets(self) -> tuple[str, ...]:
        """The client secret and the current access token, so logs can be scrubbed of them."""
        token = self._token
        return (self._secret.get(),) + ((token.value.get(),) if token is not None else ())

    async def _fetch(self) -> _Token:
        """Request a token (caller holds the lock)."""
        self.token_requests += 1
        requested_at = self._clock()
        token = await self._transport.request_decoded(
            "POST",
            self._token_url,
            self._decode,
            auth=None,
            data={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._secret.get(),
                "scope": self._scope,
            },
            limit=False,
        )
        value, lifetime = token
        early = min(self._margin, lifetime / 2)
        self._generation += 1
        self._token = _Token(Secret(value), requested_at + lifetime - early, self._generation)
        logger.debug(
            "SmartDocumentor token obtained, valid %.0f s",
            lifetime,
            extra={"d360_key": fingerprint(self._client_id)},
        )
        return self._token

    @staticmethod
    def _decode(response: Response) -> tuple[str, float]:
        body = as_mapping(response.json(), "the token response", response)
        value = body.get("access_token")
        if not isinstance(value, str) or not value:
            raise malformed("token response has no access_token", response)
        lifetime = _seconds(body.get("expires_in", _DEFAULT_LIFETIME))
        if lifetime is None:
            raise malformed("token response has an invalid expires_in", response)
        return value, lifetime


def _seconds(value: object) -> float | None:
    """``expires_in`` as finite seconds > 0 (a JSON number, or digits as text), else None."""
    if isinstance(value, str):
        text = value.strip()
        # ASCII digits only ("²".isdigit() is true, but int("²") raises), and not absurdly
        # many (int() refuses more than 4,300).
        if not (text.isascii() and text.isdigit()) or len(text) > 15:
            return None
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return seconds if 0 < seconds < math.inf else None
