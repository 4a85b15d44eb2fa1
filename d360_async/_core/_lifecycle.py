"""`Lifecycle`: the states of everything that holds resources and is closed once.

A transport (and so every client) is `OPEN` from the start until `CLOSED`; a watch is `NEW`
until it is entered, `OPEN` while its tasks run, then `CLOSED`.  Nothing reopens.
"""

from __future__ import annotations

import enum

__all__ = ["Lifecycle"]


class Lifecycle(enum.Enum):
    """Where an object that owns resources is in its life; it only ever moves forward."""

    NEW = "new"
    """Made, not started yet (a watch before ``async with``)."""
    OPEN = "open"
    """In use: a transport that sends, a watch whose tasks run."""
    CLOSED = "closed"
    """Closed for good: what it owned is released and it cannot be reopened."""
