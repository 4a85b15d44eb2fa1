"""Opening the right client for a kind of operation, with the shared command-line options.

One place turns ``--base-url``/``--region``, ``--rate-limit``, ``--redis-url`` and
``--max-concurrency`` into a [Client][d360_async.Client] (V3, V2) or a
[SmartDocumentorClient][d360_async.smartdocumentor.SmartDocumentorClient], and gives the commands a
uniform way to build targets from ids.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs

from d360_async import (
    ConnectError,
    ConnectionLimits,
    D360Error,
    LimiterStats,
    LocalRateLimiter,
    RateLimitConfig,
    RateLimiter,
    Region,
    RetryPolicy,
    target_from_spec,
)

from ._credentials import Credentials
from ._exit import FINAL_CAUSES, UsageError, connection_cause
from ._kinds import API, Kind, target_spec
from ._options import RateSpec

if TYPE_CHECKING:
    from d360_async import Client, Target

__all__ = ["CommandRetryPolicy", "Connection", "check_base_url", "connect", "rate_limit_config"]


@attrs.frozen
class CommandRetryPolicy(RetryPolicy):
    """The library's retry policy, except that a connection that cannot succeed soon is not
    retried: a refused port, a host name that does not resolve, a TLS failure.

    Someone at a terminal wants "connection refused" at once, not after four attempts paced
    by the rate limiter; a watch that meets one mid-way still polls that operation again
    later (the watch itself retries transport errors), so nothing is given up for good.
    """

    def is_retryable(self, method: str, error: D360Error) -> bool:
        if isinstance(error, ConnectError):
            cause = connection_cause(error)
            if cause is not None and cause[0] in FINAL_CAUSES:
                return False
        return super().is_retryable(method, error)


def check_base_url(text: str) -> str:
    """An absolute ``http(s)`` URL with a host; `UsageError` otherwise."""
    parts = urllib.parse.urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--base-url must be an absolute http(s) URL, got {text!r}")
    if parts.username or parts.password:
        raise UsageError("--base-url must not carry a user name or password")
    return text.strip().rstrip("/")


def rate_limit_config(rate: RateSpec) -> RateLimitConfig:
    """The limiter configuration for ``--rate-limit N/PERIOD``."""
    return RateLimitConfig(rate=rate.requests, period=rate.period)


@attrs.define(slots=True)
class Connection:
    """An open client for one kind of operation.

    Attributes:
        kind: the kind of operation.
        project: the V3 project id (``None`` for V2 and SmartDocumentor).
        client: the [Client][d360_async.Client], or ``None`` for SmartDocumentor.
        limiter: the limiter every request goes through (for the stats).
        make_target: builds the watch target for one (validated) id.
        base_url: where requests go (no credential in it).
    """

    kind: Kind
    project: str | None
    client: Client | None
    limiter: RateLimiter
    make_target: Callable[[str | int], Target[Any]]
    base_url: str

    def stats(self) -> list[LimiterStats]:
        return self.limiter.stats()


async def _shared_limiter(
    stack: AsyncExitStack, rate: RateSpec | None, redis_url: str | None
) -> RateLimiter | None:
    """A limiter the command owns: Redis-backed with ``--redis-url``, else ``None``."""
    if redis_url is None:
        return None
    from d360_async import RedisRateLimiter

    config = rate_limit_config(rate) if rate is not None else RateLimitConfig()
    try:
        limiter = RedisRateLimiter(redis_url, config=config)
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:  # redis-py refuses the URL
        raise UsageError(f"invalid --redis-url: {exc}") from None
    stack.push_async_callback(limiter.aclose)
    return limiter


@asynccontextmanager
async def connect(
    kind: Kind,
    credentials: Credentials,
    *,
    project: str | None,
    base_url: str | None,
    region: Region | None,
    rate: RateSpec | None,
    redis_url: str | None,
    max_concurrency: int | None,
) -> AsyncIterator[Connection]:
    """Open the client ``kind`` needs; everything is closed when the block ends."""
    limits = (
        ConnectionLimits(max_connections=max_concurrency, max_connections_per_host=max_concurrency)
        if max_concurrency is not None
        else None
    )
    async with AsyncExitStack() as stack:
        limiter = await _shared_limiter(stack, rate, redis_url)
        if kind.api is API.SMARTDOCUMENTOR:
            from d360_async.smartdocumentor import DEFAULT_BASE_URL, SmartDocumentorClient

            if region is not None:
                raise UsageError(f"--region does not apply to {kind.name} (use --base-url)")
            if limiter is None:
                limiter = LocalRateLimiter(rate_limit_config(rate) if rate is not None else None)
                stack.push_async_callback(limiter.aclose)
            assert credentials.sd_client_id is not None
            assert credentials.sd_client_secret is not None
            url = base_url or DEFAULT_BASE_URL
            sd = SmartDocumentorClient(
                client_id=credentials.sd_client_id,
                client_secret=credentials.sd_client_secret,
                base_url=url,
                rate_limiter=limiter,
                limits=limits,
                retry=CommandRetryPolicy(),
            )
            await stack.enter_async_context(sd)

            yield Connection(kind, None, None, limiter, _factory(kind, sd, None), url)
            return

        from d360_async import Client

        url = base_url or (region or Region.EU).value
        client = Client(
            api_token=credentials.api_token,
            v2_api_token=credentials.v2_api_token,
            base_url=url,
            rate_limiter=limiter,
            rate_limit=rate_limit_config(rate) if rate is not None and limiter is None else None,
            limits=limits,
            retry=CommandRetryPolicy(),
        )
        await stack.enter_async_context(client)
        yield Connection(
            kind, project, client, client.rate_limiter, _factory(kind, client, project), url
        )


def _factory(kind: Kind, source: Any, project: str | None) -> Callable[[str | int], Target[Any]]:
    """Targets of ``kind`` built by the library's registry, from the spec a checkpoint would
    hold: one way to build them, whichever kind."""
    if kind.needs_project and project is None:  # validate_project() guarantees one
        raise UsageError(f"{kind.name} need --project PROJECT_ID")
    return lambda ident: target_from_spec(source, target_spec(kind, project, ident))
