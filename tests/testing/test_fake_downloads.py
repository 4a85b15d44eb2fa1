"""Signed download links: content, expiry, signature checks, and the no-credential record."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from d360_async.testing import DEFAULT_PROJECT_ID, FakeDocument360, ManualClock


async def completed_link(
    fake: FakeDocument360, session: aiohttp.ClientSession, export_id: str
) -> str:
    url = f"{fake.url}/v3/projects/{DEFAULT_PROJECT_ID}/exports/{export_id}"
    async with session.get(url, headers={"Authorization": f"Bearer {fake.api_token}"}) as r:
        link: str = (await r.json())["data"]["download_url"]
    return link


@pytest.fixture
def export_id(fake: FakeDocument360, clock: ManualClock) -> str:
    [op_id] = fake.seed("v3.export", pending=0.0, running=1.0)
    clock.advance(2)
    return op_id


async def test_download_serves_deterministic_bytes_without_credentials(
    fake: FakeDocument360, session: aiohttp.ClientSession, export_id: str
) -> None:
    link = await completed_link(fake, session, export_id)
    async with session.get(link) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/zip"
        assert int(response.headers["Content-Length"]) == fake.download_size
        body = await response.read()
    assert body == fake.download_bytes(export_id)
    assert len(body) == 64 * 1024
    assert fake.stats.downloads == fake.stats.downloads_served == 1
    assert not fake.stats.download_credentials_seen


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer test-api-token"}, {"api_token": "test-v2-token"}],
    ids=["bearer", "api-token"],
)
async def test_download_records_credentials_sent_anyway(
    fake: FakeDocument360,
    session: aiohttp.ClientSession,
    export_id: str,
    headers: dict[str, str],
) -> None:
    link = await completed_link(fake, session, export_id)
    async with session.get(link, headers=headers) as response:
        assert response.status == 200  # storage ignores them, but we noticed
    assert fake.stats.downloads_with_credentials == 1
    assert fake.stats.download_credentials_seen


async def test_link_expires_after_ttl_and_a_fresh_one_is_minted(
    clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    async with FakeDocument360(clock=clock, rate_limit=None, link_ttl=60.0) as fake:
        [op_id] = fake.seed("v3.export", pending=0.0, running=1.0)
        clock.advance(2)
        first = await completed_link(fake, session, op_id)
        expiry = parse_qs(urlsplit(first).query)["se"][0]
        assert expiry.endswith("Z")
        clock.advance(61)
        async with session.get(first) as response:
            assert response.status == 403
            assert response.headers["Content-Type"].startswith("application/xml")
            text = await response.text()
        assert "<Code>AuthenticationFailed</Code>" in text
        assert "expiry" in text
        fresh = await completed_link(fake, session, op_id)
        assert fresh != first
        async with session.get(fresh) as response:
            assert response.status == 200


async def test_tampered_or_missing_signature_is_refused(
    fake: FakeDocument360, session: aiohttp.ClientSession, export_id: str
) -> None:
    link = await completed_link(fake, session, export_id)
    other = fake.seed("v3.export")[0]
    for bad in (
        link.replace("sig=", "sig=x"),
        link.split("&sig=")[0],
        link.replace(export_id, other),  # a signature is bound to its export
    ):
        async with session.get(bad) as response:
            assert response.status == 403
            assert "Signature did not match" in await response.text()


async def test_link_for_unknown_export_is_blob_not_found(
    fake: FakeDocument360, session: aiohttp.ClientSession
) -> None:
    async with session.get(fake.download_url("no-such-export")) as response:
        assert response.status == 404
        assert "<Code>BlobNotFound</Code>" in await response.text()


async def test_expired_link_fault(
    fake: FakeDocument360, session: aiohttp.ClientSession, export_id: str
) -> None:
    fake.faults.next("expired_link")  # applies to downloads by default
    link = fake.download_url(export_id)
    async with session.get(link) as response:
        assert response.status == 403
    async with session.get(link) as response:
        assert response.status == 200
    assert fake.stats.downloads == 2
    assert fake.stats.downloads_served == 1


async def test_truncated_download(
    fake: FakeDocument360, session: aiohttp.ClientSession, export_id: str
) -> None:
    fake.faults.next("truncated", route="download")
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.get(fake.download_url(export_id)) as response:
            await response.read()


async def test_v2_export_links_download_too(
    fake: FakeDocument360, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    [op_id] = fake.seed("v2.export", pending=0.0, running=1.0)
    clock.advance(2)
    url = f"{fake.url}/v2/Project/Export/{op_id}"
    async with session.get(url, headers={"api_token": fake.v2_api_token}) as response:
        link = (await response.json())["download_url"]
    async with session.get(link) as response:
        assert await response.read() == fake.download_bytes(op_id)


async def test_download_size_is_configurable(
    clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    async with FakeDocument360(clock=clock, rate_limit=None, download_size=1000) as fake:
        [op_id] = fake.seed("v3.export", pending=0.0, running=0.0)
        async with session.get(fake.download_url(op_id)) as response:
            assert len(await response.read()) == 1000
