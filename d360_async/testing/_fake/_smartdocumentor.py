"""The SmartDocumentor API: an OAuth2 token endpoint and the ``sdtask`` endpoints behind it.

``POST /connect/token`` takes client credentials (in the form or as HTTP Basic) for the scope
``WebAPI`` and answers a bearer token living ``sd_token_ttl`` seconds; errors are OAuth2's
``{"error": ...}``. The task endpoints answer 400 and 404 with an empty body, as the vendor's
do. A task's body carries ``taskStatus`` with its text and ``integrationStatus`` with its text.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import secrets
from typing import Any

import attrs
from aiohttp import web

from ._bodies import iso
from ._ops import SD_INTEGRATION, SD_STAGES, SD_TASK_TEXT, SD_TEXT_TO_NUMBER, Operation
from ._replies import Reply, Route, int_param, json_object
from ._state import FakeState

__all__ = ["SmartDocumentorApi"]

_SD = "/api/v1.0/external/sdtask"


class SmartDocumentorApi:
    """The SmartDocumentor endpoints, over the shared state."""

    __slots__ = ("state",)

    def __init__(self, state: FakeState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            ("POST", "/connect/token", "sd.token", "token", self.token),
            ("GET", _SD + "/status", "sd.status", "sd", self.status),
            ("GET", _SD + "/statuslistpaginated", "sd.list", "sd", self.list),
            ("POST", _SD + "/process", "sd.process", "sd", self.process),
            ("PATCH", _SD + "/restartprocessing", "sd.restart", "sd", self.restart),
        ]

    async def token(self, request: web.Request, now: float) -> Reply:
        state = self.state
        state.stats.token_requests += 1
        form = await request.post()
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = _basic(request.headers.get("Authorization"))
        if basic is not None:
            client_id, secret = basic
        grant = form.get("grant_type")
        if grant is None:
            return _oauth_error("invalid_request")
        if grant != "client_credentials":
            return _oauth_error("unsupported_grant_type")
        if not isinstance(client_id, str) or not isinstance(secret, str):
            return _oauth_error("invalid_client")
        expected = state.sd_clients.get(client_id)
        if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
            return _oauth_error("invalid_client")
        scope = form.get("scope", "WebAPI")
        if not isinstance(scope, str) or set(scope.split()) != {"WebAPI"}:
            return _oauth_error("invalid_scope")
        if len(state.sd_tokens) > 1024:  # drop expired tokens now and then
            state.sd_tokens = {t: e for t, e in state.sd_tokens.items() if e[0] > now}
        token = secrets.token_urlsafe(32)
        state.sd_tokens[token] = (now + state.sd_token_ttl, client_id)
        state.stats.tokens_issued += 1
        payload = {
            "access_token": token,
            "expires_in": int(state.sd_token_ttl),
            "token_type": "Bearer",
            "scope": "WebAPI",
        }
        return Reply(200, payload=payload, headers={"Cache-Control": "no-store"})

    async def status(self, request: web.Request, now: float) -> Reply:
        found = self._lookup(request)
        if isinstance(found, Reply):
            return found
        return Reply(
            200,
            payload=self._body(found, now),
            served=((found, found.is_terminal(now)),),
            status_paths=(("taskStatus",), ("taskStatusText",)),
        )

    async def list(self, request: web.Request, now: float) -> Reply:
        query = {key.lower(): value for key, value in request.query.items()}
        number = int_param(query.get("pagenumber"), 1)
        size = int_param(query.get("pagesize"), 20)
        if number is None or number < 1 or size is None or not 1 <= size <= 100:
            return Reply(400)
        filters: dict[str, Any] = {}
        for name, field in (
            ("workspaceid", "workspaceId"),
            ("batchid", "batchId"),
            ("taskstatus", "taskStatus"),
        ):
            if name in query:
                value = int_param(query[name], 0)
                if value is None:
                    return Reply(400)
                filters[field] = value
        bodies: list[tuple[Operation, dict[str, Any]]] = []
        for op in self.state.sd_ops.values():
            if op.deleted:
                continue
            body = self._body(op, now)
            if all(body[field] == value for field, value in filters.items()):
                bodies.append((op, body))
        first = (number - 1) * size
        page = bodies[first : first + size]
        payload = {
            "pageNumber": number,
            "pageSize": size,
            "totalCount": len(bodies),
            "totalPages": math.ceil(len(bodies) / size),
            "items": [body for _, body in page],
        }
        return Reply(
            200,
            payload=payload,
            served=tuple((op, op.is_terminal(now)) for op, _ in page),
            status_paths=(("items", 0, "taskStatus"), ("items", 0, "taskStatusText"))
            if page
            else (),
        )

    async def process(self, request: web.Request, now: float) -> Reply:
        state = self.state
        fields: dict[str, Any]
        if request.content_type == "application/json":
            fields = await json_object(request)
        else:
            fields = dict((await request.post()).items())
        name = fields.get("displayName")
        if not isinstance(name, str) or not name:
            return Reply(400)
        sd_fields: dict[str, Any] = {"displayName": name}
        for field in ("workspaceId", "batchId"):
            if fields.get(field) is not None:
                value = int_param(str(fields[field]), 0)
                if value is None:
                    return Reply(400)
                sd_fields[field] = value
        sd_fields.setdefault("batchId", None)
        for field in ("externalId", "description"):
            value = fields.get(field)
            if value is not None and not isinstance(value, str):
                return Reply(400)
            sd_fields[field] = value
        external = sd_fields["externalId"]
        if external is not None and external in state.sd_external:
            return Reply(400)  # external ids are unique per organisation
        op = state.create("sd_task", None, state.lifecycle, now, sd_fields=sd_fields)
        return Reply(200, payload=self._body(op, now))

    async def restart(self, request: web.Request, now: float) -> Reply:
        found = self._lookup(request)
        if isinstance(found, Reply):
            return found
        sd = found.sd
        assert sd is not None
        if now >= found.running_at:
            sd.previous_preprocessing = found.running_at
        sd.restart_count += 1
        found.clear_forced()
        found.redraw(self.state.rng, attrs.evolve(self.state.lifecycle, stuck_ratio=0.0), now)
        return Reply(200, payload=self._body(found, now))

    # -- internals ------------------------------------------------------------------------

    def _lookup(self, request: web.Request) -> Operation | Reply:
        query = {key.lower(): value for key, value in request.query.items()}
        task_id, external = query.get("taskid"), query.get("externalid")
        if task_id:
            number = int_param(task_id, 0)
            if number is None:
                return Reply(400)
            op = self.state.sd_ops.get(number)
            if op is not None and external and op.sd is not None and op.sd.external_id != external:
                op = None
        elif external:
            op = self.state.sd_external.get(external)
        else:
            return Reply(400)  # one of taskId or externalId is required; no body
        if op is None or op.deleted:
            return Reply(404)
        return op

    def _body(self, op: Operation, now: float) -> dict[str, Any]:
        sd = op.sd
        assert sd is not None
        epoch = self.state.epoch
        task, text, integration, integration_text = SD_STAGES[op.stage(now)]
        task_status: int | None = task
        task_text: str | None = text
        if op.is_forced:
            forced = op.forced
            if isinstance(forced, int):
                task_status, task_text = forced, SD_TASK_TEXT.get(forced)
            elif isinstance(forced, str):
                task_status, task_text = SD_TEXT_TO_NUMBER.get(forced.lower()), forced
            else:
                task_status = task_text = None
        if sd.forced_integration is not None:
            integration = sd.forced_integration
            integration_text = SD_INTEGRATION.get(integration, "Unknown")
        started = now >= op.running_at
        pre_started = op.running_at if started else sd.previous_preprocessing
        return {
            "taskId": sd.task_id,
            "workspaceId": sd.workspace_id,
            "batchId": sd.batch_id,
            "taskNumber": sd.task_number,
            "externalId": sd.external_id,
            "displayName": sd.display_name,
            "description": sd.description,
            "createdOn": iso(epoch(sd.created_at)),
            "taskStatus": task_status,
            "integrationStatus": integration,
            "taskStatusText": task_text,
            "integrationStatusText": integration_text,
            "totalPages": sd.total_pages if started else 0,
            "restartCount": sd.restart_count,
            "preProcessingStartedOn": None if pre_started is None else iso(epoch(pre_started)),
        }


def _basic(header: str | None) -> tuple[str, str] | None:
    """HTTP Basic credentials (RFC 7617), or ``None``."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _oauth_error(code: str) -> Reply:
    return Reply(400, payload={"error": code}, headers={"Cache-Control": "no-store"})
