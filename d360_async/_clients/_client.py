"""The public `Client`: one per token (and base URL), used as an async context manager."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import aiohttp

from d360_async._clock import Clock, as_clock
from d360_async._core._config import ConnectionLimits, Hooks, Region, Timeouts
from d360_async._core._errors import MissingCredential
from d360_async._core._ratelimit._protocol import LimiterStats, RateLimiter
from d360_async._core._redact import library_logger
from d360_async._core._retry import RetryPolicy
from d360_async._core._target_protocol import Target
from d360_async._limiters import LocalRateLimiter, RateLimitConfig
from d360_async._limiters._local import as_rate_limit_config
from d360_async._resources import (
    ApiReferencesResource,
    DriveResource,
    ExportsResource,
    ImportsResource,
    V2Resource,
    target_from_spec,
)
from d360_async._transport._auth import ApiTokenAuth, Auth, BearerAuth, TokenProvider
from d360_async._transport._lifecycle import TransportOwner
from d360_async._transport._telemetry import Telemetry, instrument
from d360_async._transport._transport import Transport
from d360_async._watch import (
    DurationModels,
    ObservationHub,
    PollPolicy,
    PollRegistry,
    Priors,
    Transition,
    Watch,
    load_priors,
    wait,
    watch,
)

__all__ = ["ENV_API_TOKEN", "ENV_BASE_URL", "ENV_V2_API_TOKEN", "Client"]

logger = library_logger("d360_async.client")

ENV_API_TOKEN: Final = "D360_API_TOKEN"
ENV_V2_API_TOKEN: Final = "D360_V2_API_TOKEN"
ENV_BASE_URL: Final = "D360_BASE_URL"


def _from_environment(name: str) -> str | None:
    """The variable's value, or `None` when it is unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


