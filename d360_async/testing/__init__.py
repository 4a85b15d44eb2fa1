"""Testing support: a fake Document360 server to run your code against.

[FakeDocument360][d360_async.testing.FakeDocument360] is a real aiohttp server on 127.0.0.1 that
speaks the Document360 V3 and V2 APIs and SmartDocumentor's, with realistic lifecycles, rate limits
and fault injection. See its docstring for the endpoints, the seed kinds and their status sequences.

Added in version 0.1.0.
"""

import warnings
from typing import Any

from d360_async import TargetKind

from ._clock import ManualClock
from ._fake import DEFAULT_PROJECT_ID, FakeDocument360
from ._fake._config import (
    API_ROUTES,
    FAULT_KINDS,
    ROUTES,
    STATUS_ROUTES,
    FakeLifecycle,
    FakeRateLimit,
    FaultKind,
)
from ._fake._faults import FakeFaults, Fault
from ._fake._ops import FakeOperation, Outcome
from ._fake._stats import FakeStats, token_fingerprint

__all__ = [
    "API_ROUTES",
    "DEFAULT_PROJECT_ID",
    "FAULT_KINDS",
    "ROUTES",
    "STATUS_ROUTES",
    "FakeDocument360",
    "FakeFaults",
    "FakeLifecycle",
    "FakeOperation",
    "FakeRateLimit",
    "FakeStats",
    "Fault",
    "FaultKind",
    "ManualClock",
    "Outcome",
    "token_fingerprint",
]


def __getattr__(name: str) -> Any:
    # Deprecated since the fake speaks the library's kinds: the short seed names and their type.
    if name in _DEPRECATED:
        replacement, value = _DEPRECATED[name]
        warnings.warn(
            f"d360_async.testing.{name} is deprecated: use {replacement}",
            DeprecationWarning,
            stacklevel=2,
        )
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_DEPRECATED: dict[str, tuple[str, Any]] = {
    "OperationKind": ("d360_async.TargetKind", TargetKind),
    "OPERATION_KINDS": ("tuple(d360_async.TargetKind)", tuple(TargetKind)),
}
