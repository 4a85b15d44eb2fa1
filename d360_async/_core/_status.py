"""Status tables: every vendor status vocabulary mapped onto [Phase][d360_async.Phase].

Pure and synchronous; the resources and targets call the ``normalise_*`` functions, tests call
them directly.  One declared table per API, and the rules behind them written once here:

* **Keys are compared loosely.**  A text status is matched after case-folding and removing
  whitespace, ``_`` and ``-`` (so ``"InProgress"``, ``" in progress "`` and ``"IN_PROGRESS"``
  are one key).  The vendor's docs spell the same status in several ways (``"To Review"``,
  ``"InReview"``), so exact matching would turn documented values into unknowns.
* **Unknown is not an error.**  A raw value that no table knows becomes ``Phase.UNKNOWN``
  (never terminal, so a watch keeps polling), keeps its raw value, and is logged as a warning
  once per distinct ``(api, value)``.  Nothing here raises on vendor data.
* **V3** (drive tasks, exports, imports, API-reference logs): the V3 docs list ``Pending``,
  ``InProgress``, ``Processing``, ``Completed``, ``Failed``; the API-reference logs add
  ``Success``.
* **V2 codes**: the V2 delete-file status encodes status as 0..5: Queued, Initiated,
  InProgress, Completed, Error, Cancelled.  ``Initiated`` means accepted but not yet worked on,
  so it is PENDING like ``Queued``.  The response also carries ``is_complete``, and the
  vendor's own example pairs ``is_complete: true`` with code 2 (InProgress).  The rule:
  ``is_complete`` decides *whether* the task has ended, the code decides *how*.  So
  ``is_complete: true`` is terminal whatever *known* code comes with it (the phase comes from
  the code when the code is terminal, 3/4/5, and is SUCCEEDED for 0/1/2, as in the vendor's
  example); ``is_complete: false`` is never terminal (a terminal code then reads as RUNNING).
  A code no table knows cannot say how the task ended, so it reads as UNKNOWN even with
  ``is_complete: true``: guessing SUCCEEDED could report a failed deletion as done, and a watch
  keeps polling until a known code says how it ended.  Every disagreement is reported as a
  warning on the reading, never hidden.  When ``is_complete`` is absent the code alone decides.
* **V2 strings** (export and import status): Queued, Initiated, InProgress, Completed, Error,
  Cancelled, with the same meanings as the codes.
* **SmartDocumentor** reports two values per task, ``taskStatus`` and ``integrationStatus``,
  each as a number and a ``...Text`` string.  The text is read first (case-insensitive), the
  number second.  Task numbers documented by the vendor: 4 InReview, 19 Deleting, 20 Deleted,
  30 QueuedForPreProcessing, 31 PreProcessingInProgress, 32 PreProcessingFailed,
  33 PreProcessingDownloadFailed, 34 PreProcessingSuccessful, 35 PreProcessingGetPagesFailed;
  Processed, To Review and ExportCompleted are named without numbers.  Integration: 4 Failed;
  Completed is named without a number.  The task ends on any task status whose text ends in
  ``Failed`` (FAILED), on Deleted (CANCELLED), or on an integration that is Failed (FAILED)
  or Completed (SUCCEEDED).  Everything else is live: a task waiting in review is *not*
  finished (users who want to stop there pass ``until=`` to the watch).  An ending
  integration wins over a live task status (the vendor's example is a task InReview whose
  integration Failed), with a warning.  A task status that is unknown while the integration
  has not ended reads as UNKNOWN.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import attrs

from d360_async._core._phase import Phase
from d360_async._core._redact import library_logger

__all__ = [
    "SD_INTEGRATION_CODES",
    "SD_INTEGRATION_TEXTS",
    "SD_TASK_CODES",
    "SD_TASK_TEXTS",
    "V2_CODES",
    "V2_TEXTS",
    "V3_TEXTS",
    "RawStatus",
    "StatusReading",
    "normalise_smartdocumentor",
    "normalise_v2",
    "normalise_v2_task",
    "normalise_v3",
    "status_key",
]

logger = library_logger("d360_async.status")

RawStatus = str | int
"""A status value as the vendor sent it: text (V3, V2 export/import) or a number (V2 codes,
SmartDocumentor).  Where a status may be absent the type says so: ``RawStatus | None``."""

_P = Phase

#: V3 status strings (drive tasks, exports, imports, API-reference import logs), by loose key.
V3_TEXTS: Final[Mapping[str, Phase]] = MappingProxyType(
    {
        "pending": _P.PENDING,
        "inprogress": _P.RUNNING,
        "processing": _P.RUNNING,
        "completed": _P.SUCCEEDED,
        "success": _P.SUCCEEDED,  # API-reference import logs
        "failed": _P.FAILED,
    }
)

#: V2 integer codes: "0 - Queued, 1 - Initiated, 2 - InProgress, 3 - Completed, 4 - Error,
#: 5 - Cancelled" (V2 delete-file status page).
V2_CODES: Final[Mapping[int, Phase]] = MappingProxyType(
    {
        0: _P.PENDING,  # Queued
        1: _P.PENDING,  # Initiated
        2: _P.RUNNING,  # InProgress
        3: _P.SUCCEEDED,  # Completed
        4: _P.FAILED,  # Error
        5: _P.CANCELLED,  # Cancelled
    }
)

#: V2 status strings (export: Initiated, InProgress, Completed, Error; import: Queued,
#: InProgress, Completed, Error), by loose key; the names of the V2 codes above.
V2_TEXTS: Final[Mapping[str, Phase]] = MappingProxyType(
    {
        "queued": _P.PENDING,
        "initiated": _P.PENDING,
        "inprogress": _P.RUNNING,
        "completed": _P.SUCCEEDED,
        "error": _P.FAILED,
        "cancelled": _P.CANCELLED,
        "canceled": _P.CANCELLED,
    }
)

#: SmartDocumentor ``taskStatusText``, by loose key.  Any other text ending in "failed" is
#: FAILED too (see the module rules).
SD_TASK_TEXTS: Final[Mapping[str, Phase]] = MappingProxyType(
    {
        "queuedforpreprocessing": _P.PENDING,
        "preprocessinginprogress": _P.RUNNING,
        "preprocessingsuccessful": _P.RUNNING,  # one step done; processing follows
        "processed": _P.RUNNING,  # waiting for review / export
        "toreview": _P.RUNNING,
        "inreview": _P.RUNNING,  # not finished: a human must act
        "exportcompleted": _P.RUNNING,  # the integration status says how it ends
        "deleting": _P.RUNNING,
        "deleted": _P.CANCELLED,
        "preprocessingfailed": _P.FAILED,
        "preprocessingdownloadfailed": _P.FAILED,
        "preprocessinggetpagesfailed": _P.FAILED,
    }
)

#: SmartDocumentor ``taskStatus`` numbers, as far as the vendor documents them.
SD_TASK_CODES: Final[Mapping[int, Phase]] = MappingProxyType(
    {
        4: _P.RUNNING,  # InReview
        19: _P.RUNNING,  # Deleting
        20: _P.CANCELLED,  # Deleted
        30: _P.PENDING,  # QueuedForPreProcessing
        31: _P.RUNNING,  # PreProcessingInProgress
        32: _P.FAILED,  # PreProcessingFailed
        33: _P.FAILED,  # PreProcessingDownloadFailed
        34: _P.RUNNING,  # PreProcessingSuccessful
        35: _P.FAILED,  # PreProcessingGetPagesFailed
    }
)

#: SmartDocumentor ``integrationStatusText``: only the two values that end a task are
#: documented; any other integration value leaves the task status in charge.
SD_INTEGRATION_TEXTS: Final[Mapping[str, Phase]] = MappingProxyType(
    {
        "failed": _P.FAILED,
        "completed": _P.SUCCEEDED,
    }
)

#: SmartDocumentor ``integrationStatus`` numbers: only 4 (Failed) is documented.
SD_INTEGRATION_CODES: Final[Mapping[int, Phase]] = MappingProxyType({4: _P.FAILED})


@attrs.frozen(slots=True)
class StatusReading:
    """The phase read from one raw status, with the raw value and anything odd about it.

    Attributes:
        phase: the normalised phase.
        raw_status: the vendor's value as received (string or integer), JSON-serialisable.
        warnings: human-readable notes on disagreements or unknown values; empty when the
            answer was clean.
    """

    phase: Phase
    raw_status: RawStatus | None
    warnings: tuple[str, ...] = ()


def status_key(text: str) -> str:
    """The loose comparison key of a status text: case-folded, no whitespace, ``_`` or ``-``."""
    return "".join(ch for ch in text.casefold() if not ch.isspace() and ch not in "_-")


class _UnknownLog:
    """Remembers which unknown ``(api, value)`` pairs were already logged.

    Bounded, so a server that invents a new status per response cannot grow memory without
    limit; past the bound, unknowns are still logged, at DEBUG.
    """

    __slots__ = ("_lock", "_seen")

    MAX = 1024

    def __init__(self) -> None:
        self._seen: set[tuple[str, object]] = set()
        self._lock = threading.Lock()

    def report(self, api: str, value: object) -> str:
        note = f"unknown {api} status {value!r}"
        with self._lock:
            first = (api, value) not in self._seen and len(self._seen) < self.MAX
            if first:
                self._seen.add((api, value))
            full = len(self._seen) >= self.MAX
        if first:
            logger.warning("%s; treating it as %s", note, Phase.UNKNOWN, extra={"d360_api": api})
        elif full:
            logger.debug("%s; treating it as %s", note, Phase.UNKNOWN, extra={"d360_api": api})
        return note

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


_unknown = _UnknownLog()


def _hashable(value: object) -> object:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _json_raw(value: object) -> str | int | None:
    """The raw value as it goes into an observation: JSON scalars kept, others stringified."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return repr(value)


