"""``client.drive``: V3 drive background tasks (bulk uploads and other async drive work)."""

from __future__ import annotations

import uuid

from d360_async._core._ids import safe_token, uuid_id
from d360_async._core._kinds import TargetKind
from d360_async._core._models import DriveTask
from d360_async._resources._base import Resource, decode_v3
from d360_async._resources._resource_target import (
    ResourceTarget,
    project_and_id,
    register_kind,
)

__all__ = ["DriveResource"]

_DECODE = decode_v3(DriveTask)


def _path(project_id: str, task_id: str) -> str:
    return f"/v3/projects/{project_id}/drive/tasks/{task_id}"


class DriveResource(Resource):
    """V3 drive tasks: ``GET /v3/projects/{project_id}/drive/tasks/{task_id}``.

    The vendor types ``project_id`` as a UUID; task ids are whatever an async drive operation
    returned (UUIDs in the vendor's examples), checked to be a safe path segment.
    """

    __slots__ = ()

    async def get_task(self, project_id: str | uuid.UUID, task_id: str | uuid.UUID) -> DriveTask:
        """Fetch a drive task's status once.

        Raises:
            ValueError: an id is malformed (no request is sent).
            NotFound: no such task (or project).
        """
        project = uuid_id(project_id, name="project_id")
        task = safe_token(task_id, name="task_id")
        return await self._call("GET", _path(project, task), _DECODE, project_id=project)

    def target(
        self, project_id: str | uuid.UUID, task_id: str | uuid.UUID
    ) -> ResourceTarget[DriveTask]:
        """A watchable target for one drive task (kind ``"v3.drive_task"``)."""
        project = uuid_id(project_id, name="project_id")
        task = safe_token(task_id, name="task_id")
        return self._status_target(
            TargetKind.V3_DRIVE_TASK, _path(project, task), _DECODE, ident=task, project=project
        )


register_kind(
    TargetKind.V3_DRIVE_TASK, DriveResource, lambda r, spec: r.target(*project_and_id(spec))
)
