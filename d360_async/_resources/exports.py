"""``client.exports``: start V3 exports, read their status, download the result.

Downloading follows the vendor's export-status page: a Completed export carries a
``download_url`` which, for private projects, holds a SAS signature valid for 30 minutes.  The
link authorises itself and may point to another host, so it is fetched with *no* credential,
outside the API's rate limit; a 403 means the signature expired, and a fresh link comes from
reading the export again.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final

import attrs
import yarl

from d360_async._core._errors import (
    DownloadLinkExpired,
    ExportNotReady,
    PermissionDenied,
    ProtocolError,
)
from d360_async._core._ids import safe_token, uuid_id
from d360_async._core._kinds import TargetKind
from d360_async._core._models import Export, ExportStarted
from d360_async._core._phase import Phase
from d360_async._core._redact import library_logger, redact_url
from d360_async._resources._base import Resource, decode_v3
from d360_async._resources._resource_target import (
    ResourceTarget,
    project_and_id,
    register_kind,
)

__all__ = ["DownloadProgress", "ExportsResource"]

logger = library_logger("d360_async.exports")

_DECODE = decode_v3(Export)
_CHUNK_SIZE: Final = 256 * 1024

DownloadProgress = Callable[[int, int | None], Any]
"""``progress(bytes_done, total_or_None)``; may be a plain or a coroutine function."""


def _ids(project_id: str | uuid.UUID, export_id: str | uuid.UUID) -> tuple[str, str]:
    return uuid_id(project_id, name="project_id"), uuid_id(export_id, name="export_id")


def _path(project_id: str, export_id: str | None = None) -> str:
    base = f"/v3/projects/{project_id}/exports"
    return base if export_id is None else f"{base}/{export_id}"


class ExportsResource(Resource):
    """V3 exports: ``POST /v3/projects/{project_id}/exports`` and
    ``GET /v3/projects/{project_id}/exports/{export_id}`` (both ids UUIDs per the vendor)."""

    __slots__ = ()

    async def create(
        self,
        project_id: str | uuid.UUID,
        *,
        workspace_id: str | uuid.UUID,
        format: str,
        lang_code: str | None = None,
    ) -> ExportStarted:
        """Start an export; the 202 answer becomes an [ExportStarted][d360_async.ExportStarted]
        handle.

        Follow it with ``client.exports.target(handle.project_id, handle.id)`` or fetch it
        with [get][d360_async.ExportsResource.get].
        """
        project = uuid_id(project_id, name="project_id")
        body: dict[str, Any] = {
            "workspace_id": safe_token(workspace_id, name="workspace_id"),
            "format": _text(format, "format"),
        }
        if lang_code is not None:
            body["lang_code"] = _text(lang_code, "lang_code")
        return await self._start(_path(project), ExportStarted, project, body)

    async def get(self, project_id: str | uuid.UUID, export_id: str | uuid.UUID) -> Export:
        """Fetch an export's status (and, once Completed, its download link)."""
        project, export = _ids(project_id, export_id)
        return await self._call("GET", _path(project, export), _DECODE, project_id=project)

    def target(
        self, project_id: str | uuid.UUID, export_id: str | uuid.UUID
    ) -> ResourceTarget[Export]:
        """A watchable target for one export (kind ``"v3.export"``)."""
        project, export = _ids(project_id, export_id)
        return self._status_target(
            TargetKind.V3_EXPORT, _path(project, export), _DECODE, ident=export, project=project
        )

    async def download(
        self,
        project_id: str | uuid.UUID,
        export_id: str | uuid.UUID,
        dest: str | os.PathLike[str],
        *,
        progress: DownloadProgress | None = None,
        chunk_size: int = _CHUNK_SIZE,
        mode: int | None = None,
    ) -> Path:
        """Download a Completed export's file to ``dest`` and return the path written.

        ``dest`` is the file to create (replaced if it exists); when it is an existing
        directory, the file is created inside it under the link's file name.  The bytes go to a
        temporary file beside the destination, which is renamed over it only once complete and
        of the announced ``Content-Length``; on any failure or cancellation the temporary file
        is removed and ``dest`` is untouched.

        The file gets the permissions any new file of the process gets (`0o666` less the
        umask: `0o644` with the usual `022`, as curl and wget give), unless `mode` asks for
        others (`mode=0o600` for a file only its owner may read), which are then applied
        exactly, whatever the umask.

        The link is requested without any credential.  If it has expired (403), the export is
        read again for a fresh link, once.

        Raises:
            ExportNotReady: the export is not Completed, or has no link.
            DownloadLinkExpired: the fresh link was refused too.
            ProtocolError: the body was shorter or longer than ``Content-Length``.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        if mode is not None and (
            isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777
        ):
            raise ValueError("mode must be a permission mode such as 0o644")
        export = await self.get(project_id, export_id)
        url = _ready_link(export)
        target = _destination(Path(dest), url, str(export.id))
        try:
            return await _fetch_to(self, url, target, progress, chunk_size, mode)
        except PermissionDenied as first:
            logger.debug(
                "download link refused (%s); fetching a fresh one",
                first.status,
                extra={"d360_target": f"{project_id}/{export_id}", "d360_status": first.status},
            )
            export = await self.get(project_id, export_id)
            url = _ready_link(export)
            try:
                return await _fetch_to(self, url, target, progress, chunk_size, mode)
            except PermissionDenied as second:
                raise DownloadLinkExpired(
                    "the export's download link was refused even after fetching a fresh one",
                    method="GET",
                    url=redact_url(url),
                    status=second.status,
                    errors=second.errors,
                ) from second


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be non-empty text")
    return value


def _ready_link(export: Export) -> str:
    if export.phase is not Phase.SUCCEEDED:
        raise ExportNotReady(
            f"export {export.id} is not completed (status {export.status!r})", export=export
        )
    if not export.download_url:
        raise ExportNotReady(
            f"export {export.id} is completed but has no download_url", export=export
        )
    return export.download_url


def _destination(dest: Path, url: str, fallback: str) -> Path:
    if not dest.is_dir():
        return dest
    name = yarl.URL(url).name
    # Only a plain file name taken from the link is used; anything odd falls back to the id.
    if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        name = f"{fallback}.zip"
    return dest / name


@attrs.define(slots=True)
class _PartFile:
    """The temporary file a download streams into; removed unless committed."""

    path: Path
    handle: IO[bytes]

    @classmethod
    def create(cls, dest: Path, mode: int | None) -> _PartFile:
        """A new, uniquely named file beside ``dest``.

        Created with ``0o666`` for the kernel to apply the umask, as for any new file (not
        with `tempfile.mkstemp`, whose ``0o600`` would make every download private whatever
        the umask); ``mode``, when given, is then set exactly.
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        for _ in range(100):
            path = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part"
            try:
                fd = os.open(path, flags, 0o666)
            except FileExistsError:
                continue
            try:
                if mode is not None:
                    os.chmod(path, mode)
                handle = os.fdopen(fd, "wb")
            except BaseException:
                os.close(fd)
                path.unlink(missing_ok=True)
                raise
            return cls(path, handle)
        raise FileExistsError(f"no free temporary name beside {str(dest)!r}")

    def sync(self) -> None:
        """Flush to disk (slow: run in a thread)."""
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def commit(self, dest: Path) -> None:
        """Close and rename over ``dest`` atomically (fast: run inline, never half-done)."""
        self.handle.close()
        os.replace(self.path, dest)

    def discard(self) -> None:
        # Synchronous on purpose: it must run to completion even while being cancelled.
        try:
            self.handle.close()
        finally:
            self.path.unlink(missing_ok=True)


