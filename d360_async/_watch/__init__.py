"""Watching long-running operations: one scheduler, many targets, one async iterator.

``watch(targets)`` returns a [Watch][d360_async.Watch]; ``wait(target)`` returns one target's final
[Transition][d360_async.Transition].  [PollPolicy][d360_async.PollPolicy] sets the pace and the
deadlines.  The decisions live in the pure `_scheduler`; `_watch` only feeds it; `_checkpoint` reads
and writes checkpoints.
"""

from ._checkpoint import (
    CHECKPOINT_VERSION,
    CheckpointEntry,
    dump_checkpoint,
    load_checkpoint,
    open_checkpoint,
    read_entries,
    seal_checkpoint,
    write_checkpoint_file,
)
from ._policy import PollPolicy
from ._scheduler import DurationModel, DurationModels, Eta, PollOutcome, Scheduler, TargetState
from ._watch import (
    DEFAULT_POLICY,
    Clock,
    Outage,
    Priors,
    SystemClock,
    TargetFinished,
    Transition,
    TransitionKind,
    Watch,
    WatchStats,
    load_priors,
    wait,
    watch,
)

__all__ = [
    "CHECKPOINT_VERSION",
    "DEFAULT_POLICY",
    "CheckpointEntry",
    "Clock",
    "DurationModel",
    "DurationModels",
    "Eta",
    "Outage",
    "PollOutcome",
    "PollPolicy",
    "Priors",
    "Scheduler",
    "SystemClock",
    "TargetFinished",
    "TargetState",
    "Transition",
    "TransitionKind",
    "Watch",
    "WatchStats",
    "dump_checkpoint",
    "load_checkpoint",
    "load_priors",
    "open_checkpoint",
    "read_entries",
    "seal_checkpoint",
    "wait",
    "watch",
    "write_checkpoint_file",
]
