"""``sd.tasks``: SmartDocumentor's task endpoints and the watch targets they build.

``GET /api/v1.0/external/sdtask/status`` takes ``taskId`` or ``externalId`` (exactly one, checked
locally); ``GET .../sdtask/statuslistpaginated`` pages through tasks; ``PATCH
.../sdtask/restartprocessing?taskId=`` reprocesses a stuck task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from d360_async._core._ids import external_id as check_external_id
from d360_async._core._ids import sd_task_id
from d360_async._core._kinds import TargetKind
from d360_async._core._models import (
    SmartDocumentorPage,
    SmartDocumentorTask,
    as_mapping,
    malformed,
    structure,
)
from d360_async._core._ratelimit._protocol import Priority, Ticket
from d360_async._core._response import Response
from d360_async._core._target_protocol import Observation, Target
from d360_async._resources._resource_target import (
    ResourceTarget,
    observation,
    register_kind,
    resource_target,
    spec_field,
)
from d360_async._transport._auth import Auth
from d360_async._transport._transport import Transport

__all__ = ["SmartDocumentorTasks"]

_API: Final = "/api/v1.0/external/sdtask"


def _decode_task(response: Response) -> SmartDocumentorTask:
    return structure(response.json(), SmartDocumentorTask, response=response)


def _decode_page(page_number: int, page_size: int) -> Callable[[Response], SmartDocumentorPage]:
    """Read a page whatever wrapper the server uses: a bare array, or an object holding the
    array under ``items``/``data``/``tasks``/``results`` with optional paging numbers."""

    def decode(response: Response) -> SmartDocumentorPage:
        payload = response.json()
        body: dict[str, Any] = {"pageNumber": page_number, "pageSize": page_size}
        if isinstance(payload, list):
            body["items"] = payload
        else:
            mapping = as_mapping(payload, "the task page", response)
            for key in ("items", "data", "tasks", "results", "records"):
                if key in mapping:
                    body["items"] = mapping[key]
                    break
            else:
                raise malformed("task page holds no list of tasks", response)
            for key in ("pageNumber", "pageSize", "totalCount", "totalPages"):
                if mapping.get(key) is not None:
                    body[key] = mapping[key]
            for alias in ("total", "totalItems", "totalRecords"):
                if "totalCount" not in body and mapping.get(alias) is not None:
                    body["totalCount"] = mapping[alias]
        return structure(body, SmartDocumentorPage, response=response)

    return decode


class SmartDocumentorTasks:
    """``sd.tasks``: task status, the paginated task list, restarts, and watch targets."""

    __slots__ = ("_auth", "_transport")

    def __init__(self, transport: Transport, auth: Auth) -> None:
        self._transport = transport
        self._auth = auth

    def __repr__(self) -> str:
        return f"<SmartDocumentorTasks {self._transport.base_url}>"

    @staticmethod
    def _selector(task_id: int | None, external_id: str | None) -> dict[str, str | int]:
        if (task_id is None) == (external_id is None):
            raise ValueError("give exactly one of task_id= or external_id=")
        if task_id is not None:
            return {"taskId": sd_task_id(task_id)}
        return {"externalId": check_external_id(external_id)}

    async def _status(
        self,
        params: Mapping[str, str | int],
        *,
        priority: Priority = Priority.DIRECT,
        ticket: Ticket | None = None,
    ) -> SmartDocumentorTask:
        return await self._transport.request_decoded(
            "GET",
            f"{_API}/status",
            _decode_task,
            auth=self._auth,
            params=params,
            priority=priority,
            ticket=ticket,
        )

    async def status(
        self, *, task_id: int | None = None, external_id: str | None = None
    ) -> SmartDocumentorTask:
        """One task's status, by ``task_id`` or by ``external_id`` (exactly one).

        Raises:
            ValueError: neither or both given, or a malformed id (no request is sent).
            NotFound: no such task (the vendor answers 404 with an empty body).
        """
        return await self._status(self._selector(task_id, external_id))

    async def list_paginated(
        self,
        *,
        page_number: int = 1,
        page_size: int = 25,
        filters: Mapping[str, str | int] | None = None,
    ) -> SmartDocumentorPage:
        """One page of tasks (``pageNumber`` is 1-based); ``filters`` are sent as given."""
        for name, value in (("page_number", page_number), ("page_size", page_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1")
        params: dict[str, str | int] = dict(filters or {})
        params.update({"pageNumber": page_number, "pageSize": page_size})
        return await self._transport.request_decoded(
            "GET",
            f"{_API}/statuslistpaginated",
            _decode_page(page_number, page_size),
            auth=self._auth,
            params=params,
        )

    async def restart_processing(self, task_id: int) -> None:
        """Reprocess a stuck task (``restartCount`` goes up); the vendor never does it alone."""
        await self._transport.request(
            "PATCH",
            f"{_API}/restartprocessing",
            auth=self._auth,
            params={"taskId": sd_task_id(task_id)},
        )

    def target(
        self, *, task_id: int | None = None, external_id: str | None = None
    ) -> ResourceTarget[SmartDocumentorTask]:
        """A watchable target for one task (kind ``"smartdocumentor.task"``).

        A task waiting in review is *not* finished; pass ``until=`` to the watch to stop there.
        """
        params = self._selector(task_id, external_id)

        async def poll(ticket: Ticket | None) -> Observation[SmartDocumentorTask]:
            snapshot = await self._status(params, priority=Priority.POLL, ticket=ticket)
            return observation(snapshot._reading(), snapshot)

        kind = TargetKind.SMARTDOCUMENTOR_TASK
        external = task_id is None
        ident = params["externalId" if external else "taskId"]
        return resource_target(
            kind,
            poll,
            ident=ident,
            project=None,
            rate_key=self._transport.rate_key(self._auth, None),
            limiter=self._transport.limiter,
            spec={"id_type": "external"} if external else None,
            key=f"{kind.value}/external/{ident}" if external else None,
        )


def _from_spec(tasks: SmartDocumentorTasks, spec: Mapping[str, Any]) -> Target[Any]:
    if spec.get("id_type") == "external":
        return tasks.target(external_id=spec_field(spec, "id"))
    return tasks.target(task_id=spec_field(spec, "id"))


register_kind(TargetKind.SMARTDOCUMENTOR_TASK, SmartDocumentorTasks, _from_spec)