def _lookup_text(table: Mapping[str, Phase], value: object) -> Phase | None:
    if isinstance(value, str):
        return table.get(status_key(value))
    return None


def _lookup_code(table: Mapping[int, Phase], value: object) -> Phase | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return table.get(value)
    return None


def _unknown_reading(api: str, value: object) -> StatusReading:
    note = _unknown.report(api, _hashable(value))
    return StatusReading(Phase.UNKNOWN, _json_raw(value), (note,))


def normalise_v3(value: object) -> StatusReading:
    """Read a V3 ``status`` string (drive task, export, import, API-reference log)."""
    phase = _lookup_text(V3_TEXTS, value)
    if phase is None:
        return _unknown_reading("v3", value)
    return StatusReading(phase, _json_raw(value))


def normalise_v2(value: object) -> StatusReading:
    """Read a V2 status given either as a 0..5 code or as its name (export, import)."""
    phase = _lookup_code(V2_CODES, value)
    if phase is None:
        phase = _lookup_text(V2_TEXTS, value)
    if phase is None:
        return _unknown_reading("v2", value)
    return StatusReading(phase, _json_raw(value))


def normalise_v2_task(status: object, is_complete: bool | None) -> StatusReading:
    """Read a V2 ``task_status`` (delete file): the code plus the ``is_complete`` flag.

    See the module rules: ``is_complete`` decides whether the task ended, the code how.
    """
    code_phase = _lookup_code(V2_CODES, status)
    raw = _json_raw(status)
    if code_phase is None:
        # Whatever is_complete says, an unknown code cannot tell how the task ended.
        return StatusReading(Phase.UNKNOWN, raw, (_unknown.report("v2", _hashable(status)),))
    if is_complete is None:
        return StatusReading(code_phase, raw)
    if is_complete:
        if code_phase.is_terminal:
            return StatusReading(code_phase, raw)
        note = (
            f"is_complete is true but status code {raw!r} is not a terminal code; "
            "treated as completed"
        )
        return StatusReading(Phase.SUCCEEDED, raw, (note,))
    if code_phase.is_terminal:
        note = f"status code {raw!r} is terminal but is_complete is false; treated as running"
        return StatusReading(Phase.RUNNING, raw, (note,))
    return StatusReading(code_phase, raw)


