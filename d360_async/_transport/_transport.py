"""The thin I/O layer: one aiohttp session, auth, the rate limiter, retries.

Everything that decides (error decoding, retry delays, rate-limit arithmetic) lives in pure
modules; this one only feeds them.  It is also the *only* place where aiohttp exceptions are
turned into ours (`map_client_error`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
import yarl
from multidict import CIMultiDictProxy

from d360_async._clock import SYSTEM_CLOCK, Clock, SystemClock
from d360_async._core._config import (
    ConnectionLimits,
    Hooks,
    LimiterWaitEvent,
    RequestEndEvent,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
    Timeouts,
    notify,
)
from d360_async._core._errors import (
    ConnectError,
    ConnectTimeout,
    CredentialsUnavailable,
    D360Error,
    MalformedResponse,
    ProtocolError,
    RateLimited,
    TimeoutError,
    TransportError,
)
from d360_async._core._lifecycle import Lifecycle
from d360_async._core._ratelimit._headers import parse_rate_limit
from d360_async._core._ratelimit._protocol import Priority, RateLimiter, RateLimitKey, Ticket
from d360_async._core._redact import Secret, library_logger, redact_url, secret_query_values
from d360_async._core._response import Response, error_from_response
from d360_async._core._retry import RetryPolicy, RetryQuota
from d360_async._transport._auth import Auth
from d360_async._transport._connector import tcp_connector
from d360_async._version import __version__

__all__ = ["USER_AGENT", "Transport", "map_client_error"]

logger = library_logger("d360_async.transport")

USER_AGENT = f"d360-async/{__version__}"

T = TypeVar("T")


# What a call emits to while the client's hooks are idle (see `Hooks._idle`).
_SILENT = Hooks()

# Rate-limit keys remembered per transport (one per credential and project in practice).
_MAX_CACHED_KEYS = 1024

# Numbers the calls of every transport in the process, for hooks to tell calls apart.
_CALLS = itertools.count(1)


def map_client_error(exc: BaseException, *, method: str, url: str) -> TransportError:
    """Turn an aiohttp (or socket/asyncio) exception into the most specific of ours.

    ``url`` must already be redacted.  aiohttp's exception is *not* chained (its text or
    ``repr`` can carry the full request URL, a signature included, or a proxy's credentials,
    and a logged traceback would print them): its class name is kept as ``cause_type``, and
    only the operating system's reason (`_os_reason`) becomes ``__cause__``.  The caller raises
    the result outside its ``except`` block, so nothing else is chained as ``__context__``.
    """
    error = _map_client_error(exc, method=method, url=url)
    error.cause_type = type(exc).__name__
    error.__cause__ = _os_reason(exc)
    error.__suppress_context__ = True
    return error


def _os_reason(exc: BaseException) -> BaseException | None:
    """The low-level reason behind a connection failure, safe to chain: the socket, DNS or TLS
    error (which name an errno, a host and port at most), never aiohttp's wrapper."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        exc = exc.os_error
    if not isinstance(exc, OSError):
        return None
    if isinstance(exc, aiohttp.ClientError):
        # aiohttp's own OSError (a reset while reading): a plain one with the same errno.
        return OSError(exc.errno, exc.strerror) if exc.errno is not None else None
    return exc


def _map_client_error(exc: BaseException, *, method: str, url: str) -> TransportError:
    kw: dict[str, Any] = {"method": method, "url": url}
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeout("timed out while connecting", **kw)
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return TimeoutError("timed out waiting for the server", **kw)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError(f"could not connect: {type(exc).__name__}", **kw)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return ConnectError("invalid URL", **kw)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ProtocolError("server closed the connection without a complete response", **kw)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ProtocolError("response body was truncated or malformed", **kw)
    if isinstance(exc, aiohttp.TooManyRedirects):
        hops = len(exc.history)
        return ProtocolError(f"too many redirects ({hops} followed)", **kw)
    if isinstance(exc, aiohttp.ClientResponseError):
        if exc.status:
            return ProtocolError(f"malformed HTTP response ({exc.status})", **kw)
        return ProtocolError(f"malformed HTTP response: {type(exc).__name__}", **kw)
    if isinstance(exc, aiohttp.ClientOSError | ConnectionError | OSError):
        return ProtocolError(f"connection failed: {type(exc).__name__}", **kw)
    return TransportError(f"transport failure: {type(exc).__name__}", **kw)


