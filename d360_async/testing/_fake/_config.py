"""Configuration value objects and vocabularies of the fake Document360 server.

Everything here is plain data: the rate-limit behaviour
([FakeRateLimit][d360_async.testing.FakeRateLimit]), the default lifecycle of operations
([FakeLifecycle][d360_async.testing.FakeLifecycle]), the kinds of operations and faults, and the
names of the server's routes (used by stats and by fault targeting).
"""

from __future__ import annotations

import fnmatch
import math
import warnings
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final, Literal, get_args

import attrs

from d360_async import TargetKind

__all__ = [
    "ALGORITHMS",
    "API_ROUTES",
    "DIALECTS",
    "FAULT_KINDS",
    "OPERATION_KINDS",
    "ROUTES",
    "STATUS_ROUTES",
    "Algorithm",
    "Dialect",
    "FakeLifecycle",
    "FakeRateLimit",
    "FaultKind",
    "OperationKind",
    "Range",
    "fake_kind",
    "target_kind",
]

OperationKind = Literal[
    "export",
    "drive_task",
    "import",
    "api_reference",
    "v2_delete",
    "v2_export",
    "v2_import",
    "sd_task",
]
"""The fake's own short name for each [TargetKind][d360_async.TargetKind], kept inside it.

Publicly the fake speaks the library's kinds: `fake_kind` reads them (and, deprecated, these
names); `target_kind` turns a record's name back."""

FaultKind = Literal[
    "http_500",
    "http_503",
    "abort",
    "slow",
    "malformed_json",
    "html_502",
    "truncated",
    "unknown_status",
    "extra_fields",
    "missing_fields",
    "expired_link",
]
"""Faults [FakeFaults][d360_async.testing.FakeFaults] can inject."""

OPERATION_KINDS: Final[tuple[OperationKind, ...]] = get_args(OperationKind)
"""Every short name, in order."""

_SHORT_NAMES: Final[Mapping[TargetKind, OperationKind]] = MappingProxyType(
    {
        TargetKind.V3_EXPORT: "export",
        TargetKind.V3_DRIVE_TASK: "drive_task",
        TargetKind.V3_IMPORT: "import",
        TargetKind.V3_API_REFERENCE: "api_reference",
        TargetKind.V2_DELETE_FILE: "v2_delete",
        TargetKind.V2_EXPORT: "v2_export",
        TargetKind.V2_IMPORT: "v2_import",
        TargetKind.SMARTDOCUMENTOR_TASK: "sd_task",
    }
)
_KINDS: Final[Mapping[str, TargetKind]] = MappingProxyType(
    {short: kind for kind, short in _SHORT_NAMES.items()}
)


