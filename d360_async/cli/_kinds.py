"""The kinds of operation the CLI can watch, and what each one needs.

The names are the library's [TargetKind][d360_async.TargetKind]s (which API and credential
each uses, whether it lives in a project, come with them); this table adds which of them the
command line offers and how their ids are checked locally before any request is built.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final

import attrs

from d360_async import TargetKind
from d360_async.ids import safe_token, sd_task_id, uuid_id

from ._exit import UsageError

__all__ = ["API", "KINDS", "Kind", "lookup_kind", "target_spec", "validate_id", "validate_project"]


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
    """One kind of operation the command line watches: a [TargetKind][d360_async.TargetKind]
    and how its ids are checked locally."""

    kind: TargetKind
    check_id: Callable[[str], str | int]

    @property
    def name(self) -> str:
        """The canonical name, printed everywhere (``v3.export``)."""
        return self.kind.value

    @property
    def title(self) -> str:
        return self.kind.label

    @property
    def api(self) -> API:
        return API(self.kind.api)

    @property
    def needs_project(self) -> bool:
        return self.kind.in_project


KINDS: Final[dict[TargetKind, Kind]] = {
    kind.kind: kind
    for kind in (
        Kind(TargetKind.V3_EXPORT, lambda s: uuid_id(s, name="export id")),
        Kind(TargetKind.V3_DRIVE_TASK, lambda s: safe_token(s, name="task id")),
        Kind(TargetKind.V3_IMPORT, lambda s: safe_token(s, name="import id")),
        Kind(TargetKind.V2_DELETE_FILE, lambda s: safe_token(s, name="task id")),
        Kind(TargetKind.SMARTDOCUMENTOR_TASK, _sd_id),
    )
}


def lookup_kind(name: str) -> Kind:
    """The `Kind` called ``name``; the spellings of earlier versions (``exports``, ``tasks``,
    ``v2-deletes``, ``sd-tasks``...) are accepted too. `UsageError` otherwise."""
    choices = ", ".join(KINDS)
    try:
        kind = TargetKind.parse(name)
    except ValueError:
        raise UsageError(f"unknown kind {name!r} (choose from {choices})") from None
    found = KINDS.get(kind)
    if found is None:
        raise UsageError(f"the command line does not watch {kind} (choose from {choices})")
    return found


def target_spec(kind: Kind, project: str | None, ident: str | int) -> dict[str, object]:
    """The spec [target_from_spec][d360_async.target_from_spec] builds the target from."""
    spec: dict[str, object] = {"kind": kind.name, "id": ident}
    if project is not None:
        spec["project_id"] = project
    return spec


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
