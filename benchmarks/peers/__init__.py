"""Two pollers a user might write without d360-async, to compare the library against.

Both speak raw aiohttp to the V3 status routes, read ``data.status``, honour ``Retry-After``
on a 429, and record the moment (``time.monotonic()``) each operation's terminal status
reached them.  Neither knows anything about durations.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TERMINAL_STATUSES", "PeerResult", "PollJob", "retry_after_seconds", "status_of"]

# DESIGN.md §2: V3 status strings; the last three end an operation.
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Cancelled"})


@dataclass(frozen=True)
class PollJob:
    """One operation to follow: a stable key, its kind, and its absolute status URL."""

    key: str
    kind: str
    url: str


@dataclass
class PeerResult:
    """What a peer saw: when each terminal status arrived, and its request counts."""

    detected_at: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    throttled: int = 0
    errors: int = 0
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float = 0.0


def status_of(body: Any) -> str | None:
    """``data.status`` of a V3 envelope, or ``None`` when the body is not one."""
    if isinstance(body, Mapping):
        data = body.get("data")
        if isinstance(data, Mapping):
            status = data.get("status")
            return str(status) if status is not None else None
    return None


def retry_after_seconds(headers: Mapping[str, str], default: float = 1.0) -> float:
    """``Retry-After`` as seconds (the fake and the vendor send a number)."""
    raw = headers.get("Retry-After")
    if raw is None:
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        return default
