"""``client.v2``: the V2 API's status endpoints, authenticated with the ``api_token`` header.

Vendor facts (the V2 API reference pages): every V2 body is an envelope whose ``success: false`` is
an error whatever the HTTP status; the delete-file status encodes its state as 0..5 (Queued,
Initiated, InProgress, Completed, Error, Cancelled) plus an ``is_complete`` flag that the vendor's
own example contradicts, so both are read (see `d360_async._core._status`).  V2 ids are not UUIDs
(``65868a00c536f34594713fec``); they are checked to be safe path segments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from d360_async._core._ids import safe_token
from d360_async._core._kinds import TargetKind
from d360_async._core._models import V2DeleteFileStatus, V2Export, V2Import
from d360_async._core._target_protocol import Target
from d360_async._resources._base import Resource, decode_v2
from d360_async._resources._resource_target import (
    ResourceTarget,
    register_kind,
    spec_field,
)
from d360_async._transport._auth import Auth
from d360_async._transport._transport import Transport

__all__ = ["V2ExportsResource", "V2ImportsResource", "V2Resource"]

_DECODE_DELETE = decode_v2(V2DeleteFileStatus, "task_status")
_DECODE_EXPORT = decode_v2(V2Export)
_DECODE_IMPORT = decode_v2(V2Import)


class _V2Base(Resource):
    __slots__ = ()

    _needs = "v2_api_token"
    _env = "D360_V2_API_TOKEN"


class V2ExportsResource(_V2Base):
    """``GET /v2/Project/Export/{exportId}``: Initiated, InProgress, Completed, Error."""

    __slots__ = ()

    async def get(self, export_id: str) -> V2Export:
        """Fetch a V2 export's status (and its link once Completed)."""
        path = f"/v2/Project/Export/{safe_token(export_id, name='export_id')}"
        return await self._call("GET", path, _DECODE_EXPORT)

    def target(self, export_id: str) -> ResourceTarget[V2Export]:
        """A watchable target for one V2 export (kind ``"v2.export"``)."""
        export = safe_token(export_id, name="export_id")
        return self._status_target(
            TargetKind.V2_EXPORT, f"/v2/Project/Export/{export}", _DECODE_EXPORT, ident=export
        )


class V2ImportsResource(_V2Base):
    """``GET /v2/Project/Import/{importId}``: Queued, InProgress, Completed, Error."""

    __slots__ = ()

    async def get(self, import_id: str) -> V2Import:
        """Fetch a V2 import's status."""
        path = f"/v2/Project/Import/{safe_token(import_id, name='import_id')}"
        return await self._call("GET", path, _DECODE_IMPORT)

    def target(self, import_id: str) -> ResourceTarget[V2Import]:
        """A watchable target for one V2 import (kind ``"v2.import"``)."""
        imported = safe_token(import_id, name="import_id")
        return self._status_target(
            TargetKind.V2_IMPORT, f"/v2/Project/Import/{imported}", _DECODE_IMPORT, ident=imported
        )


class V2Resource(_V2Base):
    """The V2 API: ``delete_file_status`` here, ``.exports`` and ``.imports`` below."""

    __slots__ = ("exports", "imports")

    def __init__(self, transport: Transport, auth: Auth | None) -> None:
        super().__init__(transport, auth)
        self.exports = V2ExportsResource(transport, auth)
        """V2 exports: [V2ExportsResource][d360_async.V2ExportsResource]."""
        self.imports = V2ImportsResource(transport, auth)
        """V2 imports: [V2ImportsResource][d360_async.V2ImportsResource]."""

    async def delete_file_status(self, task_id: str) -> V2DeleteFileStatus:
        """``GET /v2/Drive/Folders/DeleteFile/Status/{taskId}``: a delete-file task's state.

        Read the phase with the watch or ``normalise_v2_task(status.status,
        status.is_complete)``: ``is_complete`` may be true while ``status`` still says 2.
        """
        path = f"/v2/Drive/Folders/DeleteFile/Status/{safe_token(task_id, name='task_id')}"
        return await self._call("GET", path, _DECODE_DELETE)

    def delete_file_target(self, task_id: str) -> ResourceTarget[V2DeleteFileStatus]:
        """A watchable target for one delete-file task (kind ``"v2.delete_file"``).

        Each observation carries a warning when ``is_complete`` and the status code disagree.
        """
        task = safe_token(task_id, name="task_id")
        path = f"/v2/Drive/Folders/DeleteFile/Status/{task}"
        return self._status_target(TargetKind.V2_DELETE_FILE, path, _DECODE_DELETE, ident=task)

    def target(self, task_id: str) -> ResourceTarget[V2DeleteFileStatus]:
        """The same as [delete_file_target][d360_async.V2Resource.delete_file_target]."""
        return self.delete_file_target(task_id)


def _by_id(resource: V2ExportsResource | V2ImportsResource, spec: Mapping[str, Any]) -> Target[Any]:
    return resource.target(spec_field(spec, "id"))


register_kind(
    TargetKind.V2_DELETE_FILE,
    V2Resource,
    lambda r, spec: r.delete_file_target(spec_field(spec, "id")),
)
register_kind(TargetKind.V2_EXPORT, V2ExportsResource, _by_id)
register_kind(TargetKind.V2_IMPORT, V2ImportsResource, _by_id)