def fake_kind(kind: TargetKind | str, *, stacklevel: int = 3) -> OperationKind:
    """The record name for ``kind``: a [TargetKind][d360_async.TargetKind] or its value.

    The short names of earlier versions (``"export"``, ``"sd_task"``...) still work, with a
    `DeprecationWarning`.

    Raises:
        ValueError: ``kind`` names no kind.
    """
    try:
        return _SHORT_NAMES[TargetKind(kind)]
    except ValueError:
        pass
    new = _KINDS.get(kind)
    if new is None:
        raise ValueError(f"unknown kind {kind!r}; kinds are {', '.join(TargetKind)}")
    warnings.warn(
        f"the seed kind {kind!r} is deprecated: use TargetKind.{new.name} ({new.value!r})",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    return _SHORT_NAMES[new]


def target_kind(name: OperationKind) -> TargetKind:
    """The [TargetKind][d360_async.TargetKind] of a record name."""
    return _KINDS[name]


FAULT_KINDS: Final[tuple[FaultKind, ...]] = get_args(FaultKind)
"""Every [FaultKind][d360_async.testing.FaultKind], in order."""

ROUTES: Final[frozenset[str]] = frozenset(
    {
        "v3.drive_task",
        "v3.exports.create",
        "v3.exports.get",
        "v3.imports.create",
        "v3.imports.get",
        "v3.api_references.create",
        "v3.api_references.logs",
        "v3.api_references.log",
        "v2.delete_file_status",
        "v2.exports.get",
        "v2.imports.get",
        "sd.token",
        "sd.status",
        "sd.list",
        "sd.process",
        "sd.restart",
        "download",
    }
)
"""The server's route names: the keys of `FakeStats.by_route` and the targets of faults
(fnmatch patterns such as `"v3.*"` are accepted wherever a route is)."""
API_ROUTES: Final[frozenset[str]] = ROUTES - {"download", "sd.token"}
"""The routes a fault applies to when none are named: every API call, but not the signed
download link (storage, not API) nor the OAuth2 token endpoint (identity, not API)."""
STATUS_ROUTES: Final[frozenset[str]] = frozenset(
    {
        "v3.drive_task",
        "v3.exports.get",
        "v3.imports.get",
        "v3.api_references.logs",
        "v2.delete_file_status",
        "v2.exports.get",
        "v2.imports.get",
        "sd.status",
        "sd.list",
    }
)
"""Routes whose answer carries an operation's status (`unknown_status` faults apply only here)."""

Range = tuple[float, float]
"""A closed interval ``(low, high)`` of seconds; a uniform draw is taken from it."""


def as_range(value: float | tuple[float, float]) -> Range:
    """Normalise a number or a pair into a validated ``(low, high)`` range."""
    if isinstance(value, int | float):
        low = high = float(value)
    else:
        low, high = (float(v) for v in value)
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high < low:
        raise ValueError(f"expected 0 <= low <= high, got {value!r}")
    return (low, high)


def _ratio(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be within [0, 1], got {value!r}")


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive number, got {value!r}")


Algorithm = Literal[
    "fixed_window", "fixed_window_aligned", "sliding_window", "sliding_counter", "token_bucket"
]
"""How [FakeRateLimit][d360_async.testing.FakeRateLimit] counts requests (see its docstring)."""

Dialect = Literal[
    "x-ratelimit", "vendor_page", "remaining_only", "ietf", "gateway", "github", "none"
]
"""Which rate-limit headers [FakeRateLimit][d360_async.testing.FakeRateLimit] sends."""

ALGORITHMS: tuple[str, ...] = (
    "fixed_window",
    "fixed_window_aligned",
    "sliding_window",
    "sliding_counter",
    "token_bucket",
)
DIALECTS: tuple[str, ...] = (
    "x-ratelimit",
    "vendor_page",
    "remaining_only",
    "ietf",
    "gateway",
    "github",
    "none",
)


@attrs.frozen(slots=True)
class FakeRateLimit:
    """How [FakeDocument360][d360_async.testing.FakeDocument360] limits requests and says so.

    The vendor documents 60 (Professional, Business) or 100 (Enterprise, Trial) requests per
    minute, applied per API token per project on V3, but not the policy behind it: its pages
    disagree on whether `X-RateLimit-Reset` is an epoch or a delay and on when `Limit` and
    `Reset` are sent, and a gateway in front may count differently. Every policy and header
    dialect a client may meet can be played here, so a client can be tested against the
    behaviours it does not assume.

    Algorithms (`algorithm`):

    - `"fixed_window"`: a counter of `limit` requests that resets `window` seconds after the
      first request of the window (the window opens with the first request after the previous
      one closed).
    - `"fixed_window_aligned"`: the same counter, on windows aligned to multiples of `window`
      on the server's wall clock (`fake.epoch()`), as many gateways count.
    - `"sliding_window"`: at most `limit` requests in any `window` seconds (a sliding log).
    - `"sliding_counter"`: the approximation many gateways count instead of a log: windows
      aligned to the clock as above, and a request admitted while the current window's count
      plus the previous window's, weighted by the share of the previous window still inside
      the last `window` seconds, stays within `limit`. `Remaining` is `limit` less that
      weighted count, rounded down, so it creeps back as the previous window's weight fades;
      `Reset` is the current window's end.
    - `"token_bucket"`: a bucket of `burst` tokens (default `limit`) refilled continuously at
      `limit / window` tokens per second.

    Header dialects (`dialect`):

    - `"x-ratelimit"` (default): `X-RateLimit-Remaining` on every answer, `X-RateLimit-Limit`
      and `X-RateLimit-Reset` as `send_limit_and_reset` and `reset_format` say (the vendor's
      published spec: always, as an epoch).
    - `"vendor_page"`: the vendor's rate-limit page: `Remaining` on every answer, `Limit` and
      `Reset` (seconds until the reset) only once `Remaining` is 0.
    - `"remaining_only"`: `X-RateLimit-Remaining` and nothing else.
    - `"ietf"`: draft-ietf-httpapi-ratelimit-headers-11 structured fields,
      `RateLimit-Policy: "default";q=<limit>;w=<window>` and
      `RateLimit: "default";r=<remaining>;t=<seconds to reset>`.
    - `"gateway"`: an API gateway's token bucket: `X-RateLimit-Limit` is the bucket size,
      `X-RateLimit-Remaining` the whole tokens left, `X-RateLimit-Reset` the whole seconds until
      the next token (`0` while tokens remain).
    - `"github"`: `X-RateLimit-Limit`, `-Remaining`, `-Used` and `-Reset` (epoch) on every
      answer.
    - `"none"`: no rate-limit header at all (the same as `headers=False`).

    Whatever the dialect, a 429 carries `Retry-After` in whole seconds, rounded up.

    Attributes:
        limit: requests allowed per window (for `"token_bucket"`: tokens refilled per window).
        window: the window length in seconds.
        algorithm: see above.
        burst: the bucket size of `"token_bucket"` (default: `limit`); ignored otherwise.
        reset_format: `X-RateLimit-Reset` of the `"x-ratelimit"` dialect as a UTC `"epoch"` in
            seconds (per the server's possibly skewed clock) or as a `"delay"` in seconds;
            both rounded up.
        send_limit_and_reset: for the `"x-ratelimit"` dialect: `"always"`, or
            `"when_exhausted"` (only once `X-RateLimit-Remaining` is 0).
        headers: `False` sends no rate-limit header at all, whatever the dialect.
        dialect: see above.
        per: `"token_project"` (the vendor's spec: one budget per token per V3 project) or
            `"token"` (one budget per token).

    Added in version 0.1.0; `fixed_window_aligned`, `sliding_window`, `sliding_counter`,
    `burst` and `dialect` in 0.2.0.
    """

    limit: int = attrs.field(default=60)
    window: float = attrs.field(default=60.0, validator=_positive)
    algorithm: Algorithm = attrs.field(
        default="fixed_window", validator=attrs.validators.in_(ALGORITHMS)
    )
    reset_format: Literal["epoch", "delay"] = attrs.field(
        default="epoch", validator=attrs.validators.in_(("epoch", "delay"))
    )
    send_limit_and_reset: Literal["always", "when_exhausted"] = attrs.field(
        default="always", validator=attrs.validators.in_(("always", "when_exhausted"))
    )
    headers: bool = True
    per: Literal["token", "token_project"] = attrs.field(
        default="token_project", validator=attrs.validators.in_(("token", "token_project"))
    )
    burst: int | None = attrs.field(default=None)
    dialect: Dialect = attrs.field(default="x-ratelimit", validator=attrs.validators.in_(DIALECTS))

    @limit.validator
    def _check_limit(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < 1:
            raise ValueError(f"limit must be at least 1, got {value!r}")

    @burst.validator
    def _check_burst(self, attribute: attrs.Attribute[int | None], value: int | None) -> None:
        if value is not None and value < 1:
            raise ValueError(f"burst must be at least 1, got {value!r}")

    @property
    def capacity(self) -> int:
        """The most requests that may pass back to back: `burst` for a bucket, else `limit`."""
        if self.algorithm == "token_bucket" and self.burst is not None:
            return self.burst
        return self.limit

    @property
    def sustained_rate(self) -> float:
        """Requests per second the policy allows in the long run: `limit / window`."""
        return self.limit / self.window


@attrs.frozen(slots=True)
class FakeLifecycle:
    """How long operations stay in each stage, and how they end.

    Every operation is drawn once, at creation, from the server's seeded RNG: it stays pending
    for a uniform draw from ``pending`` seconds, runs for a draw from ``running``, then ends.
    SmartDocumentor tasks that succeed also wait in review for a draw from ``review`` before
    their integration completes.

    Attributes:
        pending: range of seconds spent pending (queued).
        running: range of seconds spent running.
        review: range of seconds a successful SmartDocumentor task waits in review.
        failure_ratio: probability that an operation ends failed.
        stuck_ratio: probability that an operation never leaves the running stage (its
            ``finished_at`` is ``inf``); SmartDocumentor's ``restartprocessing`` unsticks it.

    Added in version 0.1.0.
    """

    pending: Range = attrs.field(default=(0.5, 2.0), converter=as_range)
    running: Range = attrs.field(default=(1.0, 5.0), converter=as_range)
    review: Range = attrs.field(default=(1.0, 3.0), converter=as_range)
    failure_ratio: float = attrs.field(default=0.0, validator=_ratio)
    stuck_ratio: float = attrs.field(default=0.0, validator=_ratio)


def resolve_routes(patterns: str | Iterable[str] | None, default: frozenset[str]) -> frozenset[str]:
    """Expand route names or fnmatch patterns into a set of concrete route names."""
    if patterns is None:
        return default
    if isinstance(patterns, str):
        patterns = (patterns,)
    found: set[str] = set()
    for pattern in patterns:
        matched = {route for route in ROUTES if fnmatch.fnmatchcase(route, pattern)}
        if not matched:
            raise ValueError(f"no route matches {pattern!r}; routes are {sorted(ROUTES)}")
        found |= matched
    return frozenset(found)