async def _report(progress: DownloadProgress | None, done: int, total: int | None) -> None:
    if progress is None:
        return
    result = progress(done, total)
    if inspect.isawaitable(result):
        await result


async def _fetch_to(
    resource: Resource,
    url: str,
    dest: Path,
    progress: DownloadProgress | None,
    chunk_size: int,
    mode: int | None,
) -> Path:
    # Created synchronously: a cancellation between creating the file and learning its name
    # would leak it.
    part = _PartFile.create(dest, mode)
    try:
        async with resource.transport.stream("GET", url, auth=None) as raw:
            # Content-Length counts encoded bytes; with a Content-Encoding aiohttp decodes
            # the body and checks the framing itself.
            encoded = raw.headers.get("Content-Encoding", "identity").lower() != "identity"
            total = None if encoded else raw.content_length
            done = 0
            await _report(progress, done, total)
            async for chunk in raw.content.iter_chunked(chunk_size):
                await asyncio.to_thread(part.handle.write, chunk)
                done += len(chunk)
                if total is not None and done > total:
                    break
                await _report(progress, done, total)
        if total is not None and done != total:
            raise ProtocolError(
                f"download size mismatch: got {done} bytes, Content-Length said {total}",
                method="GET",
                url=redact_url(url),
            )
        await asyncio.to_thread(part.sync)
        part.commit(dest)
    except BaseException:
        part.discard()
        raise
    return dest


register_kind(
    TargetKind.V3_EXPORT, ExportsResource, lambda r, spec: r.target(*project_and_id(spec))
)
