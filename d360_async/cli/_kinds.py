"""The kinds of operation the CLI can watch, and what each one needs.

One declared table: the command-line name, which API and credential it uses, whether it lives
in a project, and how its ids are checked locally before any request is built.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final

import attrs

from d360_async.ids import safe_token, sd_task_id, uuid_id

from ._exit import UsageError

__all__ = ["API", "KINDS", "Kind", "lookup_kind", "validate_id", "validate_project"]


class API(enum.Enum):
    """Which service, and so which credential, a kind talks to."""

    V3 = "v3"
    V2 = "v2"
    SMARTDOCUMENTOR = "smartdocumentor"


def _sd_id(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"task_id must be an integer >= 1, got {text!r}") from None
    return sd_task_id(number)


@attrs.frozen(slots=True)
class Kind:
    """One kind of operation on the command line."""

    name: str
    title: str
    api: API
    needs_project: bool
    check_id: Callable[[str], str | int]


KINDS: Final[dict[str, Kind]] = {
    kind.name: kind
    for kind in (
        Kind("exports", "V3 export", API.V3, True, lambda s: uuid_id(s, name="export id")),
        Kind("tasks", "V3 drive task", API.V3, True, lambda s: safe_token(s, name="task id")),
        Kind("imports", "V3 import", API.V3, True, lambda s: safe_token(s, name="import id")),
        Kind(
            "v2-deletes",
            "V2 drive file deletion",
            API.V2,
            False,
            lambda s: safe_token(s, name="task id"),
        ),
        Kind("sd-tasks", "SmartDocumentor task", API.SMARTDOCUMENTOR, False, _sd_id),
    )
}

# Singular and underscore spellings people type without thinking.
_ALIASES: Final[dict[str, str]] = {
    "export": "exports",
    "task": "tasks",
    "drive-tasks": "tasks",
    "import": "imports",
    "v2-delete": "v2-deletes",
    "v2_deletes": "v2-deletes",
    "sd-task": "sd-tasks",
    "sd_tasks": "sd-tasks",
}


def lookup_kind(name: str) -> Kind:
    """The `Kind` called ``name`` (aliases accepted); `UsageError` otherwise."""
    key = name.strip().lower()
    kind = KINDS.get(_ALIASES.get(key, key))
    if kind is None:
        raise UsageError(f"unknown kind {name!r} (choose from {', '.join(KINDS)})")
    return kind


def validate_id(kind: Kind, text: str) -> str | int:
    """``text`` checked as an id of ``kind``: `UsageError` if malformed."""
    try:
        return kind.check_id(text)
    except ValueError as exc:
        raise UsageError(f"malformed {kind.title} id: {exc}") from None


def validate_project(kind: Kind, project: str | None) -> str | None:
    """The project id, required for V3 kinds and refused for the others."""
    if not kind.needs_project:
        if project is not None:
            raise UsageError(f"--project does not apply to {kind.name}")
        return None
    if project is None:
        raise UsageError(f"{kind.name} need --project PROJECT_ID")
    try:
        return uuid_id(project, name="project id")
    except ValueError as exc:
        raise UsageError(f"malformed project id: {exc}") from None
