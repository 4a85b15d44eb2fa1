"""`FakeDocument360`: the public facade of the fake server, and its control API.

The facade owns the aiohttp runner (start, stop) and what a test does to the server from
outside: seed operations, force or end their status, revoke tokens, read the truth and the
stats. Requests are served by the API families over one shared state:

| room | what |
|---|---|
| `_state` | settings, credentials, operations, RNGs, the clock: what every family shares |
| `_pipeline` | the request path: count, latency, auth, rate limit, faults, send |
| `_auth` | the credential each family checks, and its 401 |
| `_replies` | a handler's `Reply` and each family's error format |
| `_v3`, `_v2`, `_smartdocumentor`, `_downloads` | the endpoints of one API each |
| `_ratelimit` | the server's rate-limit algorithms and header dialects |
| `_faults`, `_body_faults` | which fault hits which request, and what it does to a body |
| `_ops`, `_bodies` | status tables and lifecycles; the shapes of bodies |
| `_config`, `_stats` | the public settings (kinds, routes, limits); the counters |

The fake's status tables are its own, kept apart from the library's on purpose: a fake that
shared them could not catch the library reading a status wrongly. The fake is an edge: it
imports only the public API of `d360_async`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Generic, Literal, Self, TypeVar, overload

import attrs
from aiohttp import web

from d360_async import Clock, SystemClock, TargetKind

from ._config import FakeLifecycle, FakeRateLimit, as_range, fake_kind
from ._downloads import Downloads
from ._faults import FakeFaults
from ._ops import FakeOperation, Outcome
from ._pipeline import Pipeline
from ._ratelimit import BudgetUse, ServerRateLimiter, budget_used
from ._smartdocumentor import SmartDocumentorApi
from ._state import FakeState
from ._stats import FakeStats, token_fingerprint
from ._v2 import V2Api
from ._v3 import V3Api

__all__ = ["DEFAULT_PROJECT_ID", "FakeDocument360"]

_log = logging.getLogger("d360_async.testing")

DEFAULT_PROJECT_ID: Final = "9a3b4c5d-6e7f-8a9b-0c1d-2e3f4a5b6c7d"
"""The project seeded operations belong to unless told otherwise (the vendor's example id)."""

_DEFAULT_RATE_LIMIT: Final = FakeRateLimit()
_DEFAULT_LIFECYCLE: Final = FakeLifecycle()

T = TypeVar("T")


class _Setting(Generic[T]):
    """A setting of the facade that lives in the shared state (read and written through)."""

    __slots__ = ("name",)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> Self: ...
    @overload
    def __get__(self, instance: FakeDocument360, owner: type) -> T: ...
    def __get__(self, instance: FakeDocument360 | None, owner: type) -> T | Self:
        if instance is None:
            return self
        value: T = getattr(instance._state, self.name)
        return value

    def __set__(self, instance: FakeDocument360, value: T) -> None:
        setattr(instance._state, self.name, value)


class FakeDocument360:
    """A fake Document360 (V3 and V2) and SmartDocumentor API, served for real on 127.0.0.1.

    It listens on an ephemeral port, checks credentials, enforces a rate limit with the
    vendor's headers, runs operations through scripted lifecycles driven by an injectable
    clock and a seeded RNG, injects faults on demand, and counts everything it sees. Use it in
    your own tests instead of mocking HTTP:

    ```python
    import aiohttp
    from d360_async.testing import FakeDocument360, ManualClock

    async def test_export_finishes() -> None:
        clock = ManualClock()  # a clock the test moves by hand: no sleeping
        async with FakeDocument360(clock=clock) as fake:
            [export_id] = fake.seed("v3.export", 1, pending=1.0, running=5.0)
            clock.advance(10.0)  # past the export's end
            url = f"{fake.url}/v3/projects/{fake.project_id}/exports/{export_id}"
            headers = {"Authorization": f"Bearer {fake.api_token}"}
            async with aiohttp.ClientSession() as session:
                async with session.get(url, headers=headers) as response:
                    body = await response.json()
            assert body["data"]["status"] == "Completed"
            assert fake.operation(export_id).first_terminal_served_at == clock.now
            assert fake.stats.rate_limited == 0
    ```

    Endpoints (bodies shaped exactly like the examples in the vendor's API reference):

    - V3 (``Authorization: Bearer <api_token>``): ``GET /v3/projects/{p}/drive/tasks/{id}``,
      ``POST /v3/projects/{p}/exports`` (202 + ``Operation-Location``),
      ``GET /v3/projects/{p}/exports/{id}`` (``download_url`` once Completed: a signed link on
      this server, valid ``link_ttl`` seconds, minted afresh on each fetch),
      ``POST``/``GET /v3/projects/{p}/imports[/{id}]``, ``POST /v3/projects/{p}/api-references``,
      ``GET .../api-references/{id}/logs?page=&page_size=`` (newest first, ``page_size`` <= 100)
      and ``GET .../api-references/{id}/logs/{log_id}``. Errors are RFC 7807 problem bodies.
    - V2 (header ``api_token``): ``GET /v2/Drive/Folders/DeleteFile/Status/{id}``,
      ``GET /v2/Project/Export/{id}``, ``GET /v2/Project/Import/{id}``; an unknown id answers
      400 with ``success: false``.
    - SmartDocumentor: ``POST /connect/token`` (client credentials, scope ``WebAPI``), then
      bearer-authenticated ``GET /api/v1.0/external/sdtask/status?taskId=|externalId=``
      (400/404 with an empty body), ``GET .../sdtask/statuslistpaginated?pageNumber=&pageSize=``
      (answers ``{pageNumber, pageSize, totalCount, totalPages, items}``),
      ``POST .../sdtask/process`` (JSON or form: ``displayName`` required, ``workspaceId``,
      ``externalId``, ``batchId``, ``description`` optional) and
      ``PATCH .../sdtask/restartprocessing?taskId=`` (increments ``restartCount`` and runs a
      fresh, never-stuck lifecycle).
    - ``GET /downloads/{export_id}.zip?...&se=&sig=``: the export's bytes
      ([download_bytes][d360_async.testing.FakeDocument360.download_bytes]); 403 with an XML storage
      error when the signature is wrong or expired. It needs no credential and counts the requests
      that sent one anyway.

    Seed kinds and their raw status sequences (pending -> running -> success | failure):

    | kind ([TargetKind][d360_async.TargetKind]) | raw statuses |
    |---|---|
    | `V3_EXPORT` | `Pending` -> `InProgress` -> `Completed` or `Failed` |
    | `V3_IMPORT` | `Pending` -> `InProgress` -> `Completed` or `Failed` |
    | `V3_DRIVE_TASK` | `Pending` -> `Processing` -> `Completed` or `Failed` |
    | `V3_API_REFERENCE` | newest log: `Pending` -> `InProgress` -> `Success` or `Failed` |
    | `V2_DELETE_FILE` | `0` Queued -> `2` InProgress -> `3` Completed or `4` Error |
    | `V2_EXPORT` | `Initiated` -> `InProgress` -> `Completed` or `Error` |
    | `V2_IMPORT` | `Queued` -> `InProgress` -> `Completed` or `Error` |
    | `SMARTDOCUMENTOR_TASK` | taskStatus 30 -> 31 -> 4 -> 9 with integration 3 (see below) |

    The short names of earlier versions (`"export"`, `"drive_task"`, `"v2_delete"`,
    `"sd_task"`...) are still accepted by `seed` and `operations`, with a `DeprecationWarning`.

    A SmartDocumentor task goes 30 QueuedForPreProcessing -> 31 PreProcessingInProgress ->
    4 InReview -> 9 ExportCompleted with integration 3 Completed; a failure is
    32 PreProcessingFailed. Its integration is 1 Pending until the end.

    With ``v2_complete_quirk=True`` a completed V2 delete task reports
    ``is_complete: true`` with ``status: 2``, as in the vendor's own example.

    Args:
        api_token: the V3 bearer token accepted (more with
            [accept_token][d360_async.testing.FakeDocument360.accept_token]).
        v2_api_token: the V2 ``api_token`` header value accepted.
        sd_client_id: the SmartDocumentor OAuth2 client id.
        sd_client_secret: the SmartDocumentor OAuth2 client secret.
        rate_limit: the Document360 (V3 and V2) rate limit; ``None`` disables it.
        sd_rate_limit: a rate limit for SmartDocumentor API calls, per client id (default none).
        latency: seconds added to every response (a number, or a ``(low, high)`` range drawn
            uniformly), waited on ``clock``; requests wait side by side, so concurrency is real.
        seed: seeds the RNGs for lifecycles and ids, faults, and latency (three independent
            streams, so traffic does not change the operations drawn).
        clock: the server's [Clock][d360_async.Clock] (lifecycles, rate-limit windows, token
            and link expiry, stats, latency and ``slow`` faults); default the
            [SystemClock][d360_async.SystemClock]. Pass a
            [ManualClock][d360_async.testing.ManualClock] (the same one as the client's) to
            test without sleeping. A bare function returning seconds still works (its waits are
            real) but is deprecated.
        clock_skew: seconds added to the wall time the server reports (``Date``, epoch
            ``X-RateLimit-Reset``, timestamps, link expiry); may be changed at any time.
        lifecycle: the default lifecycle of operations (POST-created and seeded alike).
        project_id: the default V3 project of seeded operations.
        link_ttl: seconds a download link stays valid.
        download_size: the size in bytes of every export download.
        sd_token_ttl: seconds a SmartDocumentor access token lives (``expires_in``).
        empty_401: answer 401 with an empty body, as a gateway may.
        v2_complete_quirk: reproduce the V2 ``is_complete: true`` + ``status: 2`` quirk.
        record_times: keep ``stats.request_times`` and ``stats.admitted_times`` (turn off for
            long soaks in which memory is measured).
        host: the address to listen on.
        port: the port (0: an ephemeral one).
        shutdown_timeout: seconds [stop][d360_async.testing.FakeDocument360.stop] waits for requests
            in flight.

    The wall time the server reports is the clock's ``time()`` at construction plus its
    advance since then, plus ``clock_skew``.

    Attributes:
        stats: what the server saw ([FakeStats][d360_async.testing.FakeStats]); zero it with
            [reset_stats][d360_async.testing.FakeDocument360.reset_stats].
        faults: the fault injector ([FakeFaults][d360_async.testing.FakeFaults]).

    The constructor's settings `lifecycle`, `clock_skew`, `link_ttl`, `download_size`,
    `sd_token_ttl`, `empty_401`, `v2_complete_quirk` and `record_times` are attributes too;
    each may be changed while the server runs and applies from the next request (`lifecycle`
    from the next operation created).  `api_token`, `v2_api_token`, `sd_client_id`,
    `sd_client_secret` and `project_id` are the credentials and default project the server
    was built with.

    Added in version 0.1.0.
    """

    lifecycle: _Setting[FakeLifecycle] = _Setting()
    """The lifecycle of operations created from now on (POST-created and seeded alike)."""
    clock_skew: _Setting[float] = _Setting()
    """Seconds added to the wall time the server reports."""
    link_ttl: _Setting[float] = _Setting()
    """Seconds a download link minted from now on stays valid."""
    download_size: _Setting[int] = _Setting()
    """The size in bytes of every export download."""
    sd_token_ttl: _Setting[float] = _Setting()
    """Seconds a SmartDocumentor access token issued from now on lives."""
    empty_401: _Setting[bool] = _Setting()
    """Answer 401 with an empty body."""
    v2_complete_quirk: _Setting[bool] = _Setting()
    """Reproduce the V2 ``is_complete: true`` + ``status: 2`` quirk."""
    record_times: _Setting[bool] = _Setting()
    """Keep ``stats.request_times`` and ``stats.admitted_times``."""

    def __init__(
        self,
        *,
        api_token: str = "test-api-token",
        v2_api_token: str = "test-v2-token",
        sd_client_id: str = "sd-client",
        sd_client_secret: str = "sd-secret",
        rate_limit: FakeRateLimit | None = _DEFAULT_RATE_LIMIT,
        sd_rate_limit: FakeRateLimit | None = None,
        latency: float | tuple[float, float] = 0.0,
        seed: int = 0,
        clock: Clock | Callable[[], float] | None = None,
        clock_skew: float = 0.0,
        lifecycle: FakeLifecycle = _DEFAULT_LIFECYCLE,
        project_id: str = DEFAULT_PROJECT_ID,
        link_ttl: float = 1800.0,
        download_size: int = 64 * 1024,
        sd_token_ttl: float = 3600.0,
        empty_401: bool = False,
        v2_complete_quirk: bool = False,
        record_times: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 1.0,
    ) -> None:
        if download_size < 0:
            raise ValueError("download_size must not be negative")
        if link_ttl <= 0 or sd_token_ttl <= 0:
            raise ValueError("link_ttl and sd_token_ttl must be positive")
        self.api_token = api_token
        self.v2_api_token = v2_api_token
        self.sd_client_id = sd_client_id
        self.sd_client_secret = sd_client_secret
        self.project_id = project_id
        self._state = state = FakeState(
            clock=_clock_source(clock),
            seed=seed,
            api_token=api_token,
            v2_api_token=v2_api_token,
            sd_client_id=sd_client_id,
            sd_client_secret=sd_client_secret,
            latency=as_range(latency),
            rate_limit=ServerRateLimiter(rate_limit) if rate_limit is not None else None,
            sd_rate_limit=ServerRateLimiter(sd_rate_limit) if sd_rate_limit is not None else None,
            lifecycle=lifecycle,
            clock_skew=clock_skew,
            link_ttl=link_ttl,
            download_size=download_size,
            sd_token_ttl=sd_token_ttl,
            empty_401=empty_401,
            v2_complete_quirk=v2_complete_quirk,
            record_times=record_times,
        )
        self.stats: FakeStats = state.stats
        self.faults: FakeFaults = state.faults
        self._downloads = downloads = Downloads(state)
        families = (
            V3Api(state, downloads),
            V2Api(state, downloads),
            SmartDocumentorApi(state),
            downloads,
        )
        self._pipeline = Pipeline(
            state, downloads, [route for family in families for route in family.routes()]
        )
        self._host = host
        self._port = port
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    def __repr__(self) -> str:
        where = self._url or "not running"
        return f"<FakeDocument360 {where} operations={len(self._state.ops)}>"

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (only while running)."""
        if self._url is None:
            raise RuntimeError("FakeDocument360 is not running; use 'async with' or start()")
        return self._url

    @property
    def running(self) -> bool:
        """True between [start][d360_async.testing.FakeDocument360.start] and
        [stop][d360_async.testing.FakeDocument360.stop]."""
        return self._runner is not None

    async def start(self) -> None:
        """Start listening. After [stop][d360_async.testing.FakeDocument360.stop] it may start
        again, on the same port if free."""
        if self._runner is not None:
            raise RuntimeError("FakeDocument360 is already running")
        runner = web.AppRunner(
            self._pipeline.build_app(),
            access_log=None,  # request lines carry link signatures: never log them
            handle_signals=False,
            shutdown_timeout=self._shutdown_timeout,
        )
        self._pipeline.stopping = False
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._url = f"http://{self._host}:{self._port}"
        _log.debug("fake Document360 listening on %s", self._url)

    async def stop(self) -> None:
        """Stop listening and close every connection.

        Requests held by simulated latency or a ``slow`` fault are woken and dropped without
        an answer; requests being answered finish within ``shutdown_timeout``.
        """
        runner, self._runner = self._runner, None
        self._url = None
        if runner is None:
            return
        self._pipeline.wake_all()  # woken requests drop their connection instead of answering
        await runner.cleanup()

    async def aclose(self) -> None:
        """The same as [stop][d360_async.testing.FakeDocument360.stop]."""
        await self.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- control API ----------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The server's [Clock][d360_async.Clock] (give the same one to the client under test)."""
        return self._state.clock

    def now(self) -> float:
        """The server clock's current reading."""
        return self._state.now()

    def epoch(self, at: float | None = None) -> float:
        """The wall time (UTC epoch seconds) the server reports at clock reading ``at``."""
        return self._state.epoch(at)

    def seed(
        self,
        kind: TargetKind | str,
        n: int = 1,
        *,
        project_id: str | None = None,
        pending: float | tuple[float, float] | None = None,
        running: float | tuple[float, float] | None = None,
        review: float | tuple[float, float] | None = None,
        failure_ratio: float | None = None,
        stuck_ratio: float | None = None,
        start: float | None = None,
        log_history: int = 0,
    ) -> list[str]:
        """Create ``n`` operations of ``kind`` and return their ids, in creation order.

        Unset lifecycle settings come from `lifecycle`.

        Args:
            kind: a [TargetKind][d360_async.TargetKind] (or its value, ``"v3.export"``).
            n: how many.
            project_id: the V3 project (default `project_id`); ignored for V2 and
                SmartDocumentor kinds.
            pending: seconds pending (a number or a range).
            running: seconds running.
            review: seconds a successful ``sd_task`` waits in review.
            failure_ratio: probability of ending failed.
            stuck_ratio: probability of never finishing.
            start: creation time on the server clock (default: now).
            log_history: for ``api_reference``: older, finished import logs behind the
                current one (for pagination).
        """
        short = fake_kind(kind)
        if n < 0 or log_history < 0:
            raise ValueError("n and log_history must not be negative")
        changes: dict[str, Any] = {
            name: value
            for name, value in (
                ("pending", pending),
                ("running", running),
                ("review", review),
                ("failure_ratio", failure_ratio),
                ("stuck_ratio", stuck_ratio),
            )
            if value is not None
        }
        lifecycle = attrs.evolve(self.lifecycle, **changes) if changes else self.lifecycle
        at = self._state.now() if start is None else start
        project = project_id or self.project_id
        return [
            self._state.create(short, project, lifecycle, at, log_history=log_history).id
            for _ in range(n)
        ]

    def operation(self, operation_id: str | int) -> FakeOperation:
        """The truth about one operation (raises ``KeyError`` for an unknown id)."""
        return self._state.op(operation_id).snapshot(self._state.now())

    def operations(self, kind: TargetKind | str | None = None) -> list[FakeOperation]:
        """Every operation (of ``kind``, a [TargetKind][d360_async.TargetKind]), in creation
        order."""
        now = self._state.now()
        short = None if kind is None else fake_kind(kind)
        return [
            op.snapshot(now) for op in self._state.ops.values() if short is None or op.kind == short
        ]

    def set_status(
        self,
        operation_id: str | int,
        raw: str | int | None,
        *,
        is_complete: bool | None = None,
        integration: int | None = None,
    ) -> None:
        """Serve ``raw`` as the operation's status until
        [clear_status][d360_async.testing.FakeDocument360.clear_status] (any value).

        Args:
            operation_id: the operation.
            raw: the raw status (``None`` serves JSON ``null``). For ``sd_task``: an int is the
                ``taskStatus`` (its text looked up), a str the ``taskStatusText``.
            is_complete: for ``v2_delete``: the ``is_complete`` flag (default: derived from
                ``raw`` being 3, 4 or 5).
            integration: for ``sd_task``: the ``integrationStatus`` to serve.
        """
        op = self._state.op(operation_id)
        op.forced = raw
        op.forced_is_complete = is_complete
        if op.sd is not None:
            op.sd.forced_integration = integration

    def clear_status(self, operation_id: str | int) -> None:
        """Go back to serving the drawn lifecycle."""
        self._state.op(operation_id).clear_forced()

    def finish(self, operation_id: str | int, outcome: Outcome = "succeeded") -> None:
        """End the operation now with ``outcome`` (clears any forced status)."""
        op = self._state.op(operation_id)
        now = self._state.now()
        op.clear_forced()
        op.running_at = min(op.running_at, now)
        op.review_at = op.finished_at = now
        op.outcome = outcome

    def delete(self, operation_id: str | int) -> None:
        """Remove the operation: its status requests answer 404 (V2: 400 ``success:false``)."""
        self._state.op(operation_id).deleted = True

    def download_url(self, export_id: str, *, ttl: float | None = None) -> str:
        """A signed download link for ``export_id``, valid ``ttl`` (default ``link_ttl``) s."""
        return self._downloads.mint_link(self.url, export_id, self._state.now(), ttl)

    def download_bytes(self, export_id: str) -> bytes:
        """The deterministic content served for ``export_id`` (``download_size`` bytes)."""
        return self._downloads.content(export_id)

    def accept_token(self, token: str, *, api: Literal["v3", "v2"] = "v3") -> None:
        """Accept another V3 bearer token or V2 ``api_token``."""
        (self._state.v3_tokens if api == "v3" else self._state.v2_tokens).add(token)

    def revoke_token(self, token: str) -> None:
        """Stop accepting a V3/V2 token or a SmartDocumentor access token (answers 401)."""
        self._state.v3_tokens.discard(token)
        self._state.v2_tokens.discard(token)
        self._state.sd_tokens.pop(token, None)

    def reset_stats(self) -> None:
        """Zero every counter in `stats`, in place (operations keep their poll counts)."""
        self.stats.reset()

    def budget_use(self) -> dict[str, BudgetUse]:
        """What share of the rate-limit budget each key spent, measured by the server.

        Keys are `"<token fingerprint>|<project or ->"`. The share is taken over the whole
        windows between a key's first and last admission (see `budget_used` in the private
        `d360_async.testing._fake._ratelimit`); it needs `record_times` (the default).
        """
        limiter = self._state.limiter
        if limiter is None:
            return {}
        found: dict[str, BudgetUse] = {}
        for key in limiter.budget_keys():
            token, project = key if isinstance(key, tuple) and len(key) == 2 else (key, None)
            label = f"{token_fingerprint(str(token))}|{project or '-'}"
            found[label] = budget_used(limiter.config, limiter.admission_times(key))
        return found

    def set_rate_limit(self, rate_limit: FakeRateLimit) -> None:
        """Enforce another policy on the API from now on, as a plan changed or a gateway
        retuned under load does: what each key spent so far still counts (a count above a
        lowered limit leaves no room until it has gone).

        Raises:
            RuntimeError: the server was created with `rate_limit=None` (no limiting).
        """
        limiter = self._state.limiter
        if limiter is None:
            raise RuntimeError("this fake server does not rate-limit (rate_limit=None)")
        limiter.reconfigure(rate_limit)

    def reset_rate_limits(self) -> None:
        """Refill every rate-limit budget."""
        for limiter in (self._state.limiter, self._state.sd_limiter):
            if limiter is not None:
                limiter.reset()


def _clock_source(clock: Clock | Callable[[], float] | None) -> Clock:
    if clock is None:
        return SystemClock()
    if isinstance(clock, Clock):
        return clock
    warnings.warn(
        "FakeDocument360(clock=<function>) is deprecated: pass a d360_async.Clock "
        "(d360_async.testing.ManualClock in tests)",
        DeprecationWarning,
        stacklevel=3,
    )
    return _ReadingClock(clock)


class _ReadingClock(SystemClock):
    """A bare function of seconds read as the clock; waits stay real."""

    __slots__ = ("_read",)

    def __init__(self, read: Callable[[], float]) -> None:
        self._read = read

    def monotonic(self) -> float:
        return self._read()