_TRANSPORT_FAILURES: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    asyncio.TimeoutError,
    OSError,
)
# While a caller consumes a stream, its own OSErrors (a full disk) must stay its own.
_STREAM_FAILURES: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError)


class Transport:
    """Sends requests for one client: owns or borrows the session, limits, retries.

    A session passed in is *borrowed*: it is used as is and never closed.  Otherwise the
    transport creates one on first use and closes it in `aclose`.  A closed transport
    cannot be reused.
    """

    __slots__ = (
        "_base_url",
        "_clock",
        "_hooks",
        "_keys",
        "_limiter",
        "_limits",
        "_owns_limiter",
        "_owns_session",
        "_quota",
        "_rate_host",
        "_retry",
        "_rng",
        "_session",
        "_session_lock",
        "_settle",
        "_sleep",
        "_state",
        "_timeout",
        "_timeouts",
        "_try_acquire",
        "_wall_clock",
    )

    def __init__(
        self,
        *,
        base_url: str,
        session: aiohttp.ClientSession | None = None,
        limiter: RateLimiter,
        owns_limiter: bool = False,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        limits: ConnectionLimits | None = None,
        hooks: Hooks | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        url = yarl.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("base_url must be an absolute http(s) URL")
        self._base_url = str(url).rstrip("/")
        base = yarl.URL(self._base_url)
        self._rate_host = f"{base.host}:{base.port}"
        self._keys: dict[tuple[str, str | None], RateLimitKey] = {}
        self._session = session
        self._owns_session = session is None
        # A shared limiter stays open; one the client built for this transport alone
        # (``owns_limiter``) is closed with it.
        self._owns_limiter = owns_limiter
        self._limiter: RateLimiter = limiter
        # A limiter that can admit and settle without a coroutine (LocalRateLimiter) is used
        # so, unless a subclass changed what its coroutines do.
        self._try_acquire: Callable[[RateLimitKey, Priority], Ticket | None] | None = _plain(
            limiter, "try_acquire", "acquire"
        )
        self._settle: Callable[..., None] | None = _plain(limiter, "settle", "complete")
        self._retry = retry if retry is not None else RetryPolicy()
        self._quota = RetryQuota(self._retry.quota)
        self._timeouts = timeouts if timeouts is not None else Timeouts()
        # Timeouts is frozen, so the aiohttp form is built once, not per attempt.
        self._timeout = self._client_timeout()
        self._limits = limits if limits is not None else ConnectionLimits()
        self._hooks = hooks if hooks is not None else Hooks()
        self._rng = rng if rng is not None else random.Random()
        # Bound once: the request path reads the time several times per attempt.
        source = clock if clock is not None else SYSTEM_CLOCK
        if type(source) is SystemClock:  # the functions themselves: no method call each time
            self._clock: Callable[[], float] = time.monotonic
            self._wall_clock: Callable[[], float] = time.time
        else:
            self._clock = source.monotonic
            self._wall_clock = source.time
        self._sleep = source.sleep
        self._session_lock: asyncio.Lock | None = None
        self._state = Lifecycle.OPEN

    def __repr__(self) -> str:
        owner = "owned" if self._owns_session else "borrowed"
        return f"<Transport {self._base_url} session={owner} state={self._state.value}>"

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter

    @property
    def hooks(self) -> Hooks:
        return self._hooks

    @property
    def retry_quota(self) -> RetryQuota:
        return self._quota

    @property
    def state(self) -> Lifecycle:
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is Lifecycle.CLOSED

    def _client_timeout(self) -> aiohttp.ClientTimeout:
        t = self._timeouts
        return aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.read)

    async def session(self) -> aiohttp.ClientSession:
        """The session requests go through, created on first use when not borrowed."""
        if self._state is Lifecycle.CLOSED:
            raise RuntimeError("this client is closed; create a new one")
        if self._session is None:
            if self._session_lock is None:
                self._session_lock = asyncio.Lock()
            async with self._session_lock:
                if self._session is None:
                    connector = tcp_connector(
                        limit=self._limits.max_connections,
                        limit_per_host=self._limits.max_connections_per_host,
                        keepalive_timeout=self._limits.keepalive_timeout,
                    )
                    self._session = aiohttp.ClientSession(
                        connector=connector,
                        timeout=self._timeout,
                        headers={"User-Agent": USER_AGENT},
                    )
        return self._session

    async def aclose(self) -> None:
        """Close what this transport owns; safe to call more than once."""
        if self._state is Lifecycle.CLOSED:
            return
        self._state = Lifecycle.CLOSED
        session, self._session = self._session, None
        if self._owns_session and session is not None:
            await session.close()
        if self._owns_limiter:
            await self._limiter.aclose()

    # -- requests ----------------------------------------------------------------------------

    def url_for(self, url: str) -> str:
        """Join a path to the base URL; absolute URLs pass through."""
        if url.startswith(("http://", "https://")):
            return url
        return f"{self._base_url}/{url.lstrip('/')}"

    def rate_key(self, auth: Auth | None, project_id: str | None = None) -> RateLimitKey:
        """The budget a request with this credential (and project) draws from."""
        token = auth.fingerprint if auth is not None else "anonymous"
        # One key object per budget: the limiter's lookups then find it by identity.
        key = self._keys.get((token, project_id))
        if key is None:
            if len(self._keys) >= _MAX_CACHED_KEYS:
                self._keys.clear()
            key = RateLimitKey(host=self._rate_host, token_fingerprint=token, project_id=project_id)
            self._keys[token, project_id] = key
        return key

    async def request(
        self,
        method: str,
        url: str,
        *,
        auth: Auth | None,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        project_id: str | None = None,
        priority: Priority = Priority.DIRECT,
        ticket: Ticket | None = None,
        limit: bool = True,
    ) -> Response:
        """Send one logical request (with retries) and return its 2xx `Response`."""
        return await self.request_decoded(
            method,
            url,
            _identity,
            auth=auth,
            params=params,
            json=json,
            data=data,
            project_id=project_id,
            priority=priority,
            ticket=ticket,
            limit=limit,
        )

    def request_decoded(
        self,
        method: str,
        url: str,
        decode: Callable[[Response], T],
        *,
        auth: Auth | None,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        project_id: str | None = None,
        priority: Priority = Priority.DIRECT,
        ticket: Ticket | None = None,
        limit: bool = True,
    ) -> Coroutine[Any, Any, T]:
        """Like `request`, but ``decode`` runs inside the retry loop.

        A 2xx whose body ``decode`` rejects with [MalformedResponse][d360_async.MalformedResponse]
        (truncated JSON, an HTML page from a proxy) is retried like a transient failure when the
        policy allows.

        Returns the coroutine to await (no coroutine of its own wraps it when no hook listens
        for the call's end: one layer less on every request).
        """
        call = next(_CALLS)
        hooks = self._hooks
        idle = hooks._idle
        if idle is not None and idle():
            hooks = _SILENT  # nothing would record this call's events: build none
        sending = self._send(
            call,
            hooks,
            method,
            url,
            decode,
            auth=auth,
            params=params,
            json=json,
            data=data,
            project_id=project_id,
            priority=priority,
            ticket=ticket,
            limit=limit,
        )
        ends = hooks.on_request_end
        if not ends:
            return sending
        return self._ended(sending, ends, method, url, call)

    async def _ended(
        self,
        sending: Coroutine[Any, Any, T],
        ends: tuple[Callable[..., Any], ...],
        method: str,
        url: str,
        call: int,
    ) -> T:
        """Await ``sending`` and tell the ``on_request_end`` hooks how the call ended."""
        started = self._clock()
        error: BaseException | None = None
        try:
            return await sending
        except BaseException as exc:
            error = exc
            raise
        finally:
            shown = redact_url(self.url_for(url))
            end = RequestEndEvent(method.upper(), shown, call, self._clock() - started, error)
            await self._emit(ends, end)

    async def _send(
        self,
        call: int,
        hooks: Hooks,
        method: str,
        url: str,
        decode: Callable[[Response], T],
        *,
        auth: Auth | None,
        params: Mapping[str, str | int] | None,
        json: Any,
        data: Mapping[str, str] | None,
        project_id: str | None,
        priority: Priority,
        ticket: Ticket | None,
        limit: bool,
    ) -> T:
        method = method.upper()
        full_url = self.url_for(url)
        shown_url = redact_url(full_url)
        key = self.rate_key(auth, project_id)
        started = self._clock()
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            if ticket is not None and attempt == 1:
                admitted: Ticket | None = ticket
            elif limit:
                try_acquire = self._try_acquire
                admitted = None if try_acquire is None else try_acquire(key, priority)
                if admitted is None:
                    self._refuse_long_wait(key, method, shown_url)
                    admitted = await self._limiter.acquire(key, priority=priority)
            else:
                admitted = None
            if admitted is not None and hooks.on_limiter_wait:
                await self._emit(
                    hooks.on_limiter_wait,
                    LimiterWaitEvent(
                        method, shown_url, attempt, admitted.waited, key, admitted.priority, call
                    ),
                )
            error: D360Error
            try:
                response = await self._attempt(
                    method,
                    full_url,
                    shown_url,
                    attempt,
                    auth,
                    params,
                    json,
                    data,
                    admitted,
                    call,
                    hooks,
                )
            except (TransportError, CredentialsUnavailable) as exc:
                error = exc
            else:
                if 200 <= response.status < 300:
                    try:
                        result = decode(response)
                    except MalformedResponse as exc:
                        error = exc
                    else:
                        quota = self._quota
                        if quota.available < quota.capacity:  # nothing to give back when full
                            quota.refill(self._retry.success_refill)
                        return result
                else:
                    error = error_from_response(response, now=self._wall_clock())
                    if response.status == 401 and auth is not None and not refreshed:
                        refreshed = True
                        try:
                            renewed = await self._refresh_auth(auth, method, shown_url)
                        except CredentialsUnavailable as exc:
                            error = exc  # retried like a connection failure
                        else:
                            if renewed:
                                logger.debug(
                                    "401 from %s %s: credential refreshed",
                                    method,
                                    shown_url,
                                    extra={
                                        "d360_key": key.token_fingerprint,
                                        "d360_attempt": attempt,
                                    },
                                )
                                continue
            delay = self._retry.decide(
                method=method,
                error=error,
                attempt=attempt,
                elapsed=self._clock() - started,
                now=self._wall_clock(),
                rng=self._rng,
                quota=self._quota,
            )
            logger.debug(
                "retrying %s %s in %.3fs after attempt %d: %s",
                method,
                shown_url,
                delay,
                attempt,
                type(error).__name__,
                extra={"d360_key": key.token_fingerprint, "d360_attempt": attempt},
            )
            if hooks.on_retry:
                await self._emit(
                    hooks.on_retry, RetryEvent(method, shown_url, attempt, delay, error, call)
                )
            if delay > 0:
                await self._sleep(delay)

    def _refuse_long_wait(self, key: RateLimitKey, method: str, shown_url: str) -> None:
        """Raise instead of queueing when the budget is paused beyond the retry cap.

        A key paused by a 429 (or exhausted until a distant reset) would otherwise hold the
        caller for as long as the server said; past ``RetryPolicy.max_retry_after`` the caller
        gets [RateLimited][d360_async.RateLimited] with ``retry_at`` and decides for itself.
        Only what the server said counts ([paused_for][d360_async.RateLimiter.paused_for]):
        a caller behind a long queue, or behind a pace still learning the policy, waits its
        turn (it used to be told "exhausted for 158 s" while the budget came back in seconds).
        """
        wait = self._limiter.paused_for(key)
        if wait > self._retry.max_retry_after:
            raise RateLimited(
                f"the rate-limit budget is exhausted for {wait:.0f}s, longer than the "
                f"{self._retry.max_retry_after:.0f}s cap",
                retry_at=self._wall_clock() + wait,
                method=method,
                url=shown_url,
            )

    async def _attempt(
        self,
        method: str,
        full_url: str,
        shown_url: str,
        attempt: int,
        auth: Auth | None,
        params: Mapping[str, str | int] | None,
        json: Any,
        data: Mapping[str, str] | None,
        admitted: Ticket | None,
        call: int = 0,
        hooks: Hooks | None = None,
    ) -> Response:
        """One attempt: send, read the whole body, and settle the limiter ticket once."""
        status: int | None = None
        response: Response | None = None
        if hooks is None:
            hooks = self._hooks
        try:
            # A closed transport has no session, so the closed check in session() still runs.
            session = self._session if self._session is not None else await self.session()
            headers: dict[str, str] = {"Accept": "application/json", "User-Agent": USER_AGENT}
            if hooks.on_request:
                # Before the credential is added: a hook never sees it, nor can it replace it.
                event = RequestEvent(method, shown_url, attempt, call)
                await self._emit(hooks.on_request, event)
                if event.headers:
                    headers = {**event.headers, **headers}
            if auth is not None:
                # `_apply_auth` inlined: one coroutine less per attempt.
                try:
                    await auth.apply(headers)
                except Exception as exc:
                    credential_failure: D360Error | None = _credential_failure(
                        exc, method, shown_url
                    )
                else:
                    credential_failure = None
                if credential_failure is not None:
                    raise credential_failure  # outside the except block, as in `_apply_auth`
            sent_at = self._clock()
            failure: TransportError | None
            try:
                async with session.request(
                    method,
                    full_url,
                    params=params,
                    json=json,
                    data=data,
                    headers=headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                ) as raw:
                    status = raw.status
                    body = await raw.read()
                    raw_headers = raw.headers
                    response = Response(
                        method=method,
                        url=shown_url,
                        status=status,
                        # aiohttp's parser builds a fresh, read-only proxy for every response;
                        # anything else is copied so later changes cannot reach the Response.
                        headers=raw_headers
                        if type(raw_headers) is CIMultiDictProxy
                        else CIMultiDictProxy(raw_headers.copy()),
                        body=body,
                        rate_limit=parse_rate_limit(raw_headers, now=self._wall_clock()),
                    )
            except _TRANSPORT_FAILURES as exc:
                failure = map_client_error(exc, method=method, url=shown_url)
            else:
                failure = None
            if failure is not None:
                raise failure  # outside the except block: nothing foreign in __context__
            assert response is not None
            elapsed = self._clock() - sent_at
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s %s -> %d in %.3fs",
                    method,
                    shown_url,
                    response.status,
                    elapsed,
                    extra={"d360_attempt": attempt, "d360_status": response.status},
                )
            if hooks.on_response:
                await self._emit(
                    hooks.on_response,
                    ResponseEvent(method, shown_url, attempt, response.status, elapsed, call),
                )
            return response
        finally:
            if admitted is not None:
                # Exactly once per admitted attempt, even on cancellation: the limiter must
                # learn that the request may have consumed budget.
                state = response.rate_limit if response is not None else None
                settle = self._settle
                if settle is not None:
                    settle(admitted, status=status, state=state)
                else:
                    await self._limiter.complete(admitted, status=status, state=state)

    @asynccontextmanager
    async def stream(
        self, method: str, url: str, *, auth: Auth | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Open a streaming response (for downloads): no limiter, no retries, no redirects.

        Non-2xx statuses raise the decoded error; aiohttp failures while opening or reading
        the stream are mapped to ours.  The caller reads ``response.content``.
        """
        method = method.upper()
        full_url = self.url_for(url)
        shown_url = redact_url(full_url)
        # While these live, scrub() removes the link's signature from any text a server echoes.
        guards = _guards(full_url)
        session = await self.session()
        headers: dict[str, str] = {"User-Agent": USER_AGENT}
        if auth is not None:
            await self._apply_auth(auth, headers, method, shown_url)
        t = self._timeouts
        # A large export may take minutes to stream: bound silence and connecting, not the total.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=t.connect, sock_read=t.download_read
        )
        failure: TransportError | None = None
        try:
            async with session.request(method, full_url, headers=headers, timeout=timeout) as raw:
                if not 200 <= raw.status < 300:
                    for hop in (*raw.history, raw):
                        guards.extend(_guards(str(hop.url)))
                    body = await raw.content.read(64 * 1024)
                    response = Response(
                        method=method,
                        url=shown_url,
                        status=raw.status,
                        headers=CIMultiDictProxy(raw.headers.copy()),
                        body=body,
                        rate_limit=parse_rate_limit(raw.headers, now=self._wall_clock()),
                    )
                    raise error_from_response(response, now=self._wall_clock())
                yield raw
        except _STREAM_FAILURES as exc:
            failure = map_client_error(exc, method=method, url=shown_url)
        if failure is not None:
            raise failure  # outside the except block: nothing foreign in __context__
        del guards

    async def _apply_auth(
        self, auth: Auth, headers: dict[str, str], method: str, shown_url: str
    ) -> None:
        """``auth.apply``, with any failure of a credential source made a typed error."""
        try:
            await auth.apply(headers)
        except Exception as exc:
            failure = _credential_failure(exc, method, shown_url)
        else:
            return
        raise failure

    async def _refresh_auth(self, auth: Auth, method: str, shown_url: str) -> bool:
        """``auth.refresh`` after a 401, with failures typed as in `_apply_auth`."""
        try:
            return await auth.refresh()
        except Exception as exc:
            failure = _credential_failure(exc, method, shown_url)
        raise failure

    async def _emit(self, hooks: tuple[Callable[..., Any], ...], event: object) -> None:
        await notify(hooks, event)


def _identity(response: Response) -> Response:
    return response


def _plain(limiter: object, fast: str, slow: str) -> Any:
    """``limiter.<fast>``, the synchronous form of its ``<slow>`` coroutine, when the class
    that defines it also defines the ``<slow>`` in use (a subclass overriding ``<slow>``
    keeps it called); else None."""
    cls = type(limiter)
    for klass in cls.__mro__:
        if fast in vars(klass):
            return getattr(limiter, fast) if getattr(cls, slow) is vars(klass).get(slow) else None
    return None


def _credential_failure(exc: Exception, method: str, shown_url: str) -> D360Error:
    """The error to raise when a credential source failed: a library error passes (with the
    request filled in), anything else becomes `CredentialsUnavailable`, unchained."""
    if isinstance(exc, D360Error):
        if exc.method is None:
            exc.method, exc.url = method, shown_url
        return exc
    failure = CredentialsUnavailable(
        f"the credential could not be obtained: {type(exc).__name__}: {exc}",
        method=method,
        url=shown_url,
    )
    failure.cause_type = type(exc).__name__
    return failure


def _guards(url: str) -> list[Secret]:
    """A `Secret` for each signature-like query value of ``url`` (kept alive by the
    caller while it handles the request, so that `scrub` knows them)."""
    if "?" not in url and "#" not in url:
        return []
    return [Secret(value) for value in secret_query_values(url)]
