"""SmartDocumentor: task status over OAuth2 client credentials.

Vendor facts (SmartDocumentor API documentation, "Get task status"):

* Every call carries ``Authorization: Bearer <access token>``; the token comes from the OAuth2
  client-credentials grant at ``/connect/token`` (scope ``WebAPI``) and lives 3600 s, so it is
  cached and reused until shortly before it expires.  Concurrent callers that find no valid
  token wait for *one* token request; a 401 makes the next caller fetch a fresh token, once.
* ``GET /api/v1.0/external/sdtask/status`` takes ``taskId`` or ``externalId``: exactly one is
  required (the server answers 400 with an empty body otherwise, 404 with an empty body for an
  unknown task), so the choice is checked locally.
* ``GET .../sdtask/statuslistpaginated`` pages through tasks (``pageNumber``, ``pageSize``,
  filters); ``PATCH .../sdtask/restartprocessing?taskId=`` reprocesses a stuck task.

The client secret and the access token live in `Secret` and never
appear in a ``repr``, a log record or an exception.

For example:

```python
async with SmartDocumentorClient(client_id=..., client_secret=...) as sd:
    task = await sd.tasks.status(task_id=44)
```
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import aiohttp
import attrs

from ._auth import Auth
from ._config import ConnectionLimits, Hooks, Timeouts
from ._ids import external_id as check_external_id
from ._ids import sd_task_id
from ._lifecycle import TransportOwner
from ._models import SmartDocumentorPage, SmartDocumentorTask, as_mapping, malformed, structure
from ._ratelimit._protocol import Priority, RateLimiter, Ticket
from ._redact import Secret, fingerprint, library_logger
from ._resources._targets import KIND_SD_TASK, ResourceTarget, observation, target_from_spec
from ._response import Response
from ._retry import RetryPolicy
from ._target import Observation, Target
from ._telemetry import Telemetry, instrument
from ._transport import Transport

__all__ = [
    "DEFAULT_BASE_URL",
    "ClientCredentialsAuth",
    "SmartDocumentorClient",
    "SmartDocumentorPage",
    "SmartDocumentorTask",
    "SmartDocumentorTasks",
]

logger = library_logger("d360_async.smartdocumentor")

DEFAULT_BASE_URL: Final = "https://cloud.smartdocumentor.net"
"""The SmartDocumentor host a client talks to when no `base_url` is given."""
_API: Final = "/api/v1.0/external/sdtask"
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
        clock: a monotonic clock, injectable for tests.

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
        clock: Callable[[], float] = time.monotonic,
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
        self._clock = clock
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


def _decode_task(response: Response) -> SmartDocumentorTask:
    return structure(response.json(), SmartDocumentorTask, response=response)


def _decode_page(page_number: int, page_size: int) -> Callable[[Response], SmartDocumentorPage]:
    """Read a page whatever wrapper the server uses: a bare array, or an object holding the
    array under ``items``/``data``/``tasks``/``results`` with optional paging numbers."""

    def decode(response: Response) -> SmartDocumentorPage:
        payload = response.json()
        body: dict[str, Any] = {"pageNumber": page_number, "pageSize": page_size}
        if isinstance(payload, list):
            body["items"] = payload
        else:
            mapping = as_mapping(payload, "the task page", response)
            for key in ("items", "data", "tasks", "results", "records"):
                if key in mapping:
                    body["items"] = mapping[key]
                    break
            else:
                raise malformed("task page holds no list of tasks", response)
            for key in ("pageNumber", "pageSize", "totalCount", "totalPages"):
                if mapping.get(key) is not None:
                    body[key] = mapping[key]
            for alias in ("total", "totalItems", "totalRecords"):
                if "totalCount" not in body and mapping.get(alias) is not None:
                    body["totalCount"] = mapping[alias]
        return structure(body, SmartDocumentorPage, response=response)

    return decode


class SmartDocumentorTasks:
    """``sd.tasks``: task status, the paginated task list, restarts, and watch targets."""

    __slots__ = ("_auth", "_transport")

    def __init__(self, transport: Transport, auth: Auth) -> None:
        self._transport = transport
        self._auth = auth

    def __repr__(self) -> str:
        return f"<SmartDocumentorTasks {self._transport.base_url}>"

    @staticmethod
    def _selector(task_id: int | None, external_id: str | None) -> dict[str, str | int]:
        if (task_id is None) == (external_id is None):
            raise ValueError("give exactly one of task_id= or external_id=")
        if task_id is not None:
            return {"taskId": sd_task_id(task_id)}
        return {"externalId": check_external_id(external_id)}

    async def _status(
        self,
        params: Mapping[str, str | int],
        *,
        priority: Priority = Priority.DIRECT,
        ticket: Ticket | None = None,
    ) -> SmartDocumentorTask:
        return await self._transport.request_decoded(
            "GET",
            f"{_API}/status",
            _decode_task,
            auth=self._auth,
            params=params,
            priority=priority,
            ticket=ticket,
        )

    async def status(
        self, *, task_id: int | None = None, external_id: str | None = None
    ) -> SmartDocumentorTask:
        """One task's status, by ``task_id`` or by ``external_id`` (exactly one).

        Raises:
            ValueError: neither or both given, or a malformed id (no request is sent).
            NotFound: no such task (the vendor answers 404 with an empty body).
        """
        return await self._status(self._selector(task_id, external_id))

    async def list_paginated(
        self,
        *,
        page_number: int = 1,
        page_size: int = 25,
        filters: Mapping[str, str | int] | None = None,
    ) -> SmartDocumentorPage:
        """One page of tasks (``pageNumber`` is 1-based); ``filters`` are sent as given."""
        for name, value in (("page_number", page_number), ("page_size", page_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1")
        params: dict[str, str | int] = dict(filters or {})
        params.update({"pageNumber": page_number, "pageSize": page_size})
        return await self._transport.request_decoded(
            "GET",
            f"{_API}/statuslistpaginated",
            _decode_page(page_number, page_size),
            auth=self._auth,
            params=params,
        )

    async def restart_processing(self, task_id: int) -> None:
        """Reprocess a stuck task (``restartCount`` goes up); the vendor never does it alone."""
        await self._transport.request(
            "PATCH",
            f"{_API}/restartprocessing",
            auth=self._auth,
            params={"taskId": sd_task_id(task_id)},
        )

    def target(
        self, *, task_id: int | None = None, external_id: str | None = None
    ) -> ResourceTarget[SmartDocumentorTask]:
        """A watchable target for one task (kind ``"smartdocumentor.task"``).

        A task waiting in review is *not* finished; pass ``until=`` to the watch to stop there.
        """
        params = self._selector(task_id, external_id)
        if task_id is not None:
            key = f"{KIND_SD_TASK}/{params['taskId']}"
            spec: dict[str, Any] = {"kind": KIND_SD_TASK, "id": params["taskId"]}
        else:
            key = f"{KIND_SD_TASK}/external/{params['externalId']}"
            spec = {"kind": KIND_SD_TASK, "id": params["externalId"], "id_type": "external"}

        async def poll(ticket: Ticket | None) -> Observation[SmartDocumentorTask]:
            snapshot = await self._status(params, priority=Priority.POLL, ticket=ticket)
            return observation(snapshot._reading(), snapshot)

        return ResourceTarget(
            kind=KIND_SD_TASK,
            key=key,
            spec=spec,
            rate_key=self._transport.rate_key(self._auth, None),
            limiter=self._transport.limiter,
            poll=poll,
        )


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
        clock: monotonic clock for token expiry (tests inject a fake one).

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = Transport(
            base_url=base_url,
            session=session,
            limiter=rate_limiter,
            retry=retry,
            timeouts=timeouts,
            limits=limits,
            hooks=instrument(self, hooks, telemetry, "smartdocumentor"),
        )
        self._auth = ClientCredentialsAuth(
            self._transport,
            token_url=token_url or f"{self._transport.base_url}/connect/token",
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            refresh_margin=token_refresh_margin,
            clock=clock,
        )
        self.tasks = SmartDocumentorTasks(self._transport, self._auth)

    def __repr__(self) -> str:
        state = "closed" if self._transport.closed else "open"
        return f"<SmartDocumentorClient {self._transport.base_url} {state}>"

    @property
    def auth(self) -> ClientCredentialsAuth:
        """The cached client-credentials token source."""
        return self._auth

    def target_from_spec(self, spec: Mapping[str, Any]) -> Target[Any]:
        """Rebuild a task target from the ``spec`` stored in a watch checkpoint."""
        return target_from_spec(self, spec)