class Client(TransportOwner):
    """An asyncio client for the Document360 V3 and V2 APIs.

    Use it as an async context manager:

    ```python
    async with Client() as client:  # D360_API_TOKEN and D360_BASE_URL from the environment
        export = await client.exports.get(project_id, export_id)
        print(export.status, export.phase)
    ```

    Every argument is keyword-only.  The credentials and the base URL may come from the
    environment, as most API clients do: an argument that is passed always wins, an
    environment variable fills in one that is not, and an empty variable counts as unset.

    | argument | environment variable | when neither is given |
    |---|---|---|
    | `api_token` | `D360_API_TOKEN` | no V3 (`client.v2` may still be used) |
    | `v2_api_token` | `D360_V2_API_TOKEN` | no V2 (the V3 resources may still be used) |
    | `base_url` | `D360_BASE_URL` | [Region.EU][d360_async.Region] |

    Args:
        api_token: the V3 bearer token, or an async callable returning one (asked again once
            after a 401).
        v2_api_token: the separate V2 `api_token`; needed only for `client.v2`.
        base_url: a [Region][d360_async.Region] or any absolute URL (a proxy, the fake
            server).
        session: an aiohttp session to borrow; the client then never closes it.
        rate_limiter: a limiter to share (for instance one
            [RedisRateLimiter][d360_async.RedisRateLimiter] for many processes); by default
            each client has its own in-process limiter.
        rate_limit: requests per minute to assume when the server sends no rate-limit headers
            (the vendor's lowest paid plan allows 60, Enterprise 100), or a full
            [RateLimitConfig][d360_async.RateLimitConfig].
        retry: the [RetryPolicy][d360_async.RetryPolicy].
        timeouts: per-attempt [Timeouts][d360_async.Timeouts].
        limits: connection pool bounds for the session the client creates.
        hooks: observability callbacks (requests, responses, retries, limiter waits, and the
            transitions of ``client.watch``).
        telemetry: OpenTelemetry spans and metrics through the global providers when
            ``opentelemetry-api`` is installed (the ``otel`` extra), a no-op until the
            application configures the SDK; ``False`` turns them off, a
            [Telemetry][d360_async.Telemetry] sends them to other providers.
        priors: learned operation durations to start from (a
            [Watch.checkpoint][d360_async.Watch.checkpoint], or
            [priors][d360_async.Client.priors] of an earlier client), so the first watch is
            already warm.
        clock: where time comes from ([Clock][d360_async.Clock]) for the retry back-off, the
            client's own limiter and its watches; tests pass a
            [ManualClock][d360_async.testing.ManualClock] (the same one as the
            [FakeDocument360][d360_async.testing.FakeDocument360]) to run without waiting.
        hub: an [ObservationHub][d360_async.ObservationHub] on Redis: the watches of every
            process given one (with the same Redis and prefix) poll each operation once
            between them, one process polling it and the others reading what it saw.

    Raises:
        MissingCredential: neither token was passed and neither `D360_API_TOKEN` nor
            `D360_V2_API_TOKEN` is set.
        ValueError: both `rate_limiter` and `rate_limit` were given, `rate_limit` is not
            a positive rate, or `priors` is malformed.
        TypeError: `rate_limit` is neither a number, a `RateLimitConfig` nor `None`.
    """

    def __init__(
        self,
        *,
        api_token: str | TokenProvider | None = None,
        v2_api_token: str | None = None,
        base_url: Region | str | None = None,
        session: aiohttp.ClientSession | None = None,
        rate_limiter: RateLimiter | None = None,
        rate_limit: RateLimitConfig | float | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        limits: ConnectionLimits | None = None,
        hooks: Hooks | None = None,
        telemetry: bool | Telemetry = True,
        priors: Priors | None = None,
        clock: Clock | None = None,
        hub: ObservationHub | None = None,
    ) -> None:
        if api_token is None:
            api_token = _from_environment(ENV_API_TOKEN)
        if v2_api_token is None:
            v2_api_token = _from_environment(ENV_V2_API_TOKEN)
        if api_token is None and v2_api_token is None:
            raise MissingCredential(
                f"no API token was given; pass api_token or set {ENV_API_TOKEN} "
                f"(for the V2 API, v2_api_token or {ENV_V2_API_TOKEN})"
            )
        if base_url is None:
            base_url = _from_environment(ENV_BASE_URL) or Region.EU
        url = base_url.value if isinstance(base_url, Region) else base_url
        if rate_limiter is not None and rate_limit is not None:
            raise ValueError("give rate_limiter or rate_limit, not both")
        config = as_rate_limit_config(rate_limit)
        self._clock = as_clock(clock, owner="Client")
        self._transport = Transport(
            base_url=url,
            session=session,
            limiter=rate_limiter
            if rate_limiter is not None
            else LocalRateLimiter(config, clock=self._clock),
            owns_limiter=rate_limiter is None,
            retry=retry,
            timeouts=timeouts,
            limits=limits,
            hooks=instrument(self, hooks, telemetry, "document360"),
            clock=self._clock,
        )
        self._v3_auth: Auth | None = BearerAuth(api_token) if api_token is not None else None
        self._v2_auth: Auth | None = (
            ApiTokenAuth(v2_api_token) if v2_api_token is not None else None
        )
        self.exports = ExportsResource(self._transport, self._v3_auth)
        """V3 exports: start, read, download and watch them
        ([ExportsResource][d360_async.ExportsResource])."""
        self.drive = DriveResource(self._transport, self._v3_auth)
        """V3 drive background tasks ([DriveResource][d360_async.DriveResource])."""
        self.imports = ImportsResource(self._transport, self._v3_auth)
        """V3 imports ([ImportsResource][d360_async.ImportsResource])."""
        self.api_references = ApiReferencesResource(self._transport, self._v3_auth)
        """V3 API-reference imports and their logs
        ([ApiReferencesResource][d360_async.ApiReferencesResource])."""
        self.v2 = V2Resource(self._transport, self._v2_auth)
        """The V2 API: delete-file status, `v2.exports`, `v2.imports`
        ([V2Resource][d360_async.V2Resource])."""
        self._durations = DurationModels()
        self._registry = PollRegistry()
        if hub is not None:
            hub.attach(self._registry)
        if priors is not None:
            self._durations.absorb(load_priors(priors))

    def __repr__(self) -> str:
        return f"<Client {self._transport.base_url} {self._transport.state.value}>"

    # -- rate limiting -----------------------------------------------------------------------

    def rate_limit_stats(self) -> list[LimiterStats]:
        """Requests sent, waits, 429s and the current limit estimate, per rate-limit key."""
        return self._transport.limiter.stats()

    # -- watching ----------------------------------------------------------------------------

    def _target_resources(self) -> tuple[object, ...]:
        # What target_from_spec looks among for the resource registered for a spec's kind.
        return (
            self.exports,
            self.drive,
            self.imports,
            self.api_references,
            self.v2,
            self.v2.exports,
            self.v2.imports,
        )

    def target_from_spec(self, spec: Mapping[str, Any]) -> Target[Any]:
        """Rebuild a target of this client from the ``spec`` stored in a checkpoint."""
        return target_from_spec(self, spec)

    @property
    def durations(self) -> DurationModels:
        """How long this client's operations take, learned by its watches and shared by them."""
        return self._durations

    def priors(self) -> str:
        """The learned durations as JSON, for ``priors=`` of a later client or watch."""
        return json.dumps(self._durations.export(), separators=(",", ":"))

    def watch(
        self,
        targets: Iterable[Target[Any]] = (),
        *,
        policy: PollPolicy | None = None,
        max_concurrency: int = 16,
        keep_open: bool = False,
        keep_finished: bool = False,
        resume: str | bytes | None = None,
        buffer: int = 64,
        priors: Priors | None = None,
        clock: Clock | None = None,
        resolver: Callable[[Mapping[str, Any]], Target[Any]] | None = None,
        hooks: Hooks | None = None,
    ) -> Watch[Any]:
        """Watch many operations; ``async with client.watch(...) as w: async for t in w``.

        Targets may come from other clients (a V2 client, a SmartDocumentor client); each keeps
        its own rate-limit key.  Every watch of a client learns into, and starts from, the
        client's [durations][d360_async.Client.durations], so the second one is warm.

        **One poll per operation.**  Watches of one client that include the same operation
        (same kind and key) poll it once between them: the watch whose policy is the most
        demanding (shortest ``interval``, then adaptive before plain backoff) polls it and
        the others are given what it saw.  Each watch keeps its own semantics: its own
        first-sight transition, ``until=``, deadlines, stall detection and checkpoint; when
        the target ends in the watch that polls it (or is removed from it, or that watch
        closes), another watch that still includes it takes the polling over.
        [Client.wait][d360_async.Client.wait] shares the same way.  Across processes, see
        [ObservationHub][d360_async.ObservationHub].

        Args:
            targets: what to watch; targets with a key already seen are ignored.
            policy: pacing, deadlines, ``until=`` and stall detection.
            max_concurrency: polls in flight at once, over all targets.
            keep_open: keep iterating when no target is left (a service that adds work);
                finished targets are then forgotten once delivered.
            keep_finished: with ``keep_open``, keep finished targets in the watch.
            resume: a checkpoint from [Watch.checkpoint][d360_async.Watch.checkpoint];
                targets only named in it are rebuilt with
                [target_from_spec][d360_async.Client.target_from_spec].
            buffer: transitions buffered for a slow consumer before polling slows down.
            priors: extra learned durations to add to the client's before starting.
            clock: where the watch's time comes from (default: the client's).
            resolver: rebuilds checkpointed targets (default: ``target_from_spec``).
            hooks: observability callbacks for the watch (default: the client's).
        """
        return watch(
            targets,
            policy=policy if policy is not None else PollPolicy(),
            max_concurrency=max_concurrency,
            keep_open=keep_open,
            keep_finished=keep_finished,
            resume=resume,
            buffer=buffer,
            clock=clock if clock is not None else self._clock,
            resolver=resolver if resolver is not None else self.target_from_spec,
            priors=priors,
            durations=self._durations,
            hooks=hooks if hooks is not None else self._transport.hooks,
            shared=self._registry,
        )

    async def wait(
        self,
        target: Target[Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a watch deadline, not an I/O timeout
        policy: PollPolicy | None = None,
    ) -> Transition[Any]:
        """Watch one operation until it ends and return its final transition."""
        return await wait(
            target,
            timeout=timeout,
            policy=policy if policy is not None else PollPolicy(),
            clock=self._clock,
            hooks=self._transport.hooks,
            durations=self._durations,
            shared=self._registry,
        )
