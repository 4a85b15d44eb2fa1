"""``client.v2``: the V2 API's status endpoints, authenticated with the ``api_token`` header.

Vendor facts (the V2 API reference pages): every V2 body is an envelope whose ``success: false`` is
an error whatever the HTTP status; the delete-file status encodes its state as 0..5 (Queued,
Initiated, InProgress, Completed, Error, Cancelled) plus an ``is_complete`` flag that the vendor's
own example contradicts, so both are read (see `d360_async._core._status`).  V2 ids are not UUIDs
(``65868a00c536f34594713fec``); they are checked to be safe path segments.
"""

from __future__ import annotations

from d360_async._core._ids import safe_token
from d360_async._core._models import V2DeleteFileStatus, V2Export, V2Import
from d360_async._core._ratelimit._protocol import Priority, Ticket
from d360_async._core._target_protocol import Observation
from d360_async._resources._base import Resource, decode_v2
from d360_async._resources._resource_target import (
    KIND_V2_DELETE_FILE,
    KIND_V2_EXPORT,
    KIND_V2_IMPORT,
    ResourceTarget,
    observation,
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
        path = f"/v2/Project/Export/{export}"

        async def poll(ticket: Ticket | None) -> Observation[V2Export]:
            snapshot = await self._call(
                "GET", path, _DECODE_EXPORT, priority=Priority.POLL, ticket=ticket
            )
            return observation(snapshot._reading(), snapshot)

        return ResourceTarget(
            kind=KIND_V2_EXPORT,
            key=f"{KIND_V2_EXPORT}/{export}",
            spec={"kind": KIND_V2_EXPORT, "id": export},
            rate_key=self._transport.rate_key(self.auth, None),
            limiter=self._transport.limiter,
            poll=poll,
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
        path = f"/v2/Project/Import/{imported}"

        async def poll(ticket: Ticket | None) -> Observation[V2Import]:
            snapshot = await self._call(
                "GET", path, _DECODE_IMPORT, priority=Priority.POLL, ticket=ticket
            )
            return observation(snapshot._reading(), snapshot)

        return ResourceTarget(
            kind=KIND_V2_IMPORT,
            key=f"{KIND_V2_IMPORT}/{imported}",
            spec={"kind": KIND_V2_IMPORT, "id": imported},
            rate_key=self._transport.rate_key(self.auth, None),
            limiter=self._transport.limiter,
            poll=poll,
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

        async def poll(ticket: Ticket | None) -> Observation[V2DeleteFileStatus]:
            snapshot = await self._call(
                "GET", path, _DECODE_DELETE, priority=Priority.POLL, ticket=ticket
            )
            return observation(snapshot._reading(), snapshot)

        return ResourceTarget(
            kind=KIND_V2_DELETE_FILE,
            key=f"{KIND_V2_DELETE_FILE}/{task}",
            spec={"kind": KIND_V2_DELETE_FILE, "id": task},
            rate_key=self._transport.rate_key(self.auth, None),
            limiter=self._transport.limiter,
            poll=poll,
        )

    def target(self, task_id: str) -> ResourceTarget[V2DeleteFileStatus]:
        """The same as [delete_file_target][d360_async.V2Resource.delete_file_target]."""
        return self.delete_file_target(task_id)
