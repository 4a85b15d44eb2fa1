"""What a body fault does to an answer that is otherwise sent as is.

``unknown_status`` replaces each status field the handler pointed at with a value no table
knows (a number stays a number); ``extra_fields`` adds fields this client has never seen to
every object; ``missing_fields`` removes, from every object, the fields the vendor marks
optional or nullable. The payload is changed in place (handlers build it afresh per request).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

__all__ = ["REMOVABLE", "mutate"]

_UNKNOWN_TEXT: Final = "Hibernating"
_UNKNOWN_NUMBER: Final = 97

REMOVABLE: Final = frozenset(
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
"""Fields a ``missing_fields`` fault removes: the ones the vendor marks optional or nullable."""


def mutate(payload: Any, kind: str, status_paths: Iterable[tuple[str | int, ...]]) -> None:
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
    for key in REMOVABLE.intersection(obj):
        del obj[key]
