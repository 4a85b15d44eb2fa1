"""Typed results: frozen attrs models and the one cattrs `converter` that builds them.

The models mirror the example bodies of the vendor's API reference.  How they are read:

* **Lenient about shape, strict about types.**  Unknown extra fields are ignored (the vendor
  adds fields); optional fields may be missing or ``null``.  A *required* field that is
  missing, or any value of the wrong JSON type (a number where text is expected, text where a
  number is), is a [MalformedResponse][d360_async.MalformedResponse]: guessing would hide a real
  change in the API.  No cattrs exception ever reaches a caller.
* **Timestamps** become timezone-aware `datetime` values; the vendor documents
  them as UTC, so a timestamp without an offset is read as UTC.
* **Ids the API returns** are read leniently: a UUID when the text is one, else the text as
  it came (`ResourceId`).  Ids the caller *sends* are validated strictly in
  `d360_async._core._ids`.
* **Field names** are the vendor's snake_case for V2 and V3; SmartDocumentor's camelCase keys
  (``taskStatusText``) are renamed to snake_case attributes (``task_status_text``).
* Signed download links are shown redacted in ``repr``: the SAS signature authorises whoever
  holds it for 30 minutes (V3 export-status page).
"""

from __future__ import annotations

import re
import types
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import IterableValidationNote
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from d360_async._core._errors import MalformedResponse
from d360_async._core._phase import Phase
from d360_async._core._redact import redact_url
from d360_async._core._status import (
    RawStatus,
    StatusReading,
    normalise_smartdocumentor,
    normalise_v2,
    normalise_v2_task,
    normalise_v3,
)

if TYPE_CHECKING:
    from d360_async._core._response import Response

__all__ = [
    "ApiReferenceImport",
    "ApiReferenceLog",
    "ApiReferenceLogDetail",
    "DriveTask",
    "Export",
    "ExportStarted",
    "Import",
    "ImportStarted",
    "LogMessage",
    "OperationHandle",
    "ResourceId",
    "SmartDocumentorPage",
    "SmartDocumentorTask",
    "V2DeleteFileStatus",
    "V2Export",
    "V2Import",
    "as_mapping",
    "converter",
    "malformed",
    "parse_timestamp",
    "structure",
    "structurer",
]

T = TypeVar("T")

ResourceId = uuid.UUID | str
"""An id the API returned: a `uuid.UUID` when it parses as one, else the text."""


def _redacted(url: str | None) -> str:
    return repr(None if url is None else redact_url(url))


class _StatusModel:
    """What every status-bearing model says about itself: its [Phase][d360_async.Phase].

    The phase is read from the same status tables a watch uses, so a model fetched directly
    (`await client.exports.get(...)`) and the snapshot of a watch's
    [Transition][d360_async.Transition] always agree.
    """

    __slots__ = ()

    def _reading(self) -> StatusReading:
        raise NotImplementedError

    @property
    def phase(self) -> Phase:
        """The vendor's status normalised to a [Phase][d360_async.Phase] (`UNKNOWN` when no
        table knows it).

        Added in version 0.1.0.
        """
        return self._reading().phase

    @property
    def is_terminal(self) -> bool:
        """True once the operation has ended: the phase is `SUCCEEDED`, `FAILED` or
        `CANCELLED`.

        Added in version 0.1.0.
        """
        return self._reading().phase.is_terminal

    @property
    def status_warnings(self) -> tuple[str, ...]:
        """Anything odd about the status, as one line of text each; empty when it was clean.

        For instance the V2 delete-file status whose `is_complete` contradicts its code, or a
        status no table knows.  The same text a watch puts on its observations.

        Added in version 0.1.0.
        """
        return self._reading().warnings


# --- V3 -----------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DriveTask(_StatusModel):
    """A V3 drive background task (``GET /v3/projects/{project_id}/drive/tasks/{task_id}``).

    Attributes:
        task_id: the task's id.
        status: "Pending", "InProgress", "Processing", "Completed" or "Failed" (vendor docs).
    """

    task_id: ResourceId
    status: str | None

    def _reading(self) -> StatusReading:
        return normalise_v3(self.status)


