"""``client.imports``: start V3 imports and read their status.

Vendor facts (V3 API reference, "Imports"): ``POST /v3/projects/{project_id}/imports``
answers 202 with an ``Operation-Location``;
``GET /v3/projects/{project_id}/imports/{import_id}`` answers ``{id, status, completed_at}``
with the V3 status strings.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from d360_async._core._ids import safe_token, uuid_id
from d360_async._core._kinds import TargetKind
from d360_async._core._models import Import, ImportStarted
from d360_async._resources._base import Resource, decode_v3
from d360_async._resources._resource_target import (
    ResourceTarget,
    project_and_id,
    register_kind,
)

__all__ = ["ImportsResource"]

_DECODE = decode_v3(Import)


def _ids(project_id: str | uuid.UUID, import_id: str | uuid.UUID) -> tuple[str, str]:
    return uuid_id(project_id, name="project_id"), safe_token(import_id, name="import_id")


def _path(project_id: str, import_id: str | None = None) -> str:
    base = f"/v3/projects/{project_id}/imports"
    return base if import_id is None else f"{base}/{import_id}"


class ImportsResource(Resource):
    """V3 imports."""

    __slots__ = ()

    async def create(
        self,
        project_id: str | uuid.UUID,
        *,
        workspace_id: str | uuid.UUID,
        source_url: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> ImportStarted:
        """Start an import into ``workspace_id``; returns the 202 handle.

        ``source_url`` is where the server fetches the package from; ``options`` are further
        request-body fields, sent as given (the vendor extends this body over time).
        """
        project = uuid_id(project_id, name="project_id")
        body: dict[str, Any] = dict(options or {})
        body["workspace_id"] = safe_token(workspace_id, name="workspace_id")
        if source_url is not None:
            if not isinstance(source_url, str) or not source_url.startswith(
                ("http://", "https://")
            ):
                raise ValueError("source_url must be an absolute http(s) URL")
            body["source_url"] = source_url
        return await self._start(_path(project), ImportStarted, project, body)

    async def get(self, project_id: str | uuid.UUID, import_id: str | uuid.UUID) -> Import:
        """Fetch an import's status."""
        project, imported = _ids(project_id, import_id)
        return await self._call("GET", _path(project, imported), _DECODE, project_id=project)

    def target(
        self, project_id: str | uuid.UUID, import_id: str | uuid.UUID
    ) -> ResourceTarget[Import]:
        """A watchable target for one import (kind ``"v3.import"``)."""
        project, imported = _ids(project_id, import_id)
        return self._status_target(
            TargetKind.V3_IMPORT, _path(project, imported), _DECODE, ident=imported, project=project
        )


register_kind(
    TargetKind.V3_IMPORT, ImportsResource, lambda r, spec: r.target(*project_and_id(spec))
)
