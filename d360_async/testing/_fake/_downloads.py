"""Export downloads: signed links on this server and the storage service that honours them.

A link is minted afresh on each fetch of a completed export (V3 ``download_url``, V2
``download_url``), valid ``link_ttl`` seconds on the server's wall clock, signed with a key only
this server knows. ``GET /downloads/{export_id}.zip`` needs no credential (the signature is the
credential); a wrong or expired signature answers 403 with the storage service's XML error, as
a blob store does.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import math
from urllib.parse import quote

from aiohttp import web

from ._bodies import iso, storage_error
from ._replies import XML, Reply, Route
from ._state import FakeState

__all__ = ["Downloads"]


class Downloads:
    """Mints and checks signed links, and serves the bytes of an export.

    No ``__slots__``: the secrets tests wrap `mint_link` to collect every link handed out."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [("GET", "/downloads/{name}", "download", "download", self.download)]

    def content(self, export_id: str) -> bytes:
        """The deterministic content served for ``export_id`` (``download_size`` bytes)."""
        block = hashlib.sha256(f"d360-fake-export:{export_id}".encode()).digest()
        size = self.state.download_size
        return (block * (size // len(block) + 1))[:size]

    def mint_link(self, origin: str, export_id: str, now: float, ttl: float | None = None) -> str:
        """A signed link to ``export_id`` on ``origin``, valid ``ttl`` (default ``link_ttl``)."""
        lifetime = self.state.link_ttl if ttl is None else ttl
        expiry = iso(math.floor(self.state.epoch(now) + lifetime))
        signature = self._sign(export_id, expiry)
        return (
            f"{origin}/downloads/{export_id}.zip?sv=2024-08-04&sr=b&sp=r"
            f"&se={quote(expiry, safe='')}&sig={signature}"
        )

    def refused(self, now: float, *, expired: bool) -> Reply:
        """The storage service's 403 for a bad or an expired signature."""
        if expired:
            detail = "Signed expiry time has passed; the link is no longer valid."
        else:
            detail = "Signature did not match the signed resource."
        body = storage_error(
            "AuthenticationFailed",
            "Server failed to authenticate the request.",
            detail,
            self.state.trace_id(),
            self.state.epoch(now),
        )
        return Reply(403, body=body, content_type=XML)

    async def download(self, request: web.Request, now: float) -> Reply:
        state = self.state
        export_id = request.match_info["name"].removesuffix(".zip")
        expiry = request.query.get("se", "")
        signature = request.query.get("sig", "")
        if not hmac.compare_digest(signature.encode(), self._sign(export_id, expiry).encode()):
            return self.refused(now, expired=False)
        try:
            expires = datetime.datetime.fromisoformat(expiry).timestamp()
        except ValueError:
            return self.refused(now, expired=False)
        if state.epoch(now) >= expires:
            return self.refused(now, expired=True)
        op = state.ops.get(export_id)
        if op is None or op.deleted or op.kind not in ("export", "v2_export"):
            body = storage_error(
                "BlobNotFound",
                "The specified blob does not exist.",
                "",
                state.trace_id(),
                state.epoch(now),
            )
            return Reply(404, body=body, content_type=XML)
        return Reply(
            200,
            body=self.content(export_id),
            content_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="export-{export_id}.zip"'},
        )

    def _sign(self, export_id: str, expiry: str) -> str:
        digest = hmac.new(self.state.link_key, f"{export_id}\n{expiry}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
