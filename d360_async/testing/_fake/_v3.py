"""The Document360 V3 API: drive tasks, exports, imports and API-reference imports.

Bodies are shaped like the examples of the vendor's V3 reference: a ``data`` envelope with
``extension_data``, ``success``, ``errors``, ``warnings``, ``information`` and ``request_id``;
a create answers 202 with an ``Operation-Location`` header; an unknown id answers 404 with an
RFC 7807 problem. API-reference logs are paged newest first, ``page_size`` at most 100.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ._bodies import iso, v3_envelope
from ._config import OperationKind
from ._downloads import Downloads
from ._ops import Operation
from ._replies import Reply, Route, bad_request, int_param, json_object, origin, v3_not_found
from ._state import FakeState, log_messages

__all__ = ["V3Api"]

_P = "/v3/projects/{project_id}"


class V3Api:
    """The V3 endpoints, over the shared state."""

    __slots__ = ("downloads", "state")

    def __init__(self, state: FakeState, downloads: Downloads) -> None:
        self.state = state
        self.downloads = downloads

    def routes(self) -> list[Route]:
        return [
            ("GET", _P + "/drive/tasks/{op_id}", "v3.drive_task", "v3", self.drive_task),
            ("POST", _P + "/exports", "v3.exports.create", "v3", self.create_export),
            ("GET", _P + "/exports/{op_id}", "v3.exports.get", "v3", self.export),
            ("POST", _P + "/imports", "v3.imports.create", "v3", self.create_import),
            ("GET", _P + "/imports/{op_id}", "v3.imports.get", "v3", self.import_),
            (
                "POST",
                _P + "/api-references",
                "v3.api_references.create",
                "v3",
                self.create_api_reference,
            ),
            ("GET", _P + "/api-references/{op_id}/logs", "v3.api_references.logs", "v3", self.logs),
            (
                "GET",
                _P + "/api-references/{op_id}/logs/{log_id}",
                "v3.api_references.log",
                "v3",
                self.log,
            ),
        ]

    # -- status reads ---------------------------------------------------------------------

    async def drive_task(self, request: web.Request, now: float) -> Reply:
        return self._status(request, now, "drive_task", "drive")

    async def export(self, request: web.Request, now: float) -> Reply:
        return self._status(request, now, "export", "export")

    async def import_(self, request: web.Request, now: float) -> Reply:
        return self._status(request, now, "import", "import")

    def _status(self, request: web.Request, now: float, kind: OperationKind, shape: str) -> Reply:
        state = self.state
        op = state.find(request.match_info["op_id"], kind, request.match_info["project_id"])
        if op is None:
            return v3_not_found(state)
        terminal = op.is_terminal(now)
        raw = op.raw_status(now)
        data: dict[str, Any]
        if shape == "drive":
            data = {"task_id": op.id, "status": raw}
        else:
            data = {"id": op.id, "status": raw}
            if shape == "export":
                data["download_url"] = (
                    self.downloads.mint_link(origin(request), op.id, now)
                    if raw == "Completed"
                    else None
                )
            data["completed_at"] = self._completed_at(op, now, terminal)
        empty_lists = shape == "export"  # as in the vendor's examples
        return Reply(
            200,
            payload=v3_envelope(data, state.request_id(), empty_lists=empty_lists),
            served=((op, terminal),),
            status_paths=(("data", "status"),),
        )

    def _completed_at(self, op: Operation, now: float, terminal: bool) -> str | None:
        if not terminal:
            return None
        at = op.finished_at if now >= op.finished_at else now
        return iso(self.state.epoch(at))

    # -- creates --------------------------------------------------------------------------

    async def create_export(self, request: web.Request, now: float) -> Reply:
        state = self.state
        body = await json_object(request)
        workspace, fmt, lang = body.get("workspace_id"), body.get("format"), body.get("lang_code")
        if not isinstance(workspace, str) or not workspace:
            return bad_request(state, "v3", "workspace_id is required.", "workspace_id")
        if not isinstance(fmt, str) or not fmt:
            return bad_request(state, "v3", "format is required.", "format")
        if lang is not None and not isinstance(lang, str):
            return bad_request(state, "v3", "lang_code must be a string.", "lang_code")
        project = request.match_info["project_id"]
        op = state.create("export", project, state.lifecycle, now)
        op.workspace_id, op.export_format, op.lang_code = workspace, fmt, lang
        return self._accepted(request, op, now, f"/v3/projects/{project}/exports/{op.id}")

    async def create_import(self, request: web.Request, now: float) -> Reply:
        if request.content_type == "application/json":
            await json_object(request)
        else:
            await request.read()  # a file upload: accepted as is
        project = request.match_info["project_id"]
        op = self.state.create("import", project, self.state.lifecycle, now)
        return self._accepted(request, op, now, f"/v3/projects/{project}/imports/{op.id}")

    async def create_api_reference(self, request: web.Request, now: float) -> Reply:
        state = self.state
        body = await json_object(request)
        source = body.get("url") or body.get("content")
        if not isinstance(source, str):
            return bad_request(state, "v3", "Either url or content is required.", "url")
        workspace = body.get("workspace_id")
        if workspace is not None and not isinstance(workspace, str):
            return bad_request(state, "v3", "workspace_id must be a string.", "workspace_id")
        project = request.match_info["project_id"]
        op = state.create("api_reference", project, state.lifecycle, now)
        return self._accepted(
            request, op, now, f"/v3/projects/{project}/api-references/{op.id}/logs"
        )

    def _accepted(self, request: web.Request, op: Operation, now: float, path: str) -> Reply:
        data = {"id": op.id, "status": op.raw_status(now)}
        return Reply(
            202,
            payload=v3_envelope(data, self.state.request_id()),
            headers={"Operation-Location": origin(request) + path},
        )

    # -- API-reference logs ---------------------------------------------------------------

    async def logs(self, request: web.Request, now: float) -> Reply:
        state = self.state
        op = state.find(
            request.match_info["op_id"], "api_reference", request.match_info["project_id"]
        )
        page = int_param(request.query.get("page"), 1)
        size = int_param(request.query.get("page_size"), 25)
        if page is None or page < 1:
            return bad_request(state, "v3", "page must be a positive integer.", "page")
        if size is None or not 1 <= size <= 100:
            return bad_request(state, "v3", "page_size must be between 1 and 100.", "page_size")
        if op is None:
            return v3_not_found(state)
        assert op.history is not None
        total = 1 + len(op.history)
        first = (page - 1) * size
        items: list[dict[str, Any]] = []
        served: tuple[tuple[Operation, bool], ...] = ()
        for index in range(first, min(first + size, total)):
            if index == 0:
                terminal = op.is_terminal(now)
                served = ((op, terminal),)
                items.append(
                    {
                        "id": op.log_id,
                        "status": op.raw_status(now),
                        "created_at": iso(state.epoch(op.started_at)),
                        "error_count": op.log_errors if terminal else 0,
                        "warning_count": op.log_warnings if terminal else 0,
                    }
                )
            else:
                entry = op.history[index - 1]
                items.append(
                    {
                        "id": entry.id,
                        "status": entry.status,
                        "created_at": iso(state.epoch(entry.created_at)),
                        "error_count": len(entry.errors),
                        "warning_count": len(entry.warnings),
                    }
                )
        return Reply(
            200,
            payload=v3_envelope(items, state.request_id(), empty_lists=False),
            served=served,
            status_paths=(("data", 0, "status"),) if items else (),
        )

    async def log(self, request: web.Request, now: float) -> Reply:
        state = self.state
        op = state.find(
            request.match_info["op_id"], "api_reference", request.match_info["project_id"]
        )
        found = state.logs.get(request.match_info["log_id"])
        if op is None or found is None or found[0] is not op:
            return v3_not_found(state)
        entry = found[1]
        data: dict[str, Any]
        if entry is not None:
            # Copies: body faults mutate the payload, never the stored history.
            data = {
                "id": entry.id,
                "errors": [dict(error) for error in entry.errors],
                "warnings": [dict(warning) for warning in entry.warnings],
            }
        else:
            terminal = op.is_terminal(now)
            data = {
                "id": op.log_id,
                "errors": log_messages("error", op.log_errors if terminal else 0),
                "warnings": log_messages("warning", op.log_warnings if terminal else 0),
            }
        return Reply(200, payload=v3_envelope(data, state.request_id(), empty_lists=False))
