"""What a handler answers (`Reply`), and the error replies every API family shapes its own way.

A handler returns a `Reply` before faults and headers are applied; the pipeline sends it.
Error bodies follow each family: V3 answers RFC 7807 problems, V2 its `success: false`
envelope, downloads the storage service's XML, SmartDocumentor and the token endpoint nothing.
The request-reading helpers shared by the families live here too.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

import attrs
from aiohttp import web

from ._bodies import problem, storage_error, v2_envelope
from ._ops import Operation
from ._state import FakeState

__all__ = [
    "JSON_TYPE",
    "PROBLEM_JSON",
    "XML",
    "BadBody",
    "Family",
    "Handler",
    "Reply",
    "Route",
    "bad_request",
    "error",
    "int_param",
    "json_object",
    "origin",
    "v3_not_found",
]

Family = Literal["v3", "v2", "sd", "token", "download"]
"""Which API a route belongs to: it decides the credential checked and the error format."""

JSON_TYPE: Final = "application/json; charset=utf-8"
PROBLEM_JSON: Final = "application/problem+json; charset=utf-8"
XML: Final = "application/xml"


@attrs.define(slots=True)
class Reply:
    """What a handler answers, before faults and headers are applied.

    ``served`` lists the operations whose status the answer shows (and whether it is terminal),
    recorded only if the answer goes out unfaulted; ``status_paths`` point at the status fields
    an ``unknown_status`` fault replaces.
    """

    status: int
    payload: Any = None
    body: bytes | None = None
    content_type: str = JSON_TYPE
    headers: dict[str, str] | None = None
    served: tuple[tuple[Operation, bool], ...] = ()
    status_paths: tuple[tuple[str | int, ...], ...] = ()

    def encode(self) -> bytes:
        if self.body is not None:
            return self.body
        if self.payload is None:
            return b""
        return json.dumps(self.payload).encode()


Handler = Callable[[web.Request, float], Awaitable[Reply]]
"""A family's answer to one request, given the server clock's reading when it is handled."""

Route = tuple[str, str, str, Family, Handler]
"""One endpoint: HTTP method, path pattern, route name (as `ROUTES` lists them), family, handler."""


class BadBody(Exception):
    """The request body is not what the endpoint accepts (answered 400)."""


def error(state: FakeState, family: Family, status: int) -> Reply:
    """A server-side error (429, 500, 503) in the family's own error format."""
    if family == "v3" or (family == "v2" and status == 429):
        return Reply(status, payload=problem(status, state.trace_id()), content_type=PROBLEM_JSON)
    if family == "v2":
        message = "An unexpected error occurred." if status == 500 else "Service unavailable."
        return Reply(status, payload=v2_envelope(False, error=message, error_code=str(status)))
    if family == "download":
        code = "InternalError" if status == 500 else "ServerBusy"
        body = storage_error(
            code, "The server encountered an error.", code, state.trace_id(), state.epoch()
        )
        return Reply(status, body=body, content_type=XML)
    return Reply(status)  # SmartDocumentor and the token endpoint: no body


def bad_request(state: FakeState, family: Family, message: str, field: str | None = None) -> Reply:
    """A 400: a problem naming the field for V3, an empty body elsewhere."""
    if family == "v3":
        body = problem(400, state.trace_id(), message=message, field=field)
        return Reply(400, payload=body, content_type=PROBLEM_JSON)
    return Reply(400)


def v3_not_found(state: FakeState) -> Reply:
    return Reply(404, payload=problem(404, state.trace_id()), content_type=PROBLEM_JSON)


def origin(request: web.Request) -> str:
    """The scheme and host the client used (links and ``Operation-Location`` point there)."""
    return f"{request.scheme}://{request.host}"


def int_param(value: str | None, default: int) -> int | None:
    """An integer query parameter: ``default`` when absent, ``None`` when malformed."""
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return None


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object.

    Raises:
        BadBody: not JSON, or not an object.
    """
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        raise BadBody("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadBody("The request body must be a JSON object.")
    return body
