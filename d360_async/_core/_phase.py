"""The lifecycle phase every vendor status is normalised to.

Each API reports progress in its own vocabulary (V3 strings, V2 integers and strings,
SmartDocumentor task and integration codes).  The library maps every one of them onto the
six members of [Phase][d360_async.Phase]; the per-API tables live in `d360_async._status`.

Rules, written once:

* ``PENDING`` and ``RUNNING`` are live; ``SUCCEEDED``, ``FAILED`` and ``CANCELLED`` are terminal.
* ``UNKNOWN`` is what an unrecognised raw status becomes.  It is *not* terminal: the watch
  keeps polling a target whose status it cannot read rather than declaring it finished.
"""

from __future__ import annotations

import enum

__all__ = ["Phase"]


class Phase(enum.Enum):
    """Where a long-running operation is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        """True for SUCCEEDED, FAILED and CANCELLED."""
        return self in _TERMINAL

    def __str__(self) -> str:
        return self.value


_TERMINAL = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED})
