"""What the fake server saw: counters users assert on in their tests and benchmarks."""

from __future__ import annotations

import hashlib
import math
from collections import Counter

import attrs

__all__ = ["FakeStats", "token_fingerprint"]


def token_fingerprint(token: str) -> str:
    """A short, stable, non-reversible label for a credential (never the credential itself)."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


@attrs.define(slots=True, eq=False)
class FakeStats:
    """Counters kept by [FakeDocument360][d360_async.testing.FakeDocument360]; reset with
    ``fake.reset_stats()``.

    Times are readings of the server's injected clock. Credentials are never stored: requests
    per credential are keyed by [token_fingerprint][d360_async.testing.token_fingerprint] (use
    [requests_for_token][d360_async.testing.FakeStats.requests_for_token]).

    Attributes:
        requests: every request received, on every route.
        by_route: requests per route name (see ``ROUTES``).
        by_status: responses per HTTP status; ``0`` counts connections dropped by an
            ``abort`` fault (no response at all).
        by_route_status: responses per ``(route, status)``.
        by_token: requests per credential fingerprint (V3 bearer, V2 ``api_token`` or
            SmartDocumentor bearer), including rejected ones; ``"-"`` when none was sent.
        rate_limited: number of 429 responses.
        auth_failures: number of 401 responses.
        faults: injected faults per fault kind.
        token_requests: calls to the SmartDocumentor token endpoint (``/connect/token``).
        tokens_issued: access tokens the token endpoint issued.
        downloads: requests to signed download links.
        downloads_served: download requests answered with the file (200).
        downloads_with_credentials: download requests that carried an ``Authorization`` or
            ``api_token`` header (a signed link must be fetched without them).
        trace_context: requests that carried a W3C ``traceparent`` header, per
            ``(route, trace id)``, to check that trace context is propagated (and where not).
        request_times: arrival time of every request, in order (not kept when the server
            was built with ``record_times=False``).
        admitted_times: time of every request that spent rate-limit budget (budget use;
            likewise).
    """

    requests: int = 0
    by_route: Counter[str] = attrs.field(factory=Counter)
    by_status: Counter[int] = attrs.field(factory=Counter)
    by_route_status: Counter[tuple[str, int]] = attrs.field(factory=Counter)
    by_token: Counter[str] = attrs.field(factory=Counter)
    rate_limited: int = 0
    auth_failures: int = 0
    faults: Counter[str] = attrs.field(factory=Counter)
    token_requests: int = 0
    tokens_issued: int = 0
    downloads: int = 0
    downloads_served: int = 0
    downloads_with_credentials: int = 0
    trace_context: Counter[tuple[str, str]] = attrs.field(factory=Counter)
    request_times: list[float] = attrs.field(factory=list, repr=False)
    admitted_times: list[float] = attrs.field(factory=list, repr=False)

    def reset(self) -> None:
        """Zero every counter in place (references to this object stay valid)."""
        fresh = FakeStats()
        for field in attrs.fields(FakeStats):
            setattr(self, field.name, getattr(fresh, field.name))

    @property
    def download_credentials_seen(self) -> bool:
        """True if any download request carried ``Authorization`` or ``api_token``."""
        return self.downloads_with_credentials > 0

    def requests_for_token(self, token: str) -> int:
        """How many requests presented ``token``."""
        return self.by_token[token_fingerprint(token)]

    def histogram(self, bucket: float = 1.0, *, admitted_only: bool = False) -> dict[float, int]:
        """Requests per time bucket: ``{bucket_start: count}`` in time order.

        Args:
            bucket: bucket width in seconds of the server clock.
            admitted_only: count only requests that spent rate-limit budget.
        """
        if bucket <= 0:
            raise ValueError("bucket must be positive")
        times = self.admitted_times if admitted_only else self.request_times
        counts: Counter[float] = Counter(math.floor(t / bucket) * bucket for t in times)
        return dict(sorted(counts.items()))
