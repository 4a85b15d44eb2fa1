"""The Document360 V2 API: delete-file status, project exports and imports.

Credentials come in the ``api_token`` header. Every answer carries the V2 envelope; an
unknown id answers 400 with ``success: false`` (the delete status exactly as in the vendor's
example), and with ``v2_complete_quirk`` a completed delete task reports ``is_complete: true``
beside ``status: 2``, as the vendor's own example does.
"""

from __future__ import annotations

from aiohttp import web

from ._bodies import v2_envelope
from ._downloads import Downloads
from ._replies import Reply, Route, origin
from ._state import FakeState

__all__ = ["V2Api"]


class V2Api:
    """The V2 endpoints, over the shared state."""

    __slots__ = ("downloads", "state")

    def __init__(self, state: FakeState, downloads: Downloads) -> None:
        self.state = state
        self.downloads = downloads

    def routes(self) -> list[Route]:
        return [
            (
                "GET",
                "/v2/Drive/Folders/DeleteFile/Status/{op_id}",
                "v2.delete_file_status",
                "v2",
                self.delete_status,
            ),
            ("GET", "/v2/Project/Export/{op_id}", "v2.exports.get", "v2", self.export),
            ("GET", "/v2/Project/Import/{op_id}", "v2.imports.get", "v2", self.import_),
        ]

    async def delete_status(self, request: web.Request, now: float) -> Reply:
        op = self.state.find(request.match_info["op_id"], "v2_delete", None)
        if op is None:
            return _unknown(None)
        terminal = op.is_terminal(now)
        raw = op.raw_status(now)
        if op.is_forced:
            complete = op.forced_is_complete if op.forced_is_complete is not None else terminal
        else:
            complete = terminal
            if terminal and self.state.v2_complete_quirk and op.outcome == "succeeded":
                raw = 2  # the vendor's example: complete, yet status 2 (InProgress)
        payload = {
            "task_status": {"task_id": op.id, "is_complete": complete, "status": raw},
            **v2_envelope(),
        }
        return Reply(
            200,
            payload=payload,
            served=((op, terminal),),
            status_paths=(("task_status", "status"),),
        )

    async def export(self, request: web.Request, now: float) -> Reply:
        op = self.state.find(request.match_info["op_id"], "v2_export", None)
        if op is None:
            return _unknown("Export")
        terminal = op.is_terminal(now)
        raw = op.raw_status(now)
        link = self.downloads.mint_link(origin(request), op.id, now) if raw == "Completed" else None
        payload = {"status": raw, "download_url": link, **v2_envelope()}
        return Reply(200, payload=payload, served=((op, terminal),), status_paths=(("status",),))

    async def import_(self, request: web.Request, now: float) -> Reply:
        op = self.state.find(request.match_info["op_id"], "v2_import", None)
        if op is None:
            return _unknown("Import")
        terminal = op.is_terminal(now)
        payload = {"status": op.raw_status(now), **v2_envelope()}
        return Reply(200, payload=payload, served=((op, terminal),), status_paths=(("status",),))


def _unknown(what: str | None) -> Reply:
    if what is None:  # exactly the vendor's example for the delete status
        return Reply(400, payload=v2_envelope(False))
    return Reply(400, payload=v2_envelope(False, error=f"{what} not found.", error_code="NotFound"))
