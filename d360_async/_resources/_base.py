"""What every resource shares: the transport and credential, and the body decoders.

Decoders run *inside* the transport's retry loop (`Transport.request_decoded`), so a
2xx whose body cannot be read (a proxy's HTML page, truncated JSON, a missing field) is
retried like any transient failure before [MalformedResponse][d360_async.MalformedResponse] reaches
the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol, TypeVar

import yarl

from d360_async._core._errors import MissingCredential
from d360_async._core._kinds import TargetKind
from d360_async._core._models import (
    OperationHandle,
    as_mapping,
    malformed,
    structure,
    structurer,
)
from d360_async._core._ratelimit._protocol import Priority, Ticket
from d360_async._core._response import Response, check_v2, unwrap_v3
from d360_async._core._status import StatusReading
from d360_async._core._target_protocol import Observation
from d360_async._resources._resource_target import ResourceTarget, observation, resource_target
from d360_async._transport._auth import Auth
from d360_async._transport._transport import Transport

__all__ = [
    "Resource",
    "decode_accepted",
    "decode_v2",
    "decode_v3",
]

T = TypeVar("T")
H = TypeVar("H", bound=OperationHandle)


class _Readable(Protocol):
    def _reading(self) -> StatusReading: ...


M = TypeVar("M", bound=_Readable)


class Resource:
    """A group of endpoints sharing one transport and one credential.

    ``auth`` may be ``None`` when the client was built without the token this API needs; the
    first call then fails locally with a clear message instead of a 401 from the server.
    """

    __slots__ = ("_auth", "_transport")

    _needs = "api_token"
    _env = "D360_API_TOKEN"

    def __init__(self, transport: Transport, auth: Auth | None) -> None:
        self._transport = transport
        self._auth = auth

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._transport.base_url}>"

    @property
    def transport(self) -> Transport:
        """The transport this resource sends through."""
        return self._transport

    @property
    def auth(self) -> Auth:
        """The credential, or [MissingCredential][d360_async.MissingCredential] when the client was
        built without it."""
        if self._auth is None:
            raise MissingCredential(
                f"{type(self).__name__} needs the client to be built with {self._needs} "
                f"(or {self._env} set in the environment)"
            )
        return self._auth

    def _start(
        self, path: str, handle: type[H], project: str, body: Mapping[str, Any]
    ) -> Coroutine[Any, Any, H]:
        """``POST path`` starting an operation in ``project``; the 202 becomes ``handle``."""
        return self._call(
            "POST", path, decode_accepted(handle, project), project_id=project, json=body
        )

    def _status_target(
        self,
        kind: TargetKind,
        path: str,
        decode: Callable[[Response], M],
        *,
        ident: str,
        project: str | None = None,
    ) -> ResourceTarget[M]:
        """A target of ``kind`` whose poll is ``GET path``, answered with the model itself."""

        async def poll(ticket: Ticket | None) -> Observation[M]:
            snapshot = await self._call(
                "GET", path, decode, project_id=project, priority=Priority.POLL, ticket=ticket
            )
            return observation(snapshot._reading(), snapshot)

        return resource_target(
            kind,
            poll,
            ident=ident,
            project=project,
            rate_key=self._transport.rate_key(self.auth, project),
            limiter=self._transport.limiter,
        )

    def _call(
        self,
        method: str,
        path: str,
        decode: Callable[[Response], T],
        *,
        project_id: str | None = None,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        priority: Priority = Priority.DIRECT,
        ticket: Ticket | None = None,
    ) -> Coroutine[Any, Any, T]:
        # Hands back the transport's coroutine for the caller to await: no extra coroutine
        # layer on every request.
        return self._transport.request_decoded(
            method,
            path,
            decode,
            auth=self.auth,
            params=params,
            json=json,
            project_id=project_id,
            priority=priority,
            ticket=ticket,
        )


def decode_v3(cls: type[T]) -> Callable[[Response], T]:
    """A decoder reading ``data`` of a V3 envelope as ``cls``."""

    build = structurer(cls)

    def decode(response: Response) -> T:
        return build(unwrap_v3(response), response)

    return decode


def decode_v2(cls: type[T], key: str | None = None) -> Callable[[Response], T]:
    """A decoder checking a V2 envelope and reading ``cls`` from it.

    ``key`` names the member holding the object (``task_status`` for the delete-file status);
    without it the object is the envelope itself, or its ``data``/``result`` member when the
    envelope nests one.
    """

    def decode(response: Response) -> T:
        payload = check_v2(response)
        if key is not None:
            body: Any = payload.get(key)
            if body is None:
                raise malformed(f"V2 response has no {key!r}", response)
        else:
            body = payload
            for nested in ("data", "result"):
                inner = payload.get(nested)
                if isinstance(inner, dict) and "status" not in payload:
                    body = inner
                    break
        return structure(
            as_mapping(body, f"the V2 {key or 'payload'}", response), cls, response=response
        )

    return decode


def decode_accepted(cls: type[H], project_id: str) -> Callable[[Response], H]:
    """A decoder for a 202 Accepted that started an operation.

    The body may be a V3 envelope (``success: false`` still raises), a bare ``{id, status}``
    (API-reference import) or empty; the id comes from the body, else from the last path
    segment of the ``Operation-Location`` header, which is where the operation is polled.
    """

    def decode(response: Response) -> H:
        data: Mapping[str, Any] = {}
        if response.body.strip():
            payload = response.json()
            if isinstance(payload, dict) and ("data" in payload or "success" in payload):
                unwrapped = unwrap_v3(response)
                if unwrapped is not None:
                    data = as_mapping(unwrapped, "the 202 data", response)
            elif payload is not None:
                data = as_mapping(payload, "the 202 body", response)
        location = response.headers.get("Operation-Location")
        raw_id: Any = data.get("id")
        if raw_id is None and location:
            try:
                path = yarl.URL(location).path
            except ValueError:  # not a URL at all (``http://[::1``): it names nothing
                path = ""
            segments = [s for s in path.split("/") if s]
            raw_id = segments[-1] if segments else None
        if raw_id is None:
            raise malformed(
                "202 response names no operation (no id, no Operation-Location)", response
            )
        return structure(
            {
                "project_id": project_id,
                "id": raw_id,
                "status": data.get("status"),
                "operation_location": location,
            },
            cls,
            response=response,
        )

    return decode
