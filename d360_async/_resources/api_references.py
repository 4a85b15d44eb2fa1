"""``client.api_references``: import OpenAPI specs as API references, read their import logs.

Vendor facts (V3 API-reference pages): ``POST /v3/projects/{project_id}/api-references`` takes
``{url or content, workspace_id, publish_articles}`` and answers 202 ``{id, status}``; every
import attempt leaves a log, listed newest first by ``GET .../api-references/{id}/logs`` with
``page`` (1-based) and ``page_size`` (default 25, at most 100); one log's errors and warnings
come from ``GET .../logs/{log_id}``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any, Final

from d360_async._core._ids import safe_token, uuid_id
from d360_async._core._kinds import TargetKind
from d360_async._core._models import (
    ApiReferenceImport,
    ApiReferenceLog,
    ApiReferenceLogDetail,
    malformed,
    parse_timestamp,
    structure,
)
from d360_async._core._phase import Phase
from d360_async._core._ratelimit._protocol import Priority, Ticket
from d360_async._core._response import Response, unwrap_v3
from d360_async._core._status import StatusReading
from d360_async._core._target_protocol import Observation, Target
from d360_async._resources._base import Resource, decode_v3
from d360_async._resources._resource_target import (
    ResourceTarget,
    observation,
    project_and_id,
    register_kind,
    resource_target,
)

__all__ = ["MAX_PAGE_SIZE", "ApiReferencesResource"]

MAX_PAGE_SIZE: Final = 100
"""The largest ``page_size`` the logs endpoint accepts (vendor docs: "Maximum 100")."""

_DECODE_DETAIL = decode_v3(ApiReferenceLogDetail)


def _decode_page(response: Response) -> tuple[ApiReferenceLog, ...]:
    data = unwrap_v3(response)
    if data is None:
        return ()
    if not isinstance(data, list):
        raise malformed("Expected the logs page to be a JSON array", response)
    return structure(data, tuple[ApiReferenceLog, ...], response=response)


def _path(project_id: str, api_reference_id: str | None = None) -> str:
    base = f"/v3/projects/{project_id}/api-references"
    return base if api_reference_id is None else f"{base}/{api_reference_id}"


def _check_page_size(page_size: object) -> int:
    if (
        not isinstance(page_size, int)
        or isinstance(page_size, bool)
        or not 1 <= page_size <= MAX_PAGE_SIZE
    ):
        raise ValueError(f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}")
    return page_size


def _check_page(page: object) -> int:
    if not isinstance(page, int) or isinstance(page, bool) or page < 1:
        raise ValueError("start_page must be an integer >= 1 (pages are 1-based)")
    return page


class ApiReferencesResource(Resource):
    """V3 API references: start an import, list its logs, read one log."""

    __slots__ = ()

    async def create(
        self,
        project_id: str | uuid.UUID,
        *,
        workspace_id: str | uuid.UUID,
        url: str | None = None,
        content: str | None = None,
        publish_articles: bool = False,
    ) -> ApiReferenceImport:
        """Import an OpenAPI spec from ``url`` or from ``content`` (exactly one).

        Returns the 202 handle; its ``id`` is the API reference whose logs report the import.
        """
        if (url is None) == (content is None):
            raise ValueError("give exactly one of url= or content=")
        project = uuid_id(project_id, name="project_id")
        body: dict[str, Any] = {
            "workspace_id": safe_token(workspace_id, name="workspace_id"),
            "publish_articles": bool(publish_articles),
        }
        if url is not None:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError("url must be an absolute http(s) URL")
            body["url"] = url
        else:
            if not isinstance(content, str) or not content.strip():
                raise ValueError("content must be the spec's non-empty text")
            body["content"] = content
        return await self._start(_path(project), ApiReferenceImport, project, body)

    async def _page(
        self,
        project: str,
        reference: str,
        page: int,
        page_size: int,
        *,
        priority: Priority = Priority.DIRECT,
        ticket: Ticket | None = None,
    ) -> tuple[ApiReferenceLog, ...]:
        return await self._call(
            "GET",
            f"{_path(project, reference)}/logs",
            _decode_page,
            project_id=project,
            params={"page": page, "page_size": page_size},
            priority=priority,
            ticket=ticket,
        )

    def log_pages(
        self,
        project_id: str | uuid.UUID,
        api_reference_id: str | uuid.UUID,
        *,
        page_size: int = 25,
        start_page: int = 1,
    ) -> AsyncIterator[tuple[ApiReferenceLog, ...]]:
        """Iterate over whole pages of import logs, newest first.

        Arguments are checked *now*, before any request.  Iteration stops after a page
        shorter than ``page_size`` (an empty page included); each page is one request.
        """
        project = uuid_id(project_id, name="project_id")
        reference = safe_token(api_reference_id, name="api_reference_id")
        size = _check_page_size(page_size)
        first = _check_page(start_page)
        return self._iter_pages(project, reference, size, first)

    async def _iter_pages(
        self, project: str, reference: str, page_size: int, page: int
    ) -> AsyncIterator[tuple[ApiReferenceLog, ...]]:
        while True:
            items = await self._page(project, reference, page, page_size)
            if items:
                yield items
            if len(items) < page_size:
                return
            page += 1

    def logs(
        self,
        project_id: str | uuid.UUID,
        api_reference_id: str | uuid.UUID,
        *,
        page_size: int = 25,
    ) -> AsyncIterator[ApiReferenceLog]:
        """Iterate over every import log, newest first, fetching pages as needed.

        ``page_size`` (1-100) is checked now, before any request.
        """
        pages = self.log_pages(project_id, api_reference_id, page_size=page_size)
        return self._flatten(pages)

    @staticmethod
    async def _flatten(
        pages: AsyncIterator[tuple[ApiReferenceLog, ...]],
    ) -> AsyncIterator[ApiReferenceLog]:
        async for page in pages:
            for entry in page:
                yield entry

    async def log(
        self,
        project_id: str | uuid.UUID,
        api_reference_id: str | uuid.UUID,
        log_id: str | uuid.UUID,
    ) -> ApiReferenceLogDetail:
        """One import log with its errors and warnings (``message`` and spec ``path`` each)."""
        project = uuid_id(project_id, name="project_id")
        reference = safe_token(api_reference_id, name="api_reference_id")
        log = safe_token(log_id, name="log_id")
        return await self._call(
            "GET",
            f"{_path(project, reference)}/logs/{log}",
            _DECODE_DETAIL,
            project_id=project,
        )

    def target(
        self,
        project_id: str | uuid.UUID,
        api_reference_id: str | uuid.UUID,
        *,
        since: datetime | str | None = None,
    ) -> ResourceTarget[ApiReferenceLog | None]:
        """A watchable target for an API reference's latest import (kind ``"v3.api_reference"``).

        Each poll reads the newest log (one request, ``page_size=1``).  Until a log exists,
        or while the newest one was created before ``since`` (pass the time you started a
        re-import, so the previous attempt's log is not mistaken for it), the phase is
        PENDING and the snapshot ``None`` or that older log.
        """
        project = uuid_id(project_id, name="project_id")
        reference = safe_token(api_reference_id, name="api_reference_id")
        cutoff = parse_timestamp(since) if isinstance(since, str) else since
        if cutoff is not None and cutoff.tzinfo is None:
            raise ValueError("since must be timezone-aware")

        async def poll(ticket: Ticket | None) -> Observation[ApiReferenceLog | None]:
            page = await self._page(project, reference, 1, 1, priority=Priority.POLL, ticket=ticket)
            newest = page[0] if page else None
            if newest is None or (
                cutoff is not None and newest.created_at is not None and newest.created_at < cutoff
            ):
                return observation(StatusReading(Phase.PENDING, None), newest)
            return observation(newest._reading(), newest)

        return resource_target(
            TargetKind.V3_API_REFERENCE,
            poll,
            ident=reference,
            project=project,
            rate_key=self._transport.rate_key(self.auth, project),
            limiter=self._transport.limiter,
            spec={} if cutoff is None else {"since": cutoff.isoformat()},
        )


def _from_spec(resource: ApiReferencesResource, spec: Mapping[str, Any]) -> Target[Any]:
    since = spec.get("since")
    if since is not None and not isinstance(since, str):
        raise ValueError("target spec 'since' must be an ISO 8601 timestamp")
    return resource.target(*project_and_id(spec), since=since)


register_kind(TargetKind.V3_API_REFERENCE, ApiReferencesResource, _from_spec)
