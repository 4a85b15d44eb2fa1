"""Operations of the fake server: status tables, lifecycles, and the public record.

Every operation moves through stages at times drawn once, at creation:

```python
pending --(running_at)--> running --(review_at)--> review --(finished_at)--> terminal
```

``review`` lasts zero seconds except for successful SmartDocumentor tasks. The raw status
served for each stage comes from one table per kind, below. A forced raw status
(``fake.set_status``) overrides the table until cleared.
"""

from __future__ import annotations

import math
import random
from typing import Final, Literal

import attrs

from d360_async import TargetKind

from ._config import FakeLifecycle, OperationKind, target_kind

__all__ = [
    "SD_INTEGRATION",
    "SD_STAGES",
    "SD_TASK_TEXT",
    "SD_TEXT_TO_NUMBER",
    "STATUS_TABLES",
    "FakeOperation",
    "LogEntry",
    "Operation",
    "Outcome",
    "SdTask",
    "Stage",
    "StatusTable",
    "draw_lifecycle",
]

Outcome = Literal["succeeded", "failed"]
"""How a fake operation ends (drawn at creation): `"succeeded"` or `"failed"`."""
Stage = Literal["pending", "running", "review", "succeeded", "failed"]


@attrs.frozen(slots=True)
class StatusTable:
    """The raw status a kind serves in each stage, and which raw values are terminal."""

    pending: str | int
    running: str | int
    review: str | int
    succeeded: str | int
    failed: str | int
    terminal: frozenset[str | int]

    def raw(self, stage: Stage) -> str | int:
        """The raw status served in ``stage``."""
        value: str | int = getattr(self, stage)
        return value


def _table(
    pending: str | int,
    running: str | int,
    succeeded: str | int,
    failed: str | int,
    *extra_terminal: str | int,
) -> StatusTable:
    return StatusTable(
        pending,
        running,
        running,
        succeeded,
        failed,
        frozenset({succeeded, failed, *extra_terminal}),
    )


# Raw status sequences per kind (the vendor's API reference pages):
# - V3 strings: Pending, InProgress (drive tasks: Processing), Completed, Failed; API-reference
#   import logs end in Success or Failed.
# - V2 delete-file status is an int: 0 Queued, 1 Initiated, 2 InProgress, 3 Completed, 4 Error,
#   5 Cancelled. V2 export: Initiated, InProgress, Completed, Error; V2 import: Queued, ...
# - SmartDocumentor: see SD_STAGES (the table here holds its taskStatus numbers).
STATUS_TABLES: Final[dict[OperationKind, StatusTable]] = {
    "export": _table("Pending", "InProgress", "Completed", "Failed"),
    "import": _table("Pending", "InProgress", "Completed", "Failed"),
    "drive_task": _table("Pending", "Processing", "Completed", "Failed"),
    "api_reference": _table("Pending", "InProgress", "Success", "Failed", "Completed"),
    "v2_delete": _table(0, 2, 3, 4, 5),
    "v2_export": _table("Initiated", "InProgress", "Completed", "Error"),
    "v2_import": _table("Queued", "InProgress", "Completed", "Error"),
    "sd_task": StatusTable(30, 31, 4, 9, 32, frozenset({9, 20, 32, 33, 35})),
}

# SmartDocumentor stages as (taskStatus, taskStatusText, integrationStatus,
# integrationStatusText). The vendor documents taskStatus 4 InReview, 20 Deleted,
# 30 QueuedForPreProcessing, 31 PreProcessingInProgress, 32 PreProcessingFailed and
# integrationStatus 4 Failed; it names ExportCompleted without a number, so 9 is this fake's
# choice, as are integration 1 Pending and 3 Completed. Clients should map by the text first.
SD_STAGES: Final[dict[Stage, tuple[int, str, int, str]]] = {
    "pending": (30, "QueuedForPreProcessing", 1, "Pending"),
    "running": (31, "PreProcessingInProgress", 1, "Pending"),
    "review": (4, "InReview", 1, "Pending"),
    "succeeded": (9, "ExportCompleted", 3, "Completed"),
    "failed": (32, "PreProcessingFailed", 1, "Pending"),
}
SD_TASK_TEXT: Final[dict[int, str]] = {
    4: "InReview",
    9: "ExportCompleted",
    19: "Deleting",
    20: "Deleted",
    30: "QueuedForPreProcessing",
    31: "PreProcessingInProgress",
    32: "PreProcessingFailed",
    33: "PreProcessingDownloadFailed",
    34: "PreProcessingSuccessful",
    35: "PreProcessingGetPagesFailed",
}
SD_TEXT_TO_NUMBER: Final = {text.lower(): number for number, text in SD_TASK_TEXT.items()}
SD_INTEGRATION: Final[dict[int, str]] = {1: "Pending", 2: "InProgress", 3: "Completed", 4: "Failed"}
SD_TERMINAL_INTEGRATION: Final[frozenset[int]] = frozenset({3, 4})