@attrs.frozen(kw_only=True)
class Export(_StatusModel):
    """A V3 export (``GET /v3/projects/{project_id}/exports/{export_id}``).

    Attributes:
        id: the export's id.
        status: the V3 status string.
        download_url: the file's link, present only once the export is Completed; for private
            projects it carries a SAS signature valid 30 minutes, so it is never shown whole.
        completed_at: when the export completed; ``None`` while it runs.
    """

    id: ResourceId | None
    status: str | None
    download_url: str | None = attrs.field(default=None, repr=_redacted)
    completed_at: datetime | None = None

    def _reading(self) -> StatusReading:
        return normalise_v3(self.status)


@attrs.frozen(kw_only=True)
class Import(_StatusModel):
    """A V3 import (``GET /v3/projects/{project_id}/imports/{import_id}``)."""

    id: ResourceId | None
    status: str | None
    completed_at: datetime | None = None

    def _reading(self) -> StatusReading:
        return normalise_v3(self.status)


@attrs.frozen(kw_only=True)
class OperationHandle:
    """What a 202 Accepted said about an operation it started.

    Attributes:
        project_id: the project the operation belongs to (as sent).
        id: the operation's id, from the body or else the last segment of
            ``Operation-Location``.
        status: the status in the body, when the body had one.
        operation_location: the ``Operation-Location`` header: where to poll.
    """

    project_id: str
    id: ResourceId
    status: str | None = None
    operation_location: str | None = None


@attrs.frozen(kw_only=True)
class ExportStarted(OperationHandle):
    """The 202 answer to ``POST /v3/projects/{project_id}/exports``."""


@attrs.frozen(kw_only=True)
class ImportStarted(OperationHandle):
    """The 202 answer to ``POST /v3/projects/{project_id}/imports``."""


@attrs.frozen(kw_only=True)
class ApiReferenceImport(OperationHandle):
    """The 202 answer to ``POST /v3/projects/{project_id}/api-references`` (``{id, status}``).

    ``id`` is the API reference's id, the one its import logs are listed under.
    """


@attrs.frozen(kw_only=True)
class ApiReferenceLog(_StatusModel):
    """One API-reference import attempt, as listed newest first by ``.../logs``.

    Attributes:
        status: "Success" or "Failed" (or a generic V3 status while running).
    """

    id: ResourceId | None
    status: str | None
    created_at: datetime | None = None
    error_count: int = 0
    warning_count: int = 0

    def _reading(self) -> StatusReading:
        return normalise_v3(self.status)


@attrs.frozen(kw_only=True)
class LogMessage:
    """One error or warning of an API-reference import: what went wrong and where in the spec."""

    message: str | None = None
    path: str | None = None


@attrs.frozen(kw_only=True)
class ApiReferenceLogDetail(_StatusModel):
    """One import log with its errors and warnings (``.../logs/{log_id}``)."""

    id: ResourceId | None
    status: str | None = None
    created_at: datetime | None = None
    errors: tuple[LogMessage, ...] = ()
    warnings: tuple[LogMessage, ...] = ()

    def _reading(self) -> StatusReading:
        return normalise_v3(self.status)


# --- V2 -----------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class V2DeleteFileStatus(_StatusModel):
    """``task_status`` of ``GET /v2/Drive/Folders/DeleteFile/Status/{taskId}``.

    Attributes:
        task_id: the task's id (a 24-hex-digit id in the vendor's example).
        is_complete: whether the task ended; authoritative over ``status`` (the vendor's own
            example pairs ``true`` with status 2).
        status: 0 Queued, 1 Initiated, 2 InProgress, 3 Completed, 4 Error, 5 Cancelled.
    """

    task_id: str | None
    is_complete: bool
    status: int

    def _reading(self) -> StatusReading:
        return normalise_v2_task(self.status, self.is_complete)


