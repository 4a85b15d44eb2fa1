"""Everything the fake server's API families share: settings, credentials, operations, clock.

One `FakeState` per server. The families (`_v3`, `_v2`, `_smartdocumentor`, `_downloads`) and
the request pipeline read and change it; the public facade (`_server.FakeDocument360`) exposes
its settings as attributes. Operations are created here, whoever asks (a seed, a POST), so
ids and lifecycles come from one seeded RNG whatever the traffic.
"""

from __future__ import annotations

import itertools
import random
import secrets
import uuid
from typing import Any, Final

from d360_async import Clock

from ._config import FakeLifecycle, OperationKind, Range
from ._faults import FakeFaults
from ._ops import LogEntry, Operation, SdTask, draw_lifecycle
from ._ratelimit import ServerRateLimiter
from ._stats import FakeStats

__all__ = ["V3_KINDS", "FakeState", "log_messages"]

V3_KINDS: Final = frozenset({"export", "import", "drive_task", "api_reference"})
_V2_KINDS: Final = frozenset({"v2_delete", "v2_export", "v2_import"})


class FakeState:
    """The shared state of one fake server (see the module docstring).

    The settings (``lifecycle`` to ``record_times``) may be changed while the server runs and
    apply from the next request.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        seed: int,
        api_token: str,
        v2_api_token: str,
        sd_client_id: str,
        sd_client_secret: str,
        latency: Range,
        rate_limit: ServerRateLimiter | None,
        sd_rate_limit: ServerRateLimiter | None,
        lifecycle: FakeLifecycle,
        clock_skew: float,
        link_ttl: float,
        download_size: int,
        sd_token_ttl: float,
        empty_401: bool,
        v2_complete_quirk: bool,
        record_times: bool,
    ) -> None:
        self.lifecycle = lifecycle
        self.clock_skew = clock_skew
        self.link_ttl = link_ttl
        self.download_size = download_size
        self.sd_token_ttl = sd_token_ttl
        self.empty_401 = empty_401
        self.v2_complete_quirk = v2_complete_quirk
        self.record_times = record_times
        self.clock = clock
        self.now = clock.monotonic
        """The server clock's reading."""
        # The wall time moves with the clock from its reading at construction.
        self.epoch_offset = clock.time() - clock.monotonic()
        self.stats = FakeStats()
        self.faults = FakeFaults(random.Random(f"faults:{seed}"))
        self.latency = latency
        self.rng = random.Random(seed)
        self.latency_rng = random.Random(f"latency:{seed}")
        self.id_rng = random.Random(f"request-ids:{seed}")
        self.limiter = rate_limit
        self.sd_limiter = sd_rate_limit
        self.v3_tokens: set[str] = {api_token}
        self.v2_tokens: set[str] = {v2_api_token}
        self.sd_clients: dict[str, str] = {sd_client_id: sd_client_secret}
        self.sd_tokens: dict[str, tuple[float, str]] = {}  # token -> (expiry, client id)
        self.ops: dict[str, Operation] = {}
        self.sd_ops: dict[int, Operation] = {}
        self.sd_external: dict[str, Operation] = {}
        self.logs: dict[str, tuple[Operation, LogEntry | None]] = {}
        self.next_task_id = 1
        self.link_key = secrets.token_bytes(32)
        self.counter = itertools.count(1)

    # -- time -----------------------------------------------------------------------------

    def epoch(self, at: float | None = None) -> float:
        """The wall time (UTC epoch seconds) the server reports at clock reading ``at``."""
        return (self.now() if at is None else at) + self.epoch_offset + self.clock_skew

    # -- ids ------------------------------------------------------------------------------

    def trace_id(self) -> str:
        return f"req_{next(self.counter):012x}"

    def request_id(self) -> str:
        return str(uuid.UUID(int=self.id_rng.getrandbits(128), version=4))

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # -- operations -----------------------------------------------------------------------

    def op(self, operation_id: str | int) -> Operation:
        return self.ops[str(operation_id)]

    def find(self, op_id: str, kind: OperationKind, project_id: str | None) -> Operation | None:
        """The live operation ``op_id`` if it is of ``kind`` in ``project_id``."""
        op = self.ops.get(op_id)
        if op is None or op.kind != kind or op.deleted or op.project_id != project_id:
            return None
        return op

    def create(
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
            self.rng, lifecycle, start, kind
        )
        op = Operation(
            id=op_id,
            kind=kind,
            project_id=project_id if kind in V3_KINDS else None,
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
                total_pages=self.rng.randint(1, 40),
                created_at=start,
            )
            self.sd_ops[task_id] = op
            if external is not None:
                self.sd_external[external] = op
        self.ops[op_id] = op
        return op

    def _new_id(self, kind: OperationKind) -> str:
        while True:
            if kind in _V2_KINDS:
                candidate = f"{self.rng.getrandbits(96):024x}"  # V2 ids look like ObjectIds
            elif kind == "sd_task":
                candidate = str(self.next_task_id)
                self.next_task_id += 1
            else:
                candidate = self.uuid()
            if candidate not in self.ops:
                return candidate

    def _init_api_reference(self, op: Operation, log_history: int) -> None:
        op.log_id = self.uuid()
        op.log_errors = self.rng.randint(1, 4) if op.outcome == "failed" else 0
        op.log_warnings = self.rng.randint(0, 3)
        self.logs[op.log_id] = (op, None)
        history: list[LogEntry] = []
        for index in range(log_history):
            failed = self.rng.random() < 0.2
            entry = LogEntry(
                id=self.uuid(),
                status="Failed" if failed else "Success",
                created_at=op.started_at - 3600.0 * (index + 1),
                errors=log_messages("error", self.rng.randint(1, 4) if failed else 0),
                warnings=log_messages("warning", self.rng.randint(0, 3)),
            )
            history.append(entry)
            self.logs[entry.id] = (op, entry)
        op.history = history


def log_messages(what: str, count: int) -> list[dict[str, str]]:
    """``count`` messages of an API-reference import log (``what``: error or warning)."""
    return [
        {
            "message": f"Fake import {what} {index + 1}: schema 'Item{index}' is not valid.",
            "path": f"#/components/schemas/Item{index}",
        }
        for index in range(count)
    ]