def _sd_task_phase(text: object, code: object) -> Phase | None:
    phase = _lookup_text(SD_TASK_TEXTS, text)
    if phase is None and isinstance(text, str) and status_key(text).endswith("failed"):
        # "any ...Failed task status ends it": the vendor adds failure reasons over time.
        phase = Phase.FAILED
    if phase is None:
        # Text first, number second: a missing or unrecognised text lets a documented
        # number decide.
        phase = _lookup_code(SD_TASK_CODES, code)
    return phase


def _sd_integration_phase(text: object, code: object) -> Phase | None:
    # Only the two ending values are documented; any other integration value (there are
    # undocumented "not yet" values) means "not ended" and is not worth a warning.
    phase = _lookup_text(SD_INTEGRATION_TEXTS, text)
    if phase is None:
        phase = _lookup_code(SD_INTEGRATION_CODES, code)
    return phase


def normalise_smartdocumentor(
    *,
    task_status: object,
    task_status_text: object,
    integration_status: object = None,
    integration_status_text: object = None,
) -> StatusReading:
    """Read a SmartDocumentor task: task status and integration status, text first.

    ``raw_status`` is the task status text (its number when the text is missing); the
    integration values are on the snapshot.
    """
    task_raw = task_status_text if isinstance(task_status_text, str) else task_status
    raw = _json_raw(task_raw)
    task_phase = _sd_task_phase(task_status_text, task_status)
    if task_phase is Phase.FAILED or task_phase is Phase.CANCELLED:
        return StatusReading(task_phase, raw)
    integration_phase = _sd_integration_phase(integration_status_text, integration_status)
    if integration_phase is not None:
        if task_phase is None:
            note = _unknown.report("smartdocumentor.task", _hashable(task_raw))
        else:
            # The vendor's own example is a task InReview whose integration Failed: the
            # ending integration wins, and the disagreement is reported.
            integration_raw = (
                integration_status_text
                if isinstance(integration_status_text, str)
                else integration_status
            )
            note = (
                f"task status {raw!r} is still live but the integration status "
                f"{_json_raw(integration_raw)!r} ends the task"
            )
        return StatusReading(integration_phase, raw, (note,))
    if task_phase is None:
        return _unknown_reading("smartdocumentor.task", task_raw)
    return StatusReading(task_phase, raw)
