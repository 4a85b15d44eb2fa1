"""``client.exports`` against the fake server: create, get, target, and the download rules."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

from d360_async import ExportNotReady, TargetKind
from d360_async._core._errors import (
    DownloadLinkExpired,
    NotFound,
    ProtocolError,
)
from d360_async._core._models import Export, ExportStarted
from d360_async._core._phase import Phase
from d360_async._core._ratelimit._protocol import Priority
from d360_async._resources import ExportsResource
from d360_async._resources._resource_target import target_from_spec
from d360_async.testing import FakeDocument360, ManualClock

from .conftest import RecordingLimiter

WORKSPACE = "5c6d7e8f-9a0b-1c2d-3e4f-5a6b7c8d9e0f"


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


async def test_create_returns_the_202_handle(api: SimpleNamespace, fake: FakeDocument360) -> None:
    started = await api.exports.create(
        fake.project_id, workspace_id=WORKSPACE, format="pdf", lang_code="en"
    )
    assert isinstance(started, ExportStarted)
    assert isinstance(started.id, uuid.UUID)
    assert started.project_id == fake.project_id
    assert started.status == "Pending"
    assert started.operation_location is not None
    assert started.operation_location.endswith(f"/exports/{started.id}")
    operation = fake.operation(str(started.id))
    assert operation.kind is TargetKind.V3_EXPORT


async def test_create_validates_locally(api: SimpleNamespace, fake: FakeDocument360) -> None:
    with pytest.raises(ValueError, match="format"):
        await api.exports.create(fake.project_id, workspace_id=WORKSPACE, format="")
    with pytest.raises(ValueError, match="workspace_id"):
        await api.exports.create(fake.project_id, workspace_id="../x", format="pdf")
    with pytest.raises(ValueError, match="project_id"):
        await api.exports.create("not-a-uuid", workspace_id=WORKSPACE, format="pdf")
    assert fake.stats.requests == 0


async def test_get_follows_the_lifecycle(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock
) -> None:
    [export_id] = fake.seed("v3.export", 1, pending=1.0, running=5.0)
    export = await api.exports.get(fake.project_id, export_id)
    assert export == Export(id=uuid.UUID(export_id), status="Pending")
    clock.advance(2.0)
    assert (await api.exports.get(fake.project_id, export_id)).status == "InProgress"
    clock.advance(10.0)
    done = await api.exports.get(uuid.UUID(fake.project_id), uuid.UUID(export_id))
    assert done.status == "Completed"
    assert done.download_url is not None
    assert done.completed_at is not None
    assert done.completed_at.tzinfo is not None
    signature = parse_qs(urlsplit(done.download_url).query)["sig"][0]
    assert signature not in repr(done)


async def test_get_unknown_export_is_not_found(api: SimpleNamespace, fake: FakeDocument360) -> None:
    with pytest.raises(NotFound) as caught:
        await api.exports.get(fake.project_id, uuid.uuid4())
    assert caught.value.trace_id


@pytest.mark.parametrize(
    "export_id",
    ["../../drive/tasks/x", "a%2Fb", "f1a2b3c4-d5e6-7f89-0a1b-2c3d4e5f6a7b/../x", "x?y", ""],
    ids=["dot-dot", "encoded-slash", "uuid-then-traversal", "query", "empty"],
)
async def test_malformed_ids_send_nothing(
    api: SimpleNamespace, fake: FakeDocument360, export_id: str
) -> None:
    with pytest.raises(ValueError, match="export_id"):
        await api.exports.get(fake.project_id, export_id)
    with pytest.raises(ValueError, match="export_id"):
        api.exports.target(fake.project_id, export_id)
    assert fake.stats.requests == 0


async def test_target_polls_at_poll_priority(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock, limiter: RecordingLimiter
) -> None:
    [export_id] = fake.seed("v3.export", 1, pending=1.0, running=5.0)
    target = api.exports.target(fake.project_id, export_id)
    assert target.kind == "v3.export"
    assert target.key == f"v3.export/{fake.project_id}/{export_id}"
    assert target.rate_key.project_id == fake.project_id
    assert target.limiter is limiter
    phases = []
    for step in (0.0, 2.0, 10.0):
        clock.advance(step)
        observed = await target.poll()
        phases.append(observed.phase)
        assert isinstance(observed.snapshot, Export)
        assert observed.raw_status == observed.snapshot.status
    assert phases == [Phase.PENDING, Phase.RUNNING, Phase.SUCCEEDED]
    assert {priority for _, priority in limiter.acquired} == {Priority.POLL}


async def test_target_uses_a_held_ticket(
    api: SimpleNamespace, fake: FakeDocument360, limiter: RecordingLimiter
) -> None:
    [export_id] = fake.seed("v3.export", 1)
    target = api.exports.target(fake.project_id, export_id)
    ticket = await limiter.acquire(target.rate_key, priority=Priority.POLL)
    limiter.acquired.clear()
    await target.poll(ticket=ticket)
    assert limiter.acquired == []  # admitted already: not acquired again
    assert [t for t, _ in limiter.completed] == [ticket]


async def test_target_spec_round_trip(api: SimpleNamespace, fake: FakeDocument360) -> None:
    [export_id] = fake.seed("v3.export", 1)
    target = api.exports.target(fake.project_id, export_id)
    spec = target.to_spec()
    assert spec == {"kind": "v3.export", "project_id": fake.project_id, "id": export_id}
    rebuilt = target_from_spec(api, spec)
    assert rebuilt.key == target.key
    assert (await rebuilt.poll()).phase is Phase.PENDING


# --- download -----------------------------------------------------------------------------------


async def _completed_export(fake: FakeDocument360, clock: ManualClock) -> str:
    [export_id] = fake.seed("v3.export", 1, pending=0.0, running=1.0)
    clock.advance(5.0)
    return export_id


async def test_download_writes_the_file(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock, tmp_path: Path
) -> None:
    export_id = await _completed_export(fake, clock)
    seen: list[tuple[int, int | None]] = []
    dest = tmp_path / "export.zip"
    written = await api.exports.download(
        fake.project_id,
        export_id,
        dest,
        progress=lambda done, total: seen.append((done, total)),
        chunk_size=4096,
    )
    assert written == dest
    assert dest.read_bytes() == fake.download_bytes(export_id)
    size = fake.download_size
    assert seen[0] == (0, size)
    assert seen[-1] == (size, size)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert fake.stats.downloads_served == 1
    assert not fake.stats.download_credentials_seen
    assert _leftovers(tmp_path) == []


async def test_download_into_a_directory_uses_the_link_name(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock, tmp_path: Path
) -> None:
    export_id = await _completed_export(fake, clock)
    written = await api.exports.download(fake.project_id, export_id, tmp_path)
    assert written == tmp_path / f"{export_id}.zip"
    assert written.read_bytes() == fake.download_bytes(export_id)


async def test_download_accepts_an_async_progress(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock, tmp_path: Path
) -> None:
    export_id = await _completed_export(fake, clock)
    calls = 0

    async def progress(done: int, total: int | None) -> None:
        nonlocal calls
        calls += 1

    await api.exports.download(fake.project_id, export_id, tmp_path / "f.zip", progress=progress)
    assert calls >= 2


async def test_download_refuses_an_unfinished_export(
    api: SimpleNamespace, fake: FakeDocument360, tmp_path: Path
) -> None:
    [export_id] = fake.seed("v3.export", 1, pending=10.0)
    with pytest.raises(ExportNotReady, match="Pending") as caught:
        await api.exports.download(fake.project_id, export_id, tmp_path / "f.zip")
    assert caught.value.export.status == "Pending"
    assert fake.stats.downloads == 0
    assert _files(tmp_path) == []


async def test_download_refuses_a_failed_export(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock, tmp_path: Path
) -> None:
    [export_id] = fake.seed("v3.export", 1, pending=0.0, running=1.0, failure_ratio=1.0)
    clock.advance(5.0)
    with pytest.raises(ExportNotReady, match="Failed"):
        await api.exports.download(fake.project_id, export_id, tmp_path / "f.zip")
    assert fake.stats.downloads == 0


async def test_expired_link_is_refreshed_once(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock, tmp_path: Path
) -> None:
    export_id = await _completed_export(fake, clock)
    fake.faults.next("expired_link", count=1)
    dest = tmp_path / "f.zip"
    await api.exports.download(fake.project_id, export_id, dest)
    assert dest.read_bytes() == fake.download_bytes(export_id)
    assert fake.stats.downloads == 2
    assert fake.stats.by_route["v3.exports.get"] == 2  # the first read, and one for a new link
    assert not fake.stats.download_credentials_seen


async def test_link_expired_by_time_is_refreshed(
    api: SimpleNamespace,
    fake: FakeDocument360,
    clock: ManualClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    export_id = await _completed_export(fake, clock)
    real_get = ExportsResource.get
    calls = 0

    async def slow_get(self: ExportsResource, project_id: str, ident: str) -> Export:
        nonlocal calls
        export = await real_get(self, project_id, ident)
        calls += 1
        if calls == 1:
            clock.advance(fake.link_ttl + 1)  # the link expires before it is used
        return export

    monkeypatch.setattr(ExportsResource, "get", slow_get)
    await api.exports.download(fake.project_id, export_id, tmp_path / "f.zip")
    assert calls == 2
    assert fake.stats.by_route_status["download", 403] == 1
    assert fake.stats.downloads_served == 1


async def test_link_refused_twice_raises_and_leaves_nothing(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock, tmp_path: Path
) -> None:
    export_id = await _completed_export(fake, clock)
    fake.faults.next("expired_link", count=2)
    dest = tmp_path / "f.zip"
    with pytest.raises(DownloadLinkExpired) as caught:
        await api.exports.download(fake.project_id, export_id, dest)
    assert caught.value.status == 403
    assert "sig=" not in str(caught.value) or "sig=REDACTED" in str(caught.value)
    assert fake.stats.downloads == 2  # retried exactly once
    assert _files(tmp_path) == []


@pytest.mark.parametrize("fault", ["truncated", "abort"])
async def test_broken_transfer_leaves_no_file(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock, tmp_path: Path, fault: str
) -> None:
    export_id = await _completed_export(fake, clock)
    dest = tmp_path / "f.zip"
    dest.write_bytes(b"previous version")
    # Two in a row: aiohttp itself re-sends once when a reused connection drops.
    fake.faults.next(fault, count=2, route="download")  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        await api.exports.download(fake.project_id, export_id, dest)
    assert dest.read_bytes() == b"previous version"  # untouched: the rename never happened
    assert _leftovers(tmp_path) == []


async def test_failing_progress_callback_leaves_no_file(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock, tmp_path: Path
) -> None:
    export_id = await _completed_export(fake, clock)

    def progress(done: int, total: int | None) -> None:
        if done > 0:
            raise RuntimeError("disk quota")

    with pytest.raises(RuntimeError, match="disk quota"):
        await api.exports.download(
            fake.project_id, export_id, tmp_path / "f.zip", progress=progress, chunk_size=1024
        )
    assert _files(tmp_path) == []


async def test_cancelled_download_leaves_no_file(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock, tmp_path: Path
) -> None:
    export_id = await _completed_export(fake, clock)
    started = asyncio.Event()
    never = asyncio.Event()

    async def progress(done: int, total: int | None) -> None:
        if done > 0:
            started.set()
            await never.wait()

    task = asyncio.create_task(
        api.exports.download(
            fake.project_id, export_id, tmp_path / "f.zip", progress=progress, chunk_size=1024
        )
    )
    await started.wait()
    assert _leftovers(tmp_path)  # mid-transfer, the temporary file exists
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _files(tmp_path) == []


async def test_content_length_mismatch_is_a_protocol_error(
    api: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that promises more bytes than it sends (raw socket: aiohttp would not)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n")
        writer.write(b"x" * 40)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = f"http://127.0.0.1:{port}/f.zip?sv=1&sig=SECRETSIG"

    async def get(self: ExportsResource, project_id: str, export_id: str) -> Export:
        return Export(id=export_id, status="Completed", download_url=link)

    monkeypatch.setattr(ExportsResource, "get", get)
    try:
        with pytest.raises(ProtocolError) as caught:
            await api.exports.download(
                "9a3b4c5d-6e7f-8a9b-0c1d-2e3f4a5b6c7d", str(uuid.uuid4()), tmp_path / "f.zip"
            )
    finally:
        server.close()
        await server.wait_closed()
    assert "SECRETSIG" not in str(caught.value)
    assert _files(tmp_path) == []


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
async def test_download_honours_the_umask(
    api: SimpleNamespace,
    fake: FakeDocument360,
    clock: ManualClock,
    tmp_path: Path,
    mask: int,
    expected: int,
) -> None:
    export_id = await _completed_export(fake, clock)
    dest = tmp_path / "export.zip"
    with _umask(mask):
        await api.exports.download(fake.project_id, export_id, dest)
    assert stat.S_IMODE(dest.stat().st_mode) == expected
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
async def test_download_applies_a_mode_asked_for_whatever_the_umask(
    api: SimpleNamespace, fake: FakeDocument360, clock: ManualClock, tmp_path: Path, mode: int
) -> None:
    export_id = await _completed_export(fake, clock)
    dest = tmp_path / "export.zip"
    with _umask(0o077):
        await api.exports.download(fake.project_id, export_id, dest, mode=mode)
    assert stat.S_IMODE(dest.stat().st_mode) == mode
    assert dest.read_bytes() == fake.download_bytes(export_id)


@pytest.mark.parametrize("mode", [-1, 0o10000, 1.5, True, "644"])
async def test_download_refuses_a_bad_mode_before_any_request(
    api: SimpleNamespace, fake: FakeDocument360, tmp_path: Path, mode: object
) -> None:
    with pytest.raises(ValueError, match="mode"):
        await api.exports.download(
            fake.project_id,
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            tmp_path / "x.zip",
            mode=mode,  # type: ignore[arg-type]
        )
    assert fake.stats.requests == 0