@attrs.define(slots=True, eq=False)
class SdTask:
    """The SmartDocumentor-specific fields of an ``sd_task`` operation."""

    task_id: int
    workspace_id: int
    batch_id: int | None
    task_number: int | None
    external_id: str | None
    display_name: str
    description: str | None
    total_pages: int
    created_at: float
    restart_count: int = 0
    forced_integration: int | None = None
    previous_preprocessing: float | None = None


@attrs.define(slots=True, eq=False)
class LogEntry:
    """One finished API-reference import log (the history before the current import)."""

    id: str
    status: str
    created_at: float
    errors: list[dict[str, str]]
    warnings: list[dict[str, str]]


_NOT_FORCED: Final = object()


@attrs.define(slots=True, eq=False)
class Operation:
    """The server's mutable record of one operation (internal; users get FakeOperation)."""

    id: str
    kind: OperationKind
    project_id: str | None
    started_at: float
    running_at: float
    review_at: float
    finished_at: float
    outcome: Outcome | None
    first_terminal_served_at: float | None = None
    polls: int = 0
    served_statuses: list[object] = attrs.field(factory=list)
    poll_times: list[float] = attrs.field(factory=list)
    forced: object = _NOT_FORCED
    forced_is_complete: bool | None = None
    deleted: bool = False
    sd: SdTask | None = None
    # API references: the current import's log id, its counts, and the older logs.
    log_id: str | None = None
    log_errors: int = 0
    log_warnings: int = 0
    history: list[LogEntry] | None = None
    # Exports: the request that created it.
    workspace_id: str | None = None
    export_format: str | None = None
    lang_code: str | None = None

    def stage(self, now: float) -> Stage:
        """The lifecycle stage at ``now`` (ignoring any forced status)."""
        if now < self.running_at:
            return "pending"
        if now < self.review_at:
            return "running"
        if now < self.finished_at:
            return "review"
        return "succeeded" if self.outcome == "succeeded" else "failed"

    @property
    def is_forced(self) -> bool:
        """True while a raw status set by ``fake.set_status`` overrides the lifecycle."""
        return self.forced is not _NOT_FORCED

    def clear_forced(self) -> None:
        """Go back to the drawn lifecycle."""
        self.forced = _NOT_FORCED
        self.forced_is_complete = None
        if self.sd is not None:
            self.sd.forced_integration = None

    def raw_status(self, now: float) -> object:
        """The raw status value served at ``now``."""
        if self.forced is not _NOT_FORCED:
            return self.forced
        return STATUS_TABLES[self.kind].raw(self.stage(now))

    def is_terminal(self, now: float) -> bool:
        """Whether the status served at ``now`` is a terminal one."""
        if self.forced is _NOT_FORCED:
            return now >= self.finished_at
        if self.forced_is_complete:
            return True
        if self.sd is not None and self.sd.forced_integration in SD_TERMINAL_INTEGRATION:
            return True
        forced = self.forced
        if self.sd is not None and isinstance(forced, str):
            forced = SD_TEXT_TO_NUMBER.get(forced.lower(), forced)
        return isinstance(forced, str | int) and forced in STATUS_TABLES[self.kind].terminal

    def served(self, now: float, terminal: bool, *, record: bool = False) -> None:
        """Record that a genuine (unfaulted) status answer was served at ``now`` (and, with
        ``record``, when)."""
        self.polls += 1
        if record:
            self.poll_times.append(now)
        raw = self.raw_status(now)
        if not self.served_statuses or self.served_statuses[-1] != raw:
            self.served_statuses.append(raw)
        if terminal and self.first_terminal_served_at is None:
            self.first_terminal_served_at = now

    def redraw(self, rng: random.Random, lifecycle: FakeLifecycle, start: float) -> None:
        """Draw a fresh lifecycle starting at ``start`` (creation or restart)."""
        times = draw_lifecycle(rng, lifecycle, start, self.kind)
        self.started_at, self.running_at, self.review_at, self.finished_at, self.outcome = times
        self.first_terminal_served_at = None

    def snapshot(self, now: float) -> FakeOperation:
        """The public, immutable view of this record at ``now``."""
        return FakeOperation(
            id=self.id,
            kind=target_kind(self.kind),
            project_id=self.project_id,
            started_at=self.started_at,
            running_at=self.running_at,
            review_at=self.review_at if self.kind == "sd_task" else None,
            finished_at=self.finished_at,
            outcome=self.outcome,
            first_terminal_served_at=self.first_terminal_served_at,
            polls=self.polls,
            raw_status=self.raw_status(now),
            terminal=self.is_terminal(now),
            deleted=self.deleted,
            restarts=self.sd.restart_count if self.sd is not None else 0,
            served_statuses=tuple(self.served_statuses),
            poll_times=tuple(self.poll_times),
        )


