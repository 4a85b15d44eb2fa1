"""`TargetKind`: the one vocabulary of operation kinds.

A kind names one family of long-running operation: ``"v3.export"``, ``"v2.delete_file"``,
``"smartdocumentor.task"``.  The same names are a target's
[kind][d360_async.ResourceTarget.kind] (durations are learnt per kind), the ``kind`` of a spec
in a watch checkpoint, the ``KIND`` argument of the command line and what
[FakeDocument360.seed][d360_async.testing.FakeDocument360.seed] creates.

The spellings used before there was one vocabulary (the command line's ``exports``/``tasks``/
``sd-tasks``..., the fake's ``export``/``drive_task``/``sd_task``...) are read as aliases by
[TargetKind.parse][d360_async.TargetKind.parse]; they are never written.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = ["ALIASES", "TargetKind"]


class TargetKind(enum.StrEnum):
    """The kinds of operation the library builds targets for.

    A `str` enum: a member is equal to its value (``TargetKind.V3_EXPORT == "v3.export"``),
    so it serialises as the plain name and can key a mapping read from JSON.

    Added in version 0.1.0.
    """

    V3_EXPORT = "v3.export"
    """A V3 project export (``client.exports``)."""
    V3_DRIVE_TASK = "v3.drive_task"
    """A V3 drive background task (``client.drive``)."""
    V3_IMPORT = "v3.import"
    """A V3 project import (``client.imports``)."""
    V3_API_REFERENCE = "v3.api_reference"
    """The latest import of a V3 API reference (``client.api_references``)."""
    V2_DELETE_FILE = "v2.delete_file"
    """A V2 drive file deletion (``client.v2``)."""
    V2_EXPORT = "v2.export"
    """A V2 export (``client.v2.exports``)."""
    V2_IMPORT = "v2.import"
    """A V2 import (``client.v2.imports``)."""
    SMARTDOCUMENTOR_TASK = "smartdocumentor.task"
    """A SmartDocumentor task (``sd.tasks``)."""

    @property
    def api(self) -> str:
        """The service, and so the credential, this kind talks to: ``"v3"``, ``"v2"`` or
        ``"smartdocumentor"``."""
        return self.value.partition(".")[0]

    @property
    def in_project(self) -> bool:
        """Whether an operation of this kind lives in a project (every V3 kind)."""
        return self.api == "v3"

    @property
    def label(self) -> str:
        """A short human name: ``"V3 export"``, ``"SmartDocumentor task"``."""
        return _TITLES[self]

    @classmethod
    def parse(cls, name: str) -> TargetKind:
        """The kind called ``name``: a canonical name, or one of the spellings used before
        there was one vocabulary (the command line's ``exports``, ``tasks``, ``sd-tasks``...;
        the fake's ``export``, ``drive_task``, ``sd_task``...).  Case and surrounding blanks
        are ignored.

        Raises:
            ValueError: no kind has that name; the message lists the canonical names.
        """
        if isinstance(name, cls):
            return name
        if isinstance(name, str):
            key = name.strip().lower()
            try:
                return cls(key)
            except ValueError:
                kind = ALIASES.get(key)
                if kind is not None:
                    return kind
        raise ValueError(f"unknown kind {name!r}; kinds are {', '.join(cls)}")

    @classmethod
    def is_alias(cls, name: str) -> bool:
        """Whether ``name`` is an old spelling rather than a canonical name."""
        return isinstance(name, str) and name.strip().lower() in ALIASES


_K = TargetKind

_TITLES: Final[Mapping[TargetKind, str]] = MappingProxyType(
    {
        _K.V3_EXPORT: "V3 export",
        _K.V3_DRIVE_TASK: "V3 drive task",
        _K.V3_IMPORT: "V3 import",
        _K.V3_API_REFERENCE: "V3 API-reference import",
        _K.V2_DELETE_FILE: "V2 drive file deletion",
        _K.V2_EXPORT: "V2 export",
        _K.V2_IMPORT: "V2 import",
        _K.SMARTDOCUMENTOR_TASK: "SmartDocumentor task",
    }
)

ALIASES: Final[Mapping[str, TargetKind]] = MappingProxyType(
    {
        # The command line's kinds before 0.1 had one vocabulary, and what people type.
        "exports": _K.V3_EXPORT,
        "export": _K.V3_EXPORT,
        "tasks": _K.V3_DRIVE_TASK,
        "task": _K.V3_DRIVE_TASK,
        "drive-tasks": _K.V3_DRIVE_TASK,
        "imports": _K.V3_IMPORT,
        "import": _K.V3_IMPORT,
        "v2-deletes": _K.V2_DELETE_FILE,
        "v2-delete": _K.V2_DELETE_FILE,
        "v2_deletes": _K.V2_DELETE_FILE,
        "sd-tasks": _K.SMARTDOCUMENTOR_TASK,
        "sd-task": _K.SMARTDOCUMENTOR_TASK,
        "sd_tasks": _K.SMARTDOCUMENTOR_TASK,
        # The fake server's seed kinds (FakeDocument360.seed) before then.
        "drive_task": _K.V3_DRIVE_TASK,
        "api_reference": _K.V3_API_REFERENCE,
        "v2_delete": _K.V2_DELETE_FILE,
        "v2_export": _K.V2_EXPORT,
        "v2_import": _K.V2_IMPORT,
        "sd_task": _K.SMARTDOCUMENTOR_TASK,
    }
)
"""Old spellings, read as the kind they name and never written."""