@attrs.frozen(kw_only=True)
class V2Export(_StatusModel):
    """``GET /v2/Project/Export/{exportId}``: Initiated, InProgress, Completed or Error."""

    status: RawStatus | None
    download_url: str | None = attrs.field(default=None, repr=_redacted)
    id: str | None = None

    def _reading(self) -> StatusReading:
        return normalise_v2(self.status)


@attrs.frozen(kw_only=True)
class V2Import(_StatusModel):
    """``GET /v2/Project/Import/{importId}``: Queued, InProgress, Completed or Error."""

    status: RawStatus | None
    id: str | None = None

    def _reading(self) -> StatusReading:
        return normalise_v2(self.status)


# --- SmartDocumentor -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SmartDocumentorTask(_StatusModel):
    """``GetTaskStatusResponse`` of ``GET /api/v1.0/external/sdtask/status``.

    Required as the vendor's table marks them: ``taskId``, ``workspaceId``, ``displayName``,
    ``totalPages``; everything else is optional.  ``createdOn``, ``preProcessingStartedOn``,
    ``restartCount`` and ``totalPages`` are what the vendor suggests for recognising a stuck
    task.
    """

    task_id: int
    workspace_id: int
    display_name: str
    total_pages: int
    batch_id: int | None = None
    task_number: int | None = None
    external_id: str | None = None
    description: str | None = None
    created_on: datetime | None = None
    task_status: int | None = None
    integration_status: int | None = None
    task_status_text: str | None = None
    integration_status_text: str | None = None
    restart_count: int = 0  # "Only returned whenever the Task has been re-processed"
    pre_processing_started_on: datetime | None = None

    def _reading(self) -> StatusReading:
        return normalise_smartdocumentor(
            task_status=self.task_status,
            task_status_text=self.task_status_text,
            integration_status=self.integration_status,
            integration_status_text=self.integration_status_text,
        )


@attrs.frozen(kw_only=True)
class SmartDocumentorPage:
    """One page of ``GET /api/v1.0/external/sdtask/statuslistpaginated``.

    Attributes:
        items: the tasks on this page.
        page_number: the 1-based page number.
        page_size: the requested page size.
        total_count: total matching tasks, when the server says.
        total_pages: total pages at this size, when the server says.
    """

    items: tuple[SmartDocumentorTask, ...]
    page_number: int
    page_size: int
    total_count: int | None = None
    total_pages: int | None = None


# --- the converter ------------------------------------------------------------------------------

converter: Final = cattrs.Converter(forbid_extra_keys=False, detailed_validation=True)
"""The one converter every model is structured (and unstructured) with."""

_NONE = type(None)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _expected(what: str, value: object) -> TypeError:
    # The value itself is not quoted: it may be a signed link or other data not fit for logs.
    return TypeError(f"expected {what}, got {_kind(value)}")


def _structure_str(value: object, _: type) -> str:
    if isinstance(value, str):
        return value
    raise _expected("text", value)