def draw_lifecycle(
    rng: random.Random, lifecycle: FakeLifecycle, start: float, kind: OperationKind
) -> tuple[float, float, float, float, Outcome | None]:
    """Draw ``(started_at, running_at, review_at, finished_at, outcome)``.

    Always five draws per operation, whatever the settings, so one seed gives the same
    sequence of operations however ratios and ranges are tuned.
    """
    pending = rng.uniform(*lifecycle.pending)
    running = rng.uniform(*lifecycle.running)
    review = rng.uniform(*lifecycle.review)
    failed = rng.random() < lifecycle.failure_ratio
    stuck = rng.random() < lifecycle.stuck_ratio
    running_at = start + pending
    if stuck:
        return start, running_at, math.inf, math.inf, None
    review_at = running_at + running
    finished_at = review_at
    if kind == "sd_task" and not failed:
        finished_at += review
    return start, running_at, review_at, finished_at, "failed" if failed else "succeeded"


@attrs.frozen(slots=True)
class FakeOperation:
    """What [FakeDocument360.operation][d360_async.testing.FakeDocument360.operation] reports: the
    truth about one operation.

    Times are readings of the server's injected clock.

    Attributes:
        id: the id clients use (a string; SmartDocumentor task ids are decimal strings).
        kind: the operation kind.
        project_id: the V3 project it belongs to (``None`` for V2 and SmartDocumentor).
        started_at: when it was created (or last restarted).
        running_at: when it left pending.
        review_at: for ``sd_task``: when it entered review (equals ``finished_at`` when it
            failed); ``None`` for other kinds.
        finished_at: when it reached its terminal status (``inf`` if stuck).
        outcome: ``"succeeded"`` or ``"failed"``; ``None`` if stuck.
        first_terminal_served_at: when a terminal status was first served, unfaulted, to a
            client; ``None`` until then. Detection delay is measured from ``finished_at``.
        polls: status answers served for it (faulted ones excluded).
        raw_status: the raw status value it serves now.
        terminal: whether ``raw_status`` is terminal now.
        deleted: removed with ``fake.delete`` (status requests answer 404).
        restarts: SmartDocumentor ``restartCount``.
        served_statuses: the raw statuses served for it, unfaulted, to any client, each
            change once, in order: what a watch of it (or every watch sharing its polls)
            must deliver.
        poll_times: when each of ``polls`` was served (server clock), kept when the server
            records times (``record_times=True``, the default).
    """

    id: str
    kind: TargetKind
    project_id: str | None
    started_at: float
    running_at: float
    review_at: float | None
    finished_at: float
    outcome: Outcome | None
    first_terminal_served_at: float | None
    polls: int
    raw_status: object
    terminal: bool
    deleted: bool
    restarts: int
    served_statuses: tuple[object, ...] = ()
    poll_times: tuple[float, ...] = ()

    @property
    def detection_delay(self) -> float | None:
        """``first_terminal_served_at - finished_at``, once the terminal status was served."""
        if self.first_terminal_served_at is None or math.isinf(self.finished_at):
            return None
        return self.first_terminal_served_at - self.finished_at
