"""Layer 4, the watch engine: many targets, one scheduler, one async iterator.

``watch(targets)`` returns a [Watch][d360_async.Watch]; ``wait(target)`` returns one target's final
[Transition][d360_async.Transition].  [PollPolicy][d360_async.PollPolicy] sets the pace and the
deadlines.  The decisions live in the pure `d360_async._core._watch` (scheduler, models, values,
checkpoint format); `_watch` only feeds it answers, owns the tasks and the clock, and writes
checkpoint files.

What it may import: `d360_async._resources`, `d360_async._transport`, `d360_async._core`,
anyio. Never the limiters' implementations (it talks to the `RateLimiter` protocol) or the
clients.
"""

from d360_async._core._watch._checkpoint import (
    CHECKPOINT_VERSION,
    CheckpointEntry,
    dump_checkpoint,
    load_checkpoint,
    open_checkpoint,
    read_entries,
    seal_checkpoint,
    write_checkpoint_file,
)
from d360_async._core._watch._policy import PollPolicy
from d360_async._core._watch._scheduler import (
    DurationModel,
    DurationModels,
    Eta,
    PollOutcome,
    Scheduler,
    TargetState,
)
from d360_async._watch._hub import HubStats, ObservationHub
from d360_async._watch._observe import PollRegistry
from d360_async._watch._watch import (
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
    "HubStats",
    "ObservationHub",
    "Outage",
    "PollOutcome",
    "PollPolicy",
    "PollRegistry",
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