def _structure_int(value: object, _: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _expected("an integer", value)


def _structure_bool(value: object, _: type) -> bool:
    if isinstance(value, bool):
        return value
    raise _expected("a boolean", value)


def _structure_float(value: object, _: type) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _expected("a number", value)


# .NET writes up to 7 fractional digits; Python reads at most 6 before 3.12 in some forms.
_LONG_FRACTION: Final = re.compile(r"(\.\d{6})\d+")


def parse_timestamp(value: object) -> datetime:
    """An ISO 8601 timestamp as a timezone-aware datetime (UTC when it has no offset)."""
    if not isinstance(value, str):
        raise _expected("an ISO 8601 timestamp", value)
    text = _LONG_FRACTION.sub(r"\1", value.strip())
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("expected an ISO 8601 timestamp") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _structure_uuid(value: object, _: type) -> uuid.UUID:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise ValueError("expected a UUID") from None
    raise _expected("a UUID", value)


# Ids already read as UUIDs: a status check reads the same id again and again, and parsing
# one is most of the cost of reading a small model.  Emptied when full.
_UUIDS: dict[str, uuid.UUID] = {}
_UUIDS_MAX: Final = 1024


def _structure_resource_id(value: object, _: Any) -> ResourceId:
    if isinstance(value, str):
        known = _UUIDS.get(value)
        if known is not None:
            return known
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            return value
        if len(_UUIDS) >= _UUIDS_MAX:
            _UUIDS.clear()
        _UUIDS[value] = parsed
        return parsed
    if isinstance(value, int) and not isinstance(value, bool):
        # Some ids come back as numbers; keep them usable as path text.
        return str(value)
    raise _expected("an id", value)


def _structure_raw_status(value: object, _: Any) -> RawStatus:
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise _expected("a status (text or integer)", value)


def _optional_str(value: object, _: Any) -> str | None:
    """``str | None`` in one call (the commonest field type)."""
    if value is None or isinstance(value, str):
        return value
    raise _expected("text", value)


def _optional_resource_id(value: object, _: Any) -> ResourceId | None:
    return None if value is None else _structure_resource_id(value, _)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _union_hook(tp: Any) -> Callable[[Any, Any], Any]:
    """Structure hooks for the few unions the models use: ``X | None`` and two id/status forms.

    cattrs cannot pick a union member by itself for these; the rules are explicit here.
    """
    members = get_args(tp)
    rest = tuple(member for member in members if member is not _NONE)
    if len(rest) < len(members):
        inner: Any = rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007 - built at runtime
        inner_hook = converter.get_structure_hook(inner)
        if inner_hook is _structure_str:
            return _optional_str
        if inner_hook is _structure_resource_id:
            return _optional_resource_id

        def optional(value: Any, _: Any) -> Any:
            return None if value is None else inner_hook(value, inner)

        return optional
    if set(rest) == {uuid.UUID, str}:
        return _structure_resource_id
    if set(rest) == {str, int}:
        return _structure_raw_status
    raise TypeError(f"no structure rule for {tp!r}")


def _is_homogeneous_tuple(tp: Any) -> bool:
    args = get_args(tp)
    return get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def _tuple_hook(tp: Any) -> Callable[[Any, Any], tuple[Any, ...]]:
    """Arrays become tuples (frozen models); ``null`` becomes ``()`` because the vendor sends
    ``"errors": null`` and ``"errors": []`` for the same thing."""
    element = get_args(tp)[0]
    element_hook = converter.get_structure_hook(element)

    def structure_tuple(value: Any, _: Any) -> tuple[Any, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise _expected("an array", value)
        items = []
        failures: list[Exception] = []
        for index, item in enumerate(value):
            try:
                items.append(element_hook(item, element))
            except Exception as exc:
                note = IterableValidationNote(f"Structuring {tp} @ index {index}", index, element)
                exc.__notes__ = [*getattr(exc, "__notes__", []), note]
                failures.append(exc)
        if failures:
            raise cattrs.IterableValidationError(f"While structuring {tp!r}", failures, tp)
        return tuple(items)

    return structure_tuple


converter.register_structure_hook(str, _structure_str)
converter.register_structure_hook(int, _structure_int)
converter.register_structure_hook(bool, _structure_bool)
converter.register_structure_hook(float, _structure_float)
converter.register_structure_hook(datetime, lambda value, _: parse_timestamp(value))
converter.register_structure_hook(uuid.UUID, _structure_uuid)
converter.register_structure_hook_factory(_is_union, _union_hook)
converter.register_structure_hook_factory(_is_homogeneous_tuple, _tuple_hook)
converter.register_unstructure_hook(datetime, lambda moment: moment.isoformat())
converter.register_unstructure_hook(uuid.UUID, str)


def _camel(name: str) -> str:
    head, *tail = name.split("_")
    return head + "".join(part.title() for part in tail)


# SmartDocumentor speaks camelCase; the models keep Python's snake_case attribute names.
_CAMEL_CASE: Final[frozenset[type[Any]]] = frozenset({SmartDocumentorTask, SmartDocumentorPage})


def _model_hook(cls: type[Any]) -> Callable[[Any, Any], Any]:
    """Every model refuses a non-object up front (cattrs' own message for that is obscure)."""
    renames: dict[str, Any] = {}
    if cls in _CAMEL_CASE:
        renames = {a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)}
    inner = make_dict_structure_fn(cls, converter, _cattrs_detailed_validation=True, **renames)
    # The same field hooks without the per-field bookkeeping of detailed validation: what a
    # well-formed body (nearly every body) goes through.  Whatever it rejects is structured
    # again in detail, which fails too and raises the error that names every bad field.
    fast = make_dict_structure_fn(cls, converter, _cattrs_detailed_validation=False, **renames)

    def structure_model(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise _expected("an object", value)
        try:
            return fast(value, cls)
        except Exception:  # reported below, outside this handler, so nothing is chained
            pass
        return inner(value, cls)

    return structure_model


def _model_unstructure_hook(cls: type[Any]) -> Callable[[Any], Any]:
    renames: dict[str, Any] = {}
    if cls in _CAMEL_CASE:
        renames = {a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)}
    return make_dict_unstructure_fn(cls, converter, **renames)


converter.register_structure_hook_factory(attrs.has, _model_hook)
converter.register_unstructure_hook_factory(attrs.has, _model_unstructure_hook)


def _error_lines(exc: BaseException) -> list[str]:
    try:
        return cattrs.transform_error(exc, path="$")
    except Exception:
        return [str(exc)]


def structure(data: Any, cls: type[T], *, response: Response | None = None) -> T:
    """Build ``cls`` from decoded JSON, or raise [MalformedResponse][d360_async.MalformedResponse].

    ``response`` (when given) supplies the method, redacted URL, status and ids for the
    exception, so a malformed body is reported like any other failed call.
    """
    try:
        return converter.structure(data, cls)
    except Exception as exc:
        if not isinstance(exc, cattrs.BaseValidationError | TypeError | ValueError | KeyError):
            raise
        error = _mismatch(exc, cls, response)
    # Raised outside the handler, so not chained: the validation errors quote server values.
    raise error


def structurer(cls: type[T]) -> Callable[[Any, Response | None], T]:
    """[structure][] for one model, with its cattrs hook looked up once, on first use (a
    decoder runs on every response)."""
    hook: Callable[[Any, Any], T] | None = None

    def build(data: Any, response: Response | None = None) -> T:
        nonlocal hook
        if hook is None:
            hook = converter.get_structure_hook(cls)
        try:
            return hook(data, cls)
        except Exception as exc:
            if not isinstance(exc, cattrs.BaseValidationError | TypeError | ValueError | KeyError):
                raise
            error = _mismatch(exc, cls, response)
        raise error  # outside the handler, as in `structure`

    return build


def _mismatch(exc: Exception, cls: type[Any], response: Response | None) -> MalformedResponse:
    lines = _error_lines(exc)
    message = f"Response does not match {cls.__name__}: " + "; ".join(lines[:5])
    if len(lines) > 5:
        message += f" (and {len(lines) - 5} more)"
    error = malformed(message, response)
    error.cause_type = type(exc).__name__
    return error


def malformed(message: str, response: Response | None) -> MalformedResponse:
    """A [MalformedResponse][d360_async.MalformedResponse] carrying what ``response`` says about the
    exchange."""
    if response is None:
        return MalformedResponse(message)
    return MalformedResponse(
        message,
        method=response.method,
        url=response.url,
        status=response.status,
        request_id=response.request_id,
        rate_limit=response.rate_limit,
    )


def as_mapping(value: Any, what: str, response: Response | None = None) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else [MalformedResponse][d360_async.MalformedResponse]
    naming ``what``."""
    if isinstance(value, dict):
        return value
    raise malformed(f"Expected {what} to be a JSON object, got {_kind(value)}", response)
