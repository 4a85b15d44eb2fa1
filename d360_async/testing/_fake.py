"""``FakeDocument360``: a real aiohttp server that behaves like Document360 and SmartDocumentor.

Request path through the server (one ``_dispatch`` per request, O(1) work):

```python
count -> simulated latency -> authenticate (401) -> rate limit (429)
      -> pick a fault -> handler builds a ``_Reply`` -> apply body faults -> send
```

Only an unfaulted answer (or a ``slow`` one that is delivered) records an operation's poll and
the first time its terminal status was served.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime
import email.utils
import hashlib
import hmac
import itertools
import json
import logging
import math
import random
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable, Iterable
from types import TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import quote

import attrs
from aiohttp import web

from d360_async import TargetKind

from ._fake_bodies import (
    HTML_502,
    MALFORMED_JSON,
    iso,
    problem,
    storage_error,
    v2_envelope,
    v3_envelope,
)
from ._fake_config import (
    FakeLifecycle,
    FakeRateLimit,
    OperationKind,
    as_range,
    fake_kind,
)
from ._fake_faults import FakeFaults, Fault
from ._fake_ops import (
    SD_INTEGRATION,
    SD_STAGES,
    SD_TASK_TEXT,
    SD_TEXT_TO_NUMBER,
    FakeOperation,
    LogEntry,
    Operation,
    Outcome,
    SdTask,
    draw_lifecycle,
)
from ._fake_ratelimit import BudgetUse, ServerRateLimiter, budget_used, rate_headers
from ._fake_stats import FakeStats, token_fingerprint

__all__ = ["DEFAULT_PROJECT_ID", "FakeDocument360"]

_log = logging.getLogger("d360_async.testing")

DEFAULT_PROJECT_ID: Final = "9a3b4c5d-6e7f-8a9b-0c1d-2e3f4a5b6c7d"
"""The project seeded operations belong to unless told otherwise (the vendor's example id)."""

_DEFAULT_RATE_LIMIT: Final = FakeRateLimit()
_DEFAULT_LIFECYCLE: Final = FakeLifecycle()

_Family = Literal["v3", "v2", "sd", "token", "download"]
_JSON: Final = "application/json; charset=utf-8"
_PROBLEM_JSON: Final = "application/problem+json; charset=utf-8"
_XML: Final = "application/xml"

_V2_KINDS: Final = frozenset({"v2_delete", "v2_export", "v2_import"})
_UNKNOWN_TEXT: Final = "Hibernating"
_UNKNOWN_NUMBER: Final = 97
# Fields a ``missing_fields`` fault removes: the ones the vendor marks optional or nullable.
_REMOVABLE: Final = frozenset(
    {
        "request_id",
        "errors",
        "warnings",
        "information",
        "extension_data",
        "download_url",
        "completed_at",
        "created_at",
        "error_count",
        "warning_count",
        "batchId",
        "taskNumber",
        "externalId",
        "description",
        "createdOn",
        "restartCount",
        "preProcessingStartedOn",
    }
)


@attrs.define(slots=True)
class _Reply:
    """What a handler answers, before faults and headers are applied."""

    status: int
    payload: Any = None
    body: bytes | None = None
    content_type: str = _JSON
    headers: dict[str, str] | None = None
    served: tuple[tuple[Operation, bool], ...] = ()
    status_paths: tuple[tuple[str | int, ...], ...] = ()

    def encode(self) -> bytes:
        if self.body is not None:
            return self.body
        if self.payload is None:
            return b""
        return json.dumps(self.payload).encode()


_Handler = Callable[[web.Request, float], Awaitable[_Reply]]


class _BadBody(Exception):
    """The request body is not what the endpoint accepts."""


class FakeDocument360:
    """A fake Document360 (V3 and V2) and SmartDocumentor API, served for real on 127.0.0.1.

    It listens on an ephemeral port, checks credentials, enforces a rate limit with the
    vendor's headers, runs operations through scripted lifecycles driven by an injectable
    clock and a seeded RNG, injects faults on demand, and counts everything it sees. Use it in
    your own tests instead of mocking HTTP:

    ```python
    import aiohttp
    from d360_async import TargetKind
    from d360_async.testing import FakeDocument360

    async def test_export_finishes() -> None:
        clock = [0.0]  # a clock the test moves by hand: no sleeping
        async with FakeDocument360(clock=lambda: clock[0]) as fake:
            [export_id] = fake.seed(TargetKind.V3_EXPORT, 1, pending=1.0, running=5.0)
            clock[0] = 10.0  # past the export's end
            url = f"{fake.url}/v3/projects/{fake.project_id}/exports/{export_id}"
            headers = {"Authorization": f"Bearer {fake.api_token}"}
            async with aiohttp.ClientSession() as session:
                async with session.get(url, headers=headers) as response:
                    body = await response.json()
            assert body["data"]["status"] == "Completed"
            assert fake.operation(export_id).first_terminal_served_at == 10.0
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
            uniformly); real sleeps, so concurrency is real.
        seed: seeds the RNGs for lifecycles and ids, faults, and latency (three independent
            streams, so traffic does not change the operations drawn).
        clock: the server's clock in seconds (lifecycles, rate limits, token and link expiry,
            stats). Inject a function you advance to test without sleeping.
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

    The wall time the server reports is ``time.time()`` at construction plus the clock's
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
        clock: Callable[[], float] = time.monotonic,
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
        self.lifecycle = lifecycle
        self.clock_skew = clock_skew
        self.link_ttl = link_ttl
        self.download_size = download_size
        self.sd_token_ttl = sd_token_ttl
        self.empty_401 = empty_401
        self.v2_complete_quirk = v2_complete_quirk
        self.record_times = record_times
        self.stats = FakeStats()
        self._clock = clock
        self._epoch_offset = time.time() - clock()
        self._latency = as_range(latency)
        self._rng = random.Random(seed)
        self._latency_rng = random.Random(f"latency:{seed}")
        self._id_rng = random.Random(f"request-ids:{seed}")
        self.faults = FakeFaults(random.Random(f"faults:{seed}"))
        self._limiter = ServerRateLimiter(rate_limit) if rate_limit is not None else None
        self._sd_limiter = ServerRateLimiter(sd_rate_limit) if sd_rate_limit is not None else None
        self._v3_tokens: set[str] = {api_token}
        self._v2_tokens: set[str] = {v2_api_token}
        self._sd_clients: dict[str, str] = {sd_client_id: sd_client_secret}
        self._sd_tokens: dict[str, tuple[float, str]] = {}
        self._ops: dict[str, Operation] = {}
        self._sd_ops: dict[int, Operation] = {}
        self._sd_external: dict[str, Operation] = {}
        self._logs: dict[str, tuple[Operation, LogEntry | None]] = {}
        self._next_task_id = 1
        self._link_key = secrets.token_bytes(32)
        self._counter = itertools.count(1)
        self._host = host
        self._port = port
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._sleepers: set[asyncio.Future[None]] = set()
        self._stopping = False

    def __repr__(self) -> str:
        where = self._url or "not running"
        return f"<FakeDocument360 {where} operations={len(self._ops)}>"

    # ------------------------------------------------------------------ lifecycle

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
            self._build_app(),
            access_log=None,  # request lines carry link signatures: never log them
            handle_signals=False,
            shutdown_timeout=self._shutdown_timeout,
        )
        self._stopping = False
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
        self._stopping = True  # woken sleepers drop their connection instead of answering
        for sleeper in list(self._sleepers):
            if not sleeper.done():
                sleeper.set_result(None)
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

    # ------------------------------------------------------------------ public helpers

    def now(self) -> float:
        """The server clock's current reading."""
        return self._clock()

    def epoch(self, at: float | None = None) -> float:
        """The wall time (UTC epoch seconds) the server reports at clock reading ``at``."""
        return (self._clock() if at is None else at) + self._epoch_offset + self.clock_skew

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
        at = self._clock() if start is None else start
        project = project_id or self.project_id
        return [
            self._create(short, project, lifecycle, at, log_history=log_history).id
            for _ in range(n)
        ]

    def operation(self, operation_id: str | int) -> FakeOperation:
        """The truth about one operation (raises ``KeyError`` for an unknown id)."""
        return self._op(operation_id).snapshot(self._clock())

    def operations(self, kind: TargetKind | str | None = None) -> list[FakeOperation]:
        """Every operation (of ``kind``, a [TargetKind][d360_async.TargetKind]), in creation
        order."""
        now = self._clock()
        short = None if kind is None else fake_kind(kind)
        return [op.snapshot(now) for op in self._ops.values() if short is None or op.kind == short]

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
        op = self._op(operation_id)
        op.forced = raw
        op.forced_is_complete = is_complete
        if op.sd is not None:
            op.sd.forced_integration = integration

    def clear_status(self, operation_id: str | int) -> None:
        """Go back to serving the drawn lifecycle."""
        self._op(operation_id).clear_forced()

    def finish(self, operation_id: str | int, outcome: Outcome = "succeeded") -> None:
        """End the operation now with ``outcome`` (clears any forced status)."""
        op = self._op(operation_id)
        now = self._clock()
        op.clear_forced()
        op.running_at = min(op.running_at, now)
        op.review_at = op.finished_at = now
        op.outcome = outcome

    def delete(self, operation_id: str | int) -> None:
        """Remove the operation: its status requests answer 404 (V2: 400 ``success:false``)."""
        self._op(operation_id).deleted = True

    def download_url(self, export_id: str, *, ttl: float | None = None) -> str:
        """A signed download link for ``export_id``, valid ``ttl`` (default ``link_ttl``) s."""
        return self._mint_link(self.url, export_id, self._clock(), ttl)

    def download_bytes(self, export_id: str) -> bytes:
        """The deterministic content served for ``export_id`` (``download_size`` bytes)."""
        block = hashlib.sha256(f"d360-fake-export:{export_id}".encode()).digest()
        size = self.download_size
        return (block * (size // len(block) + 1))[:size]

    def accept_token(self, token: str, *, api: Literal["v3", "v2"] = "v3") -> None:
        """Accept another V3 bearer token or V2 ``api_token``."""
        (self._v3_tokens if api == "v3" else self._v2_tokens).add(token)

    def revoke_token(self, token: str) -> None:
        """Stop accepting a V3/V2 token or a SmartDocumentor access token (answers 401)."""
        self._v3_tokens.discard(token)
        self._v2_tokens.discard(token)
        self._sd_tokens.pop(token, None)

    def reset_stats(self) -> None:
        """Zero every counter in `stats`, in place (operations keep their poll counts)."""
        self.stats.reset()

    def budget_use(self) -> dict[str, BudgetUse]:
        """What share of the rate-limit budget each key spent, measured by the server.

        Keys are `"<token fingerprint>|<project or ->"`. The share is taken over the whole
        windows between a key's first and last admission (see `budget_used` in the private
        `d360_async.testing._fake_ratelimit`); it needs `record_times` (the default).
        """
        limiter = self._limiter
        if limiter is None:
            return {}
        found: dict[str, BudgetUse] = {}
        for key in limiter.budget_keys():
            token, project = key if isinstance(key, tuple) and len(key) == 2 else (key, None)
            label = f"{token_fingerprint(str(token))}|{project or '-'}"
            found[label] = budget_used(limiter.config, limiter.admission_times(key))
        return found

    def reset_rate_limits(self) -> None:
        """Refill every rate-limit budget."""
        for limiter in (self._limiter, self._sd_limiter):
            if limiter is not None:
                limiter.reset()

    # ------------------------------------------------------------------ operations

    def _op(self, operation_id: str | int) -> Operation:
        return self._ops[str(operation_id)]

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _new_id(self, kind: OperationKind) -> str:
        while True:
            if kind in _V2_KINDS:
                candidate = f"{self._rng.getrandbits(96):024x}"  # V2 ids look like ObjectIds
            elif kind == "sd_task":
                candidate = str(self._next_task_id)
                self._next_task_id += 1
            else:
                candidate = self._uuid()
            if candidate not in self._ops:
                return candidate

    def _create(
        self,
        kind: OperationKind,
        project_id: str | None,
        lifecycle: FakeLifecycle,
        start: float,
        *,
        log_history: int = 0,
        sd_fields: dict[str, Any] | None = None,
    ) -> Operation:
        op_id = self._new_id(kind)
        started, running_at, review_at, finished_at, outcome = draw_lifecycle(
            self._rng, lifecycle, start, kind
        )
        op = Operation(
            id=op_id,
            kind=kind,
            project_id=project_id
            if kind in ("export", "import", "drive_task", "api_reference")
            else None,
            started_at=started,
            running_at=running_at,
            review_at=review_at,
            finished_at=finished_at,
            outcome=outcome,
        )
        if kind == "api_reference":
            self._init_api_reference(op, log_history)
        elif kind == "sd_task":
            fields = sd_fields or {}
            task_id = int(op_id)
            external = fields.get("externalId", f"ext-{task_id}")
            op.sd = SdTask(
                task_id=task_id,
                workspace_id=fields.get("workspaceId", 1),
                batch_id=fields.get("batchId", 1),
                task_number=task_id,
                external_id=external,
                display_name=fields.get("displayName", f"Task {task_id}"),
                description=fields.get("description", f"Seeded task {task_id}"),
                total_pages=self._rng.randint(1, 40),
                created_at=start,
            )
            self._sd_ops[task_id] = op
            if external is not None:
                self._sd_external[external] = op
        self._ops[op_id] = op
        return op

    def _init_api_reference(self, op: Operation, log_history: int) -> None:
        op.log_id = self._uuid()
        op.log_errors = self._rng.randint(1, 4) if op.outcome == "failed" else 0
        op.log_warnings = self._rng.randint(0, 3)
        self._logs[op.log_id] = (op, None)
        history: list[LogEntry] = []
        for index in range(log_history):
            failed = self._rng.random() < 0.2
            entry = LogEntry(
                id=self._uuid(),
                status="Failed" if failed else "Success",
                created_at=op.started_at - 3600.0 * (index + 1),
                errors=_log_messages("error", self._rng.randint(1, 4) if failed else 0),
                warnings=_log_messages("warning", self._rng.randint(0, 3)),
            )
            history.append(entry)
            self._logs[entry.id] = (op, entry)
        op.history = history

    def _find(self, op_id: str, kind: OperationKind, project_id: str | None) -> Operation | None:
        op = self._ops.get(op_id)
        if op is None or op.kind != kind or op.deleted or op.project_id != project_id:
            return None
        return op

    # ------------------------------------------------------------------ app and dispatch

    def _build_app(self) -> web.Application:
        app = web.Application()
        v3 = "/v3/projects/{project_id}"
        sd = "/api/v1.0/external/sdtask"
        table: list[tuple[str, str, str, _Family, _Handler]] = [
            ("GET", v3 + "/drive/tasks/{op_id}", "v3.drive_task", "v3", self._v3_drive_task),
            ("POST", v3 + "/exports", "v3.exports.create", "v3", self._v3_export_create),
            ("GET", v3 + "/exports/{op_id}", "v3.exports.get", "v3", self._v3_export),
            ("POST", v3 + "/imports", "v3.imports.create", "v3", self._v3_import_create),
            ("GET", v3 + "/imports/{op_id}", "v3.imports.get", "v3", self._v3_import),
            (
                "POST",
                v3 + "/api-references",
                "v3.api_references.create",
                "v3",
                self._v3_api_reference_create,
            ),
            (
                "GET",
                v3 + "/api-references/{op_id}/logs",
                "v3.api_references.logs",
                "v3",
                self._v3_logs,
            ),
            (
                "GET",
                v3 + "/api-references/{op_id}/logs/{log_id}",
                "v3.api_references.log",
                "v3",
                self._v3_log,
            ),
            (
                "GET",
                "/v2/Drive/Folders/DeleteFile/Status/{op_id}",
                "v2.delete_file_status",
                "v2",
                self._v2_delete,
            ),
            ("GET", "/v2/Project/Export/{op_id}", "v2.exports.get", "v2", self._v2_export),
            ("GET", "/v2/Project/Import/{op_id}", "v2.imports.get", "v2", self._v2_import),
            ("POST", "/connect/token", "sd.token", "token", self._sd_token),
            ("GET", sd + "/status", "sd.status", "sd", self._sd_status),
            ("GET", sd + "/statuslistpaginated", "sd.list", "sd", self._sd_list),
            ("POST", sd + "/process", "sd.process", "sd", self._sd_process),
            ("PATCH", sd + "/restartprocessing", "sd.restart", "sd", self._sd_restart),
            ("GET", "/downloads/{name}", "download", "download", self._download),
        ]
        for method, path, route, family, handler in table:
            app.router.add_route(method, path, self._endpoint(route, family, handler))
        return app

    def _endpoint(
        self, route: str, family: _Family, handler: _Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            return await self._dispatch(request, route, family, handler)

        return endpoint

    async def _dispatch(
        self, request: web.Request, route: str, family: _Family, handler: _Handler
    ) -> web.StreamResponse:
        stats = self.stats
        stats.requests += 1
        stats.by_route[route] += 1
        traceparent = request.headers.get("traceparent")
        if traceparent is not None:
            stats.trace_context[route, traceparent.split("-")[1] if "-" in traceparent else ""] += 1
        if self.record_times:
            stats.request_times.append(self._clock())
        low, high = self._latency
        if high > 0:
            await self._sleep(low if low == high else self._latency_rng.uniform(low, high))
            if self._stopping:
                return self._drop(request, route)
        now = self._clock()
        headers: dict[str, str] = {}

        if family == "download":
            stats.downloads += 1
            if "Authorization" in request.headers or "api_token" in request.headers:
                stats.downloads_with_credentials += 1
        elif family != "token":
            key = self._authenticate(request, family, now)
            if key is None:
                stats.auth_failures += 1
                return self._send(route, self._unauthorized(request, family), headers)
            limiter = self._sd_limiter if family == "sd" else self._limiter
            if limiter is not None:
                limiter.record = self.record_times
                epoch = self.epoch(now)
                decision = limiter.admit(key, now, epoch)
                rate_headers(limiter.config, decision, epoch, headers)
                if not decision.allowed:
                    stats.rate_limited += 1
                    headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
                    return self._send(route, self._error(family, 429), headers)
                if self.record_times:
                    stats.admitted_times.append(now)

        fault = self.faults.pick(route)
        if fault is not None:
            stats.faults[fault.kind] += 1
            early = await self._early_fault(request, route, family, fault, headers)
            if early is not None:
                return early
            if fault.kind == "slow":
                fault = None  # delivered in full after the delay: an ordinary answer
                now = self._clock()

        try:
            reply = await handler(request, now)
        except _BadBody as exc:
            reply = self._bad_request(family, str(exc))

        if fault is None:
            for op, terminal in reply.served:
                op.served(now, terminal)
            if route == "download" and reply.status == 200:
                stats.downloads_served += 1
            return self._send(route, reply, headers)
        kind = fault.kind
        if kind == "truncated":
            return await self._send_truncated(request, route, reply, headers)
        if kind == "malformed_json":
            reply.status, reply.body, reply.content_type = 200, MALFORMED_JSON, _JSON
        elif reply.payload is not None and reply.body is None:
            _mutate(reply.payload, kind, reply.status_paths)
        return self._send(route, reply, headers)

    async def _early_fault(
        self,
        request: web.Request,
        route: str,
        family: _Family,
        fault: Fault,
        headers: dict[str, str],
    ) -> web.StreamResponse | None:
        """Faults answered before the handler runs; ``None`` lets the request go on."""
        kind = fault.kind
        if kind == "slow":
            await self._sleep(fault.delay)
            transport = request.transport
            if self._stopping or transport is None or transport.is_closing():
                return self._drop(request, route)
            return None
        if kind == "abort":
            return self._drop(request, route)
        if kind == "http_500":
            return self._send(route, self._error(family, 500), headers)
        if kind == "http_503":
            headers["Retry-After"] = str(fault.retry_after)
            return self._send(route, self._error(family, 503), headers)
        if kind == "html_502":
            reply = _Reply(502, body=HTML_502, content_type="text/html; charset=utf-8")
            return self._send(route, reply, headers)
        if kind == "expired_link":
            return self._send(route, self._link_refused(self._clock(), expired=True), headers)
        return None

    def _drop(self, request: web.Request, route: str) -> web.Response:
        """Close the connection without answering (counted as status 0)."""
        self._count(route, 0)
        transport = request.transport
        if transport is not None:
            transport.close()
        # Writing this response to the closed transport fails, which aiohttp's server takes
        # for a client that went away: no error is logged.
        return web.Response()

    def _send(self, route: str, reply: _Reply, headers: dict[str, str]) -> web.Response:
        body = reply.encode()
        headers["Date"] = email.utils.formatdate(self.epoch(), usegmt=True)
        if reply.headers:
            headers.update(reply.headers)
        if body:
            headers["Content-Type"] = reply.content_type
        self._count(route, reply.status)
        return web.Response(status=reply.status, body=body or None, headers=headers)

    async def _send_truncated(
        self, request: web.Request, route: str, reply: _Reply, headers: dict[str, str]
    ) -> web.StreamResponse:
        body = reply.encode()
        headers["Date"] = email.utils.formatdate(self.epoch(), usegmt=True)
        if reply.headers:
            headers.update(reply.headers)
        headers["Content-Type"] = reply.content_type
        self._count(route, reply.status)
        response = web.StreamResponse(status=reply.status, headers=headers)
        response.content_length = max(len(body), 16)  # promise more than will arrive
        with contextlib.suppress(ConnectionError):
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
        transport = request.transport
        if transport is not None:
            transport.close()  # flushes what was written, then closes mid-body
        return response

    def _count(self, route: str, status: int) -> None:
        self.stats.by_status[status] += 1
        self.stats.by_route_status[route, status] += 1
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("fake Document360: %s -> %d", route, status)

    async def _sleep(self, delay: float) -> None:
        """Sleep on the event loop; [stop][d360_async.testing.FakeDocument360.stop] wakes every
        sleeper at once."""
        if delay <= 0:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(delay, _wake, waiter)
        self._sleepers.add(waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._sleepers.discard(waiter)

    # ------------------------------------------------------------------ auth and limits

    def _authenticate(self, request: web.Request, family: _Family, now: float) -> Hashable | None:
        """The rate-limit key of a valid credential, or ``None`` (answer 401)."""
        project = request.match_info.get("project_id")
        if family == "v2":
            token = request.headers.get("api_token")
        else:
            token = _bearer(request.headers.get("Authorization"))
        self.stats.by_token[token_fingerprint(token) if token else "-"] += 1
        if token is None:
            return None
        if family == "v3":
            if token not in self._v3_tokens:
                return None
        elif family == "v2":
            if token not in self._v2_tokens:
                return None
            project = None
        else:
            entry = self._sd_tokens.get(token)
            if entry is None or entry[0] <= now:
                return None
            return (entry[1],)
        config = self._limiter.config if self._limiter is not None else None
        if config is not None and config.per == "token":
            project = None
        return (token, project)

    def _unauthorized(self, request: web.Request, family: _Family) -> _Reply:
        # RFC 6750: no error code when no credential was sent; invalid_token otherwise.
        sent = "Authorization" in request.headers or "api_token" in request.headers
        parts = [] if family == "sd" else ['realm="Document360"']
        if sent:
            parts += ['error="invalid_token"', 'error_description="The token is invalid"']
        headers = {"WWW-Authenticate": " ".join(["Bearer", ", ".join(parts)]).strip()}
        if family == "sd" or self.empty_401:
            return _Reply(401, headers=headers)
        if family == "v2":
            body = v2_envelope(False, error="Invalid or missing api_token.", error_code="401")
            return _Reply(401, payload=body, headers=headers)
        return _Reply(
            401, payload=problem(401, self._trace_id()), content_type=_PROBLEM_JSON, headers=headers
        )

    # ------------------------------------------------------------------ error replies

    def _trace_id(self) -> str:
        return f"req_{next(self._counter):012x}"

    def _request_id(self) -> str:
        return str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))

    def _error(self, family: _Family, status: int) -> _Reply:
        """A server-side error (429, 500, 503) in the family's own error format."""
        if family == "v3" or (family == "v2" and status == 429):
            return _Reply(
                status, payload=problem(status, self._trace_id()), content_type=_PROBLEM_JSON
            )
        if family == "v2":
            message = "An unexpected error occurred." if status == 500 else "Service unavailable."
            return _Reply(status, payload=v2_envelope(False, error=message, error_code=str(status)))
        if family == "download":
            code = "InternalError" if status == 500 else "ServerBusy"
            body = storage_error(
                code, "The server encountered an error.", code, self._trace_id(), self.epoch()
            )
            return _Reply(status, body=body, content_type=_XML)
        return _Reply(status)  # SmartDocumentor and the token endpoint: no body

    def _bad_request(self, family: _Family, message: str, field: str | None = None) -> _Reply:
        if family == "v3":
            body = problem(400, self._trace_id(), message=message, field=field)
            return _Reply(400, payload=body, content_type=_PROBLEM_JSON)
        return _Reply(400)

    def _v3_not_found(self) -> _Reply:
        return _Reply(404, payload=problem(404, self._trace_id()), content_type=_PROBLEM_JSON)

    # ------------------------------------------------------------------ V3 handlers

    async def _v3_status(
        self, request: web.Request, now: float, kind: OperationKind, data_fields: str
    ) -> _Reply:
        project = request.match_info["project_id"]
        op = self._find(request.match_info["op_id"], kind, project)
        if op is None:
            return self._v3_not_found()
        terminal = op.is_terminal(now)
        raw = op.raw_status(now)
        data: dict[str, Any]
        if data_fields == "drive":
            data = {"task_id": op.id, "status": raw}
        else:
            data = {"id": op.id, "status": raw}
            if data_fields == "export":
                data["download_url"] = (
                    self._mint_link(_origin(request), op.id, now) if raw == "Completed" else None
                )
            data["completed_at"] = self._completed_at(op, now, terminal)
        empty_lists = data_fields == "export"  # as in the vendor's examples
        return _Reply(
            200,
            payload=v3_envelope(data, self._request_id(), empty_lists=empty_lists),
            served=((op, terminal),),
            status_paths=(("data", "status"),),
        )

    def _completed_at(self, op: Operation, now: float, terminal: bool) -> str | None:
        if not terminal:
            return None
        at = op.finished_at if now >= op.finished_at else now
        return iso(self.epoch(at))

    async def _v3_drive_task(self, request: web.Request, now: float) -> _Reply:
        return await self._v3_status(request, now, "drive_task", "drive")

    async def _v3_export(self, request: web.Request, now: float) -> _Reply:
        return await self._v3_status(request, now, "export", "export")

    async def _v3_import(self, request: web.Request, now: float) -> _Reply:
        return await self._v3_status(request, now, "import", "import")

    async def _v3_export_create(self, request: web.Request, now: float) -> _Reply:
        body = await _json_object(request)
        workspace, fmt, lang = body.get("workspace_id"), body.get("format"), body.get("lang_code")
        if not isinstance(workspace, str) or not workspace:
            return self._bad_request("v3", "workspace_id is required.", "workspace_id")
        if not isinstance(fmt, str) or not fmt:
            return self._bad_request("v3", "format is required.", "format")
        if lang is not None and not isinstance(lang, str):
            return self._bad_request("v3", "lang_code must be a string.", "lang_code")
        project = request.match_info["project_id"]
        op = self._create("export", project, self.lifecycle, now)
        op.workspace_id, op.export_format, op.lang_code = workspace, fmt, lang
        return self._accepted(request, op, now, f"/v3/projects/{project}/exports/{op.id}")

    async def _v3_import_create(self, request: web.Request, now: float) -> _Reply:
        if request.content_type == "application/json":
            await _json_object(request)
        else:
            await request.read()  # a file upload: accepted as is
        project = request.match_info["project_id"]
        op = self._create("import", project, self.lifecycle, now)
        return self._accepted(request, op, now, f"/v3/projects/{project}/imports/{op.id}")

    async def _v3_api_reference_create(self, request: web.Request, now: float) -> _Reply:
        body = await _json_object(request)
        source = body.get("url") or body.get("content")
        if not isinstance(source, str):
            return self._bad_request("v3", "Either url or content is required.", "url")
        workspace = body.get("workspace_id")
        if workspace is not None and not isinstance(workspace, str):
            return self._bad_request("v3", "workspace_id must be a string.", "workspace_id")
        project = request.match_info["project_id"]
        op = self._create("api_reference", project, self.lifecycle, now)
        return self._accepted(
            request, op, now, f"/v3/projects/{project}/api-references/{op.id}/logs"
        )

    def _accepted(self, request: web.Request, op: Operation, now: float, path: str) -> _Reply:
        data = {"id": op.id, "status": op.raw_status(now)}
        return _Reply(
            202,
            payload=v3_envelope(data, self._request_id()),
            headers={"Operation-Location": _origin(request) + path},
        )

    async def _v3_logs(self, request: web.Request, now: float) -> _Reply:
        op = self._find(
            request.match_info["op_id"], "api_reference", request.match_info["project_id"]
        )
        page = _int_param(request.query.get("page"), 1)
        size = _int_param(request.query.get("page_size"), 25)
        if page is None or page < 1:
            return self._bad_request("v3", "page must be a positive integer.", "page")
        if size is None or not 1 <= size <= 100:
            return self._bad_request("v3", "page_size must be between 1 and 100.", "page_size")
        if op is None:
            return self._v3_not_found()
        assert op.history is not None
        total = 1 + len(op.history)
        first = (page - 1) * size
        items: list[dict[str, Any]] = []
        served: tuple[tuple[Operation, bool], ...] = ()
        for index in range(first, min(first + size, total)):
            if index == 0:
                terminal = op.is_terminal(now)
                served = ((op, terminal),)
                items.append(
                    {
                        "id": op.log_id,
                        "status": op.raw_status(now),
                        "created_at": iso(self.epoch(op.started_at)),
                        "error_count": op.log_errors if terminal else 0,
                        "warning_count": op.log_warnings if terminal else 0,
                    }
                )
            else:
                entry = op.history[index - 1]
                items.append(
                    {
                        "id": entry.id,
                        "status": entry.status,
                        "created_at": iso(self.epoch(entry.created_at)),
                        "error_count": len(entry.errors),
                        "warning_count": len(entry.warnings),
                    }
                )
        return _Reply(
            200,
            payload=v3_envelope(items, self._request_id(), empty_lists=False),
            served=served,
            status_paths=(("data", 0, "status"),) if items else (),
        )

    async def _v3_log(self, request: web.Request, now: float) -> _Reply:
        op = self._find(
            request.match_info["op_id"], "api_reference", request.match_info["project_id"]
        )
        found = self._logs.get(request.match_info["log_id"])
        if op is None or found is None or found[0] is not op:
            return self._v3_not_found()
        entry = found[1]
        data: dict[str, Any]
        if entry is not None:
            # Copies: body faults mutate the payload, never the stored history.
            data = {
                "id": entry.id,
                "errors": [dict(error) for error in entry.errors],
                "warnings": [dict(warning) for warning in entry.warnings],
            }
        else:
            terminal = op.is_terminal(now)
            data = {
                "id": op.log_id,
                "errors": _log_messages("error", op.log_errors if terminal else 0),
                "warnings": _log_messages("warning", op.log_warnings if terminal else 0),
            }
        return _Reply(200, payload=v3_envelope(data, self._request_id(), empty_lists=False))

    # ------------------------------------------------------------------ V2 handlers

    def _v2_unknown(self, what: str | None) -> _Reply:
        if what is None:  # exactly the vendor's example for the delete status
            return _Reply(400, payload=v2_envelope(False))
        return _Reply(
            400, payload=v2_envelope(False, error=f"{what} not found.", error_code="NotFound")
        )

    async def _v2_delete(self, request: web.Request, now: float) -> _Reply:
        op = self._find(request.match_info["op_id"], "v2_delete", None)
        if op is None:
            return self._v2_unknown(None)
        terminal = op.is_terminal(now)
        raw = op.raw_status(now)
        if op.is_forced:
            complete = op.forced_is_complete if op.forced_is_complete is not None else terminal
        else:
            complete = terminal
            if terminal and self.v2_complete_quirk and op.outcome == "succeeded":
                raw = 2  # the vendor's example: complete, yet status 2 (InProgress)
        payload = {
            "task_status": {"task_id": op.id, "is_complete": complete, "status": raw},
            **v2_envelope(),
        }
        return _Reply(
            200,
            payload=payload,
            served=((op, terminal),),
            status_paths=(("task_status", "status"),),
        )

    async def _v2_export(self, request: web.Request, now: float) -> _Reply:
        op = self._find(request.match_info["op_id"], "v2_export", None)
        if op is None:
            return self._v2_unknown("Export")
        terminal = op.is_terminal(now)
        raw = op.raw_status(now)
        link = self._mint_link(_origin(request), op.id, now) if raw == "Completed" else None
        payload = {"status": raw, "download_url": link, **v2_envelope()}
        return _Reply(200, payload=payload, served=((op, terminal),), status_paths=(("status",),))

    async def _v2_import(self, request: web.Request, now: float) -> _Reply:
        op = self._find(request.match_info["op_id"], "v2_import", None)
        if op is None:
            return self._v2_unknown("Import")
        terminal = op.is_terminal(now)
        payload = {"status": op.raw_status(now), **v2_envelope()}
        return _Reply(200, payload=payload, served=((op, terminal),), status_paths=(("status",),))

    # ------------------------------------------------------------------ SmartDocumentor

    async def _sd_token(self, request: web.Request, now: float) -> _Reply:
        self.stats.token_requests += 1
        form = await request.post()
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = _basic(request.headers.get("Authorization"))
        if basic is not None:
            client_id, secret = basic
        grant = form.get("grant_type")
        if grant is None:
            return _oauth_error("invalid_request")
        if grant != "client_credentials":
            return _oauth_error("unsupported_grant_type")
        if not isinstance(client_id, str) or not isinstance(secret, str):
            return _oauth_error("invalid_client")
        expected = self._sd_clients.get(client_id)
        if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
            return _oauth_error("invalid_client")
        scope = form.get("scope", "WebAPI")
        if not isinstance(scope, str) or set(scope.split()) != {"WebAPI"}:
            return _oauth_error("invalid_scope")
        if len(self._sd_tokens) > 1024:  # drop expired tokens now and then
            self._sd_tokens = {t: e for t, e in self._sd_tokens.items() if e[0] > now}
        token = secrets.token_urlsafe(32)
        self._sd_tokens[token] = (now + self.sd_token_ttl, client_id)
        self.stats.tokens_issued += 1
        payload = {
            "access_token": token,
            "expires_in": int(self.sd_token_ttl),
            "token_type": "Bearer",
            "scope": "WebAPI",
        }
        return _Reply(200, payload=payload, headers={"Cache-Control": "no-store"})

    def _sd_body(self, op: Operation, now: float) -> dict[str, Any]:
        sd = op.sd
        assert sd is not None
        stage = op.stage(now)
        task, text, integration, integration_text = SD_STAGES[stage]
        task_status: int | None = task
        task_text: str | None = text
        if op.is_forced:
            forced = op.forced
            if isinstance(forced, int):
                task_status, task_text = forced, SD_TASK_TEXT.get(forced)
            elif isinstance(forced, str):
                task_status, task_text = SD_TEXT_TO_NUMBER.get(forced.lower()), forced
            else:
                task_status = task_text = None
        if sd.forced_integration is not None:
            integration = sd.forced_integration
            integration_text = SD_INTEGRATION.get(integration, "Unknown")
        started = now >= op.running_at
        pre_started = op.running_at if started else sd.previous_preprocessing
        return {
            "taskId": sd.task_id,
            "workspaceId": sd.workspace_id,
            "batchId": sd.batch_id,
            "taskNumber": sd.task_number,
            "externalId": sd.external_id,
            "displayName": sd.display_name,
            "description": sd.description,
            "createdOn": iso(self.epoch(sd.created_at)),
            "taskStatus": task_status,
            "integrationStatus": integration,
            "taskStatusText": task_text,
            "integrationStatusText": integration_text,
            "totalPages": sd.total_pages if started else 0,
            "restartCount": sd.restart_count,
            "preProcessingStartedOn": None if pre_started is None else iso(self.epoch(pre_started)),
        }

    def _sd_lookup(self, request: web.Request) -> Operation | _Reply:
        query = {key.lower(): value for key, value in request.query.items()}
        task_id, external = query.get("taskid"), query.get("externalid")
        if task_id:
            number = _int_param(task_id, 0)
            if number is None:
                return _Reply(400)
            op = self._sd_ops.get(number)
            if op is not None and external and op.sd is not None and op.sd.external_id != external:
                op = None
        elif external:
            op = self._sd_external.get(external)
        else:
            return _Reply(400)  # one of taskId or externalId is required; no body
        if op is None or op.deleted:
            return _Reply(404)
        return op

    async def _sd_status(self, request: web.Request, now: float) -> _Reply:
        found = self._sd_lookup(request)
        if isinstance(found, _Reply):
            return found
        return _Reply(
            200,
            payload=self._sd_body(found, now),
            served=((found, found.is_terminal(now)),),
            status_paths=(("taskStatus",), ("taskStatusText",)),
        )

    async def _sd_list(self, request: web.Request, now: float) -> _Reply:
        query = {key.lower(): value for key, value in request.query.items()}
        number = _int_param(query.get("pagenumber"), 1)
        size = _int_param(query.get("pagesize"), 20)
        if number is None or number < 1 or size is None or not 1 <= size <= 100:
            return _Reply(400)
        filters: dict[str, Any] = {}
        for name, field in (
            ("workspaceid", "workspaceId"),
            ("batchid", "batchId"),
            ("taskstatus", "taskStatus"),
        ):
            if name in query:
                value = _int_param(query[name], 0)
                if value is None:
                    return _Reply(400)
                filters[field] = value
        bodies: list[tuple[Operation, dict[str, Any]]] = []
        for op in self._sd_ops.values():
            if op.deleted:
                continue
            body = self._sd_body(op, now)
            if all(body[field] == value for field, value in filters.items()):
                bodies.append((op, body))
        first = (number - 1) * size
        page = bodies[first : first + size]
        payload = {
            "pageNumber": number,
            "pageSize": size,
            "totalCount": len(bodies),
            "totalPages": math.ceil(len(bodies) / size),
            "items": [body for _, body in page],
        }
        return _Reply(
            200,
            payload=payload,
            served=tuple((op, op.is_terminal(now)) for op, _ in page),
            status_paths=(("items", 0, "taskStatus"), ("items", 0, "taskStatusText"))
            if page
            else (),
        )

    async def _sd_process(self, request: web.Request, now: float) -> _Reply:
        fields: dict[str, Any]
        if request.content_type == "application/json":
            fields = await _json_object(request)
        else:
            fields = dict((await request.post()).items())
        name = fields.get("displayName")
        if not isinstance(name, str) or not name:
            return _Reply(400)
        sd_fields: dict[str, Any] = {"displayName": name}
        for field in ("workspaceId", "batchId"):
            if fields.get(field) is not None:
                value = _int_param(str(fields[field]), 0)
                if value is None:
                    return _Reply(400)
                sd_fields[field] = value
        sd_fields.setdefault("batchId", None)
        for field in ("externalId", "description"):
            value = fields.get(field)
            if value is not None and not isinstance(value, str):
                return _Reply(400)
            sd_fields[field] = value
        external = sd_fields["externalId"]
        if external is not None and external in self._sd_external:
            return _Reply(400)  # external ids are unique per organisation
        op = self._create("sd_task", None, self.lifecycle, now, sd_fields=sd_fields)
        return _Reply(200, payload=self._sd_body(op, now))

    async def _sd_restart(self, request: web.Request, now: float) -> _Reply:
        found = self._sd_lookup(request)
        if isinstance(found, _Reply):
            return found
        sd = found.sd
        assert sd is not None
        if now >= found.running_at:
            sd.previous_preprocessing = found.running_at
        sd.restart_count += 1
        found.clear_forced()
        found.redraw(self._rng, attrs.evolve(self.lifecycle, stuck_ratio=0.0), now)
        return _Reply(200, payload=self._sd_body(found, now))

    # ------------------------------------------------------------------ downloads

    def _sign(self, export_id: str, expiry: str) -> str:
        digest = hmac.new(self._link_key, f"{export_id}\n{expiry}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()

    def _mint_link(self, origin: str, export_id: str, now: float, ttl: float | None = None) -> str:
        expiry = iso(math.floor(self.epoch(now) + (self.link_ttl if ttl is None else ttl)))
        signature = self._sign(export_id, expiry)
        return (
            f"{origin}/downloads/{export_id}.zip?sv=2024-08-04&sr=b&sp=r"
            f"&se={quote(expiry, safe='')}&sig={signature}"
        )

    def _link_refused(self, now: float, *, expired: bool) -> _Reply:
        if expired:
            detail = "Signed expiry time has passed; the link is no longer valid."
        else:
            detail = "Signature did not match the signed resource."
        body = storage_error(
            "AuthenticationFailed",
            "Server failed to authenticate the request.",
            detail,
            self._trace_id(),
            self.epoch(now),
        )
        return _Reply(403, body=body, content_type=_XML)

    async def _download(self, request: web.Request, now: float) -> _Reply:
        name = request.match_info["name"]
        export_id = name.removesuffix(".zip")
        expiry = request.query.get("se", "")
        signature = request.query.get("sig", "")
        if not hmac.compare_digest(signature.encode(), self._sign(export_id, expiry).encode()):
            return self._link_refused(now, expired=False)
        try:
            expires = datetime.datetime.fromisoformat(expiry).timestamp()
        except ValueError:
            return self._link_refused(now, expired=False)
        if self.epoch(now) >= expires:
            return self._link_refused(now, expired=True)
        op = self._ops.get(export_id)
        if op is None or op.deleted or op.kind not in ("export", "v2_export"):
            body = storage_error(
                "BlobNotFound",
                "The specified blob does not exist.",
                "",
                self._trace_id(),
                self.epoch(now),
            )
            return _Reply(404, body=body, content_type=_XML)
        return _Reply(
            200,
            body=self.download_bytes(export_id),
            content_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="export-{export_id}.zip"'},
        )


# ---------------------------------------------------------------------- helpers


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _int_param(value: str | None, default: int) -> int | None:
    """An integer query parameter: ``default`` when absent, ``None`` when malformed."""
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return None


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        raise _BadBody("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _BadBody("The request body must be a JSON object.")
    return body


def _oauth_error(code: str) -> _Reply:
    return _Reply(400, payload={"error": code}, headers={"Cache-Control": "no-store"})


def _log_messages(what: str, count: int) -> list[dict[str, str]]:
    return [
        {
            "message": f"Fake import {what} {index + 1}: schema 'Item{index}' is not valid.",
            "path": f"#/components/schemas/Item{index}",
        }
        for index in range(count)
    ]


def _mutate(payload: Any, kind: str, status_paths: Iterable[tuple[str | int, ...]]) -> None:
    """Apply a body fault (unknown_status, extra_fields, missing_fields) in place."""
    if kind == "unknown_status":
        for path in status_paths:
            container: Any = payload
            for step in path[:-1]:
                container = container[step]
            old = container[path[-1]]
            unknown_int = isinstance(old, int) and not isinstance(old, bool)
            container[path[-1]] = _UNKNOWN_NUMBER if unknown_int else _UNKNOWN_TEXT
    elif kind == "extra_fields":
        _walk(payload, _add_fields)
    elif kind == "missing_fields":
        _walk(payload, _remove_fields)


def _walk(value: Any, visit: Callable[[dict[str, Any]], None]) -> None:
    if isinstance(value, dict):
        children = list(value.values())  # before visiting: never walk into added fields
        visit(value)
        for item in children:
            _walk(item, visit)
    elif isinstance(value, list):
        for item in value:
            _walk(item, visit)


def _add_fields(obj: dict[str, Any]) -> None:
    obj["x_unexpected"] = {"note": "a field this client has never seen", "level": 1}
    obj["addedLater"] = [1, "two", None]


def _remove_fields(obj: dict[str, Any]) -> None:
    for key in _REMOVABLE.intersection(obj):
        del obj[key]
