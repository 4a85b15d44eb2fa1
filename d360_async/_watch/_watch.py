"""The watch: many targets, one scheduler, one async iterator of [Transition][d360_async.Transition]
objects.

Shape of the machinery, all inside the task group that ``async with watch(...)`` owns:

```text
one runner per rate-limit group ──► (slot) ──► acquire(POLL) ──► scheduler.select()
        ▲                                                           │
        │ wake when something is due sooner                         ▼
scheduler.release() ◄── scheduler.observe() ◄── target.poll(ticket=...)   (≤ max_concurrency)
                              │
                              ▼
         bounded memory stream ──► Watch.__anext__ ──► the consumer
one timer: per-target and whole-watch deadlines ──┘
```

Decisions, written once:

* **One scheduler** (`_scheduler`, pure) decides for every target; the tasks are one
  runner per rate-limit group (a limiter and a rate key, not per target), one timer, and at most
  ``max_concurrency`` short-lived poll tasks.  A sleeping target costs a heap entry, not a task.
* **A ticket is always spent.**  A group's runner waits until one of its targets is due and a
  concurrency slot is free, *then* acquires a ``Priority.POLL`` ticket (holding no slot while the
  limiter makes it wait, so a starved budget cannot block other groups), takes the slot, and
  only then asks the scheduler which due target gets the ticket, so the choice uses the freshest
  information.  The ticket goes to
  ``target.poll(ticket=...)``; the transport completes it, the watch never does.  The one
  exception: if every target of the group vanished while the ticket was awaited (removed, timed
  out), the watch completes the unspent ticket with ``status=None`` (the limiter then counts it
  as possibly sent: conservative, and rare).
* **Backpressure.**  Transitions go through a bounded memory object stream.  A poll task that
  cannot hand its transition over keeps its concurrency slot and its target stays in flight, so a
  slow consumer slows polling and memory stays flat.
* **Order.**  A target has at most one poll in flight and is queued again only after that
  poll's transitions were handed over, so its transitions arrive in the order observed.  A
  deadline that passes during a poll cancels the poll and the poll task reports the time-out
  itself, after anything it already handed over.
* **Delivered means received by the consumer.**  Checkpoints record what ``__anext__`` returned,
  never what is still buffered, so resuming repeats nothing and loses nothing.
* **Errors end one target.**  Transient failures (transport errors, 5xx, 429, and a 404 on a
  target not yet seen within ``not_found_grace``) are retried with backoff until the deadline;
  a 2xx whose body could not be read ([MalformedResponse][d360_async.MalformedResponse] with a 2xx
  ``status``: cut short, garbled, a proxy's page) is retried too, but ends the target once
  `MALFORMED_STREAK` polls in a row have failed, since the same unreadable answer poll
  after poll means the API changed; anything else ends the target with an ``ERROR``
  transition.  A non-library exception (a bug in a target) is logged and reported the same
  way, wrapped in [WatchError][d360_async.WatchError] with the original as ``__cause__``; the
  other targets go on.
* **A hung poll costs its target alone.**  A poll running longer than
  ``PollPolicy.poll_timeout`` is cancelled by the timer (on the watch clock) and is a transient
  [TimeoutError][d360_async.TimeoutError] of that target, which backs off on its own; a ticket
  the transport did not settle is completed with ``status=None``.  While a runner waits for a
  concurrency slot, polls running longer than ``slow_poll`` give theirs back and go on outside
  the count (at most ``max_concurrency`` of them; beyond, the oldest is cut short).
* **Outages are one event, not thousands of failures.**  ``outage_after`` polls of one group
  in a row failing to connect open its circuit: the runner stops selecting due targets and
  sends one probe (to whichever target the scheduler picks) every ``outage_probe_interval``.
  Any answer from the server closes it, and the targets that failed meanwhile are made due at
  once (``Scheduler.reschedule``).  Each outage is logged once each way and kept in
  [Watch.outages][d360_async.Watch.outages].
* **One poll per operation.**  With a client's poll registry
  (``shared=``), a target that other watches include too is polled by one of them (the most
  demanding policy); the others park it in their scheduler and are handed what the owner's
  poll saw through their inbox task, in order, never blocking the owner.  An order to poll it
  again (the owner let it go) goes through the same inbox, after what came before it.
* **Leaving the ``async with``** (normally, by ``break``, an exception or cancellation) cancels
  the task group: every poll in flight is cancelled at once and no task outlives the block.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Generic, TypedDict, TypeVar, Unpack

import anyio
import anyio.lowlevel
import anyio.to_thread
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from d360_async._clock import Clock, SystemClock, as_clock, utc_datetime
from d360_async._core._config import Hooks, notify
from d360_async._core._errors import (
    CheckpointError,
    ConnectError,
    CredentialsUnavailable,
    D360Error,
    MalformedResponse,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
    WatchError,
)
from d360_async._core._errors import TimeoutError as PollTimeout
from d360_async._core._lifecycle import Lifecycle
from d360_async._core._phase import Phase
from d360_async._core._ratelimit._protocol import Priority, RateLimiter, RateLimitKey, Ticket
from d360_async._core._redact import library_logger
from d360_async._core._status import RawStatus
from d360_async._core._target_protocol import Observation, Target
from d360_async._core._watch._checkpoint import (
    CheckpointEntry,
    dump_checkpoint,
    load_checkpoint,
    open_checkpoint,
    write_checkpoint_file,
)
from d360_async._core._watch._policy import PollPolicy
from d360_async._core._watch._scheduler import DurationModels, Eta, Scheduler, TargetState
from d360_async._core._watch._sharing import Demand, Topic, demand
from d360_async._core._watch._values import (
    Outage,
    TargetFinished,
    Transition,
    TransitionKind,
    WatchStats,
)
from d360_async._watch._observe import PollRegistry

__all__ = [
    "ADMIT_CHUNK",
    "DEFAULT_POLICY",
    "MALFORMED_STREAK",
    "PREWAIT_CAP",
    "Clock",
    "Outage",
    "Priors",
    "SystemClock",
    "TargetFinished",
    "Transition",
    "TransitionKind",
    "Watch",
    "WatchStats",
    "load_priors",
    "wait",
    "watch",
]

logger = library_logger("d360_async.watch")

S = TypeVar("S")

DEFAULT_POLICY: Final = PollPolicy()
"""The policy used when none is given."""

_RETRYABLE: Final = (TransportError, ServerError, RateLimited, CredentialsUnavailable)

MALFORMED_STREAK: Final = 5
"""Failed polls in a row after which an unreadable 2xx answer ends a target.

The transport already retries such an answer, but only while its retry quota lasts; under a
sustained share of garbled answers the quota runs dry and a single bad body would otherwise
end an operation that is doing fine."""

ADMIT_CHUNK: Final = 256
"""Targets admitted between two yields to the event loop when a watch starts."""

PREWAIT_CAP: Final = 0.1
"""Longest a runner waits on the limiter's ``next_available`` estimate before it asks the
limiter for a ticket (which then waits exactly as long as the budget needs, and is woken
when an answer shows more). Short: at the start of a watch the estimate is the configured
prior's pace (a second at 60 a minute), and the first answer may show far more."""

Priors = str | bytes | Mapping[str, Any] | DurationModels
"""What ``priors=`` accepts: a [Watch.checkpoint][d360_async.Watch.checkpoint] string (or the
JSON of [Watch.priors][d360_async.Watch.priors] or
[Client.priors][d360_async.Client.priors]), that JSON parsed, or the learned models of a
live client ([Client.durations][d360_async.Client.durations])."""


def checkpoint_priors(text: str | bytes) -> Mapping[str, Any] | None:
    """The learned durations in a sealed checkpoint's ``priors`` field, or a bare priors
    document (the JSON of [Watch.priors][d360_async.Watch.priors]); None when a checkpoint
    has none.  The caller validates what it gets.

    Raises:
        CheckpointError: a damaged checkpoint (see ``open_checkpoint``).
        ValueError: JSON that is not a priors document.
    """
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    if raw.lstrip().startswith("{"):
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"priors are not valid JSON: {exc}") from exc
        if not isinstance(document, dict) or "models" not in document:
            raise ValueError("not a priors document (no 'models')")
        return document
    found = open_checkpoint(text).get("priors")
    if found is not None and not isinstance(found, dict):
        raise ValueError("checkpoint 'priors' must be an object")
    return found


def load_priors(priors: Priors) -> Mapping[str, Any]:
    """The durations data in ``priors`` (see [Priors][d360_async.Priors]), checked.

    Raises:
        ValueError: not a checkpoint or priors document, or malformed.
    """
    if isinstance(priors, DurationModels):
        return priors.export()
    if isinstance(priors, str | bytes):
        found = checkpoint_priors(priors)
        if found is None:
            raise ValueError("the checkpoint holds no priors")
        priors = found
    DurationModels().absorb(priors)  # validates
    return priors


# -- the watch's own plumbing --------------------------------------------------------------------


# -- internals ------------------------------------------------------------------------------------


class _Sleeper:
    """A task that sleeps until a time and can be woken earlier by cancelling its sleep."""

    __slots__ = ("sleep_scope", "wake_at")

    def __init__(self) -> None:
        self.sleep_scope: anyio.CancelScope | None = None
        self.wake_at = math.inf


class _Group(_Sleeper):
    """One rate-limit budget: a limiter and one of its keys, served by one runner task.

    It also holds the key's circuit breaker: ``refused`` counts polls in a row that could not
    connect; past ``PollPolicy.outage_after`` the circuit is ``open`` and only one probe at a
    time (``probing``) is sent, no sooner than ``probe_at``.
    """

    __slots__ = ("key", "limiter", "outage", "probe_at", "probing", "rate_key", "refused")

    def __init__(self, key: tuple[int, RateLimitKey], limiter: RateLimiter, rate_key: RateLimitKey):
        super().__init__()
        self.key = key
        self.limiter = limiter  # held so that id(limiter) in the key stays unique
        self.rate_key = rate_key
        self.refused = 0
        self.outage: int | None = None  # index in Watch._outages while the circuit is open
        self.probe_at = math.inf
        self.probing = False

    @property
    def open(self) -> bool:
        return self.outage is not None


class _Entry(Generic[S]):
    """The watch's record of one target: the scheduler state plus what was delivered."""

    __slots__ = (
        "accounted",
        "cut",
        "delivered_phase",
        "delivered_raw",
        "detached",
        "final_delivered",
        "first_seen",
        "group",
        "limit",
        "pending",
        "probe",
        "removed",
        "scope",
        "slot_held",
        "snapshot",
        "started",
        "state",
        "sub",
        "target",
    )

    def __init__(self, target: Target[S], state: TargetState, group: _Group) -> None:
        self.target = target
        self.state = state
        self.group = group
        self.snapshot: S | None = None
        self.scope: anyio.CancelScope | None = None  # set while a poll is running
        self.delivered_raw: RawStatus | None = None
        self.delivered_phase: Phase | None = None
        self.final_delivered = False
        self.accounted = False  # its final transition was handed over (or it was removed)
        self.removed = False
        self.first_seen: datetime | None = None  # for hooks: its first CHANGED transition
        # While a poll runs: its timeout scope, when it started (watch clock), whether it
        # holds a concurrency slot or gave it back for being slow, and whether it is a probe.
        self.limit: anyio.CancelScope | None = None
        self.started = 0.0
        self.slot_held = False
        self.detached = False
        self.cut = False  # the timer cancelled it (poll timeout)
        self.probe = False
        # Shared polls: its subscription to the client's registry, and the last thing queued
        # for it by another poller that the watch has not handled yet.
        self.sub: _Subscription | None = None
        self.pending: _Delivery | None = None


class _Delivery:
    """Something a poll made elsewhere saw, queued for one entry (or, with ``promote``, the
    order to poll the target again).  Consecutive equal observations are folded into one."""

    __slots__ = ("at", "entry", "failure", "observation", "polls", "promote")

    def __init__(
        self,
        entry: _Entry[Any],
        observation: Observation[Any] | None,
        failure: Exception | None,
        at: float,
        *,
        promote: bool = False,
    ) -> None:
        self.entry = entry
        self.observation = observation
        self.failure = failure
        self.at = at
        self.polls = 0 if promote else 1
        self.promote = promote

    def absorb(
        self, observation: Observation[Any] | None, failure: Exception | None, at: float
    ) -> bool:
        """Fold a newer result into this one if it tells nothing new (same status, or a
        failure after a failure); False when it must be queued on its own."""
        if self.promote:
            return False
        mine, theirs = self.observation, observation
        if mine is not None and theirs is not None:
            if (mine.phase, mine.raw_status) != (theirs.phase, theirs.raw_status):
                return False
        elif not (mine is None and theirs is None):
            return False
        self.observation, self.failure, self.at = observation, failure, at
        self.polls += 1
        return True


class _Subscription:
    """One entry's subscription to its client's poll registry."""

    __slots__ = ("entry", "rank", "topic", "watch")

    def __init__(self, watch: Watch[Any], entry: _Entry[Any]) -> None:
        self.watch = watch
        self.entry = entry
        self.topic: Topic = (entry.target.kind, entry.target.key)
        self.rank: Demand = demand(entry.state.policy)

    def __repr__(self) -> str:
        return f"<_Subscription {self.topic[1]} parked={self.entry.state.parked}>"

    def park(self) -> None:
        self.watch._sched.park(self.entry.state)

    def promote(self) -> None:
        self.watch._enqueue(self.entry, None, None, promote=True)

    def deliver(self, observation: Observation[Any] | None, failure: Exception | None) -> None:
        self.watch._enqueue(self.entry, observation, failure)


_Item = tuple[_Entry[S], Transition[S]] | None  # None: "re-check whether the watch is over"

_NEW, _RUNNING, _CLOSED = Lifecycle.NEW, Lifecycle.OPEN, Lifecycle.CLOSED


class Watch(Generic[S]):
    """Many targets, one scheduler, one async iterator of [Transition][d360_async.Transition]
    objects.

    Build one with `watch` (or ``client.watch(...)``), then:

    ```python
    async with watch(targets) as w:
        async for transition in w:
            ...
    ```

    The iterator ends when no target is left (each reached a terminal phase, ended on an
    error, timed out, was stopped by ``until=`` or removed), unless ``keep_open=True``; it also
    ends after the whole-watch deadline.  Leaving the block stops every poll at once.

    A target is identified by its ``key``: [add][d360_async.Watch.add] of a key already in the watch
    (live or finished) does nothing and returns False, so re-adding the same operation is harmless.
    Finished targets stay in the watch's table (so checkpoints list them as done) until
    [remove][d360_async.Watch.remove]; a long-running service that adds work continually should
    remove targets it has finished with.
    """

    def __init__(
        self,
        targets: Iterable[Target[S]] = (),
        *,
        policy: PollPolicy = DEFAULT_POLICY,
        max_concurrency: int = 16,
        keep_open: bool = False,
        resume: str | bytes | None = None,
        buffer: int = 64,
        clock: Clock | None = None,
        resolver: Callable[[Mapping[str, Any]], Target[S]] | None = None,
        hooks: Hooks | None = None,
        priors: Priors | None = None,
        durations: DurationModels | None = None,
        keep_finished: bool = False,
        shared: PollRegistry | None = None,
    ) -> None:
        if not isinstance(policy, PollPolicy):
            raise TypeError("policy must be a PollPolicy")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if buffer < 0:
            raise ValueError("buffer must be >= 0")
        self._policy = policy
        self._max_concurrency = max_concurrency
        self._keep_open = keep_open
        self._buffer = buffer
        self._clock: Clock = as_clock(clock, owner="watch")
        self._hooks = hooks if hooks is not None else Hooks()
        self._sched = Scheduler(models=durations)
        self._keep_finished = keep_finished or not keep_open
        self._polls = 0
        self._finished = 0
        self._forgotten = 0
        self._idle_seconds = 0.0
        self._idle_budget = 0.0
        self._entries: dict[str, _Entry[S]] = {}
        self._carried: dict[str, CheckpointEntry] = {}  # finished targets from the checkpoint
        self._groups: dict[tuple[int, RateLimitKey], _Group] = {}
        self._timer = _Sleeper()
        self._polling: set[_Entry[S]] = set()  # entries with a poll running
        self._detached = 0  # polls running that gave their slot back for being slow
        self._slot_waiters = 0  # runners waiting for a concurrency slot
        self._outages: list[Outage] = []
        self._shared = shared
        self._inbox: deque[_Delivery] = deque()
        self._inbox_ready: anyio.Event | None = None
        self._shared_polls = 0
        self._save_lock: anyio.Lock | None = None
        self._outstanding = 0  # targets whose final transition has not been handed over
        self._lifecycle = _NEW
        self._exhausted = False
        self._timed_out = False
        self._deadline = math.inf
        if priors is not None and priors is not self._sched.durations:
            self._sched.durations.absorb(load_priors(priors))
        self._initial = self._plan(list(targets), resume, resolver)
        if priors is None and resume is not None and not self._sched.durations.events:
            # A new process picking the watch up: start from what the old one had learned
            # (the checkpoint itself was checked by _plan).
            found = open_checkpoint(resume).get("priors")
            if isinstance(found, dict):
                self._sched.durations.absorb(found)

    def _plan(
        self,
        targets: list[Target[S]],
        resume: str | bytes | None,
        resolver: Callable[[Mapping[str, Any]], Target[S]] | None,
    ) -> list[tuple[Target[S], CheckpointEntry | None]]:
        """Match the checkpoint's entries with the given targets; rebuild the missing ones."""
        given: dict[str, Target[S]] = {}
        for target in targets:
            given.setdefault(target.key, target)
        plan: list[tuple[Target[S], CheckpointEntry | None]] = []
        restored: set[str] = set()
        for entry in load_checkpoint(resume) if resume is not None else []:
            restored.add(entry.key)
            if entry.done:
                self._carried[entry.key] = entry  # finished: never polled again
                continue
            found = given.get(entry.key)
            if found is None:
                if resolver is None:
                    raise CheckpointError(
                        f"the checkpoint lists live target {entry.key!r}, which is not among "
                        "the targets given; pass resolver= to rebuild it from its spec"
                    )
                try:
                    found = resolver(entry.spec)
                except (ValueError, TypeError, LookupError) as exc:
                    raise CheckpointError(
                        f"checkpoint entry {entry.key!r} cannot be rebuilt from its spec: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                if found.key != entry.key:
                    raise CheckpointError(
                        f"resolver built a target with key {found.key!r} for checkpoint "
                        f"entry {entry.key!r}"
                    )
            plan.append((found, entry))
        plan.extend((target, None) for key, target in given.items() if key not in restored)
        return plan

    def __repr__(self) -> str:
        return (
            f"<Watch {self._lifecycle.value} targets={len(self._entries) + len(self._carried)} "
            f"live={self.live} groups={len(self._groups)}>"
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Watch[S]:
        if self._lifecycle is not _NEW:
            raise RuntimeError("a Watch can be entered only once")
        send, receive = anyio.create_memory_object_stream[_Item[S]](self._buffer)
        self._send: MemoryObjectSendStream[_Item[S]] = send
        self._receive: MemoryObjectReceiveStream[_Item[S]] = receive
        self._slots = anyio.Semaphore(self._max_concurrency)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._tg: TaskGroup = task_group
        self._lifecycle = _RUNNING
        try:
            now = self._clock.monotonic()
            if self._policy.watch_timeout is not None:
                self._deadline = now + self._policy.watch_timeout
            initial, self._initial = self._initial, []
            for i, (target, restore) in enumerate(initial, 1):
                self._admit(target, self._policy, restore, now)
                if i % ADMIT_CHUNK == 0:
                    # Let the loop breathe: ten thousand targets take tens of milliseconds.
                    # Polls of the targets admitted so far may start meanwhile; all of them
                    # joined at ``now``.
                    await anyio.lowlevel.checkpoint()
            task_group.start_soon(self._run_timer)
            if self._shared is not None:
                task_group.start_soon(self._run_inbox)
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._lifecycle = _CLOSED
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # Show a lone exception as itself, not wrapped: the one that left the block, or
            # the one that stopped a watch task (a closed limiter, say).
            if len(group.exceptions) == 1:
                if group.exceptions[0] is exc:
                    return False
                raise group.exceptions[0] from None
            raise
        finally:
            self._send.close()
            self._receive.close()
            self._leave_all()
            if self._hooks.on_target_finished:
                with anyio.CancelScope(shield=True):
                    for entry in list(self._entries.values()):
                        if not entry.accounted and not entry.removed:
                            await self._notify_finished(entry, None, abandoned=True)

    # -- iteration ------------------------------------------------------------------------------

    def __aiter__(self) -> Watch[S]:
        return self

    async def __anext__(self) -> Transition[S]:
        if self._lifecycle is not _RUNNING:
            raise RuntimeError("iterate a Watch inside `async with`")
        while True:
            try:
                item = self._receive.receive_nowait()
            except anyio.WouldBlock:
                if self._is_over():
                    self._exhausted = True
                    raise StopAsyncIteration from None
                item = await self._receive.receive()
            if item is None:
                continue
            entry, transition = item
            if entry.removed:
                continue
            if transition.kind is TransitionKind.CHANGED:
                entry.delivered_raw = transition.raw_status
                entry.delivered_phase = transition.phase
            if transition.final:
                entry.final_delivered = True
                self._finished += 1
                if not self._keep_finished and self._entries.get(entry.target.key) is entry:
                    # A long-running watch: nothing more can happen to it, so let it go.
                    del self._entries[entry.target.key]
                    self._forgotten += 1
            return transition

    def _is_over(self) -> bool:
        return self._outstanding == 0 and (not self._keep_open or self._timed_out)

    # -- membership -----------------------------------------------------------------------------

    @property
    def live(self) -> int:
        """Targets whose final transition has not been handed over yet."""
        return self._outstanding

    @property
    def durations(self) -> DurationModels:
        """The learned duration models this watch uses (its client's, when it has one)."""
        return self._sched.durations

    def stats(self) -> WatchStats:
        """Polls, finished and forgotten targets, and the budget left idle so far."""
        return WatchStats(
            polls=self._polls,
            live=self._outstanding,
            finished=self._finished,
            forgotten=self._forgotten,
            idle_seconds=self._idle_seconds,
            idle_budget=self._idle_budget,
            shared=self._shared_polls,
        )

    def priors(self) -> str:
        """The learned durations as JSON, for ``priors=`` of a new client or watch."""
        return json.dumps(self._sched.durations.export(), separators=(",", ":"))

    def eta(self, target: Target[S] | str) -> Eta | None:
        """When a live target is expected to finish, counted from now (see [Eta][d360_async.Eta]).

        None for a target not in the watch, finished, or of a kind nothing is known about yet.
        """
        entry = self._entries.get(target if isinstance(target, str) else target.key)
        if entry is None:
            return None
        return self._sched.eta(entry.state, self._clock.monotonic())

    def eta_all(self) -> Eta | None:
        """When every live target is expected to have finished, counted from now.

        ``seconds`` is the median of the last finish (the time by which all of them are done
        with even odds), ``low``/``high`` its 10th and 90th percentiles, assuming the targets
        finish independently; None when some live target has no estimate (or none is live).
        O(live targets) per call.
        """
        now = self._clock.monotonic()
        estimates = []
        for entry in self._entries.values():
            if entry.state.done:
                continue
            found = self._sched.eta(entry.state, now)
            if found is None:
                return None
            estimates.append(found)
        if not estimates:
            return None
        return _last_of(estimates)

    def add(self, target: Target[S], *, policy: PollPolicy | None = None) -> bool:
        """Start watching ``target`` (with its own ``policy`` if given) while iterating.

        Returns False, and does nothing, if a target with the same key is already in the watch.

        Raises:
            RuntimeError: outside the ``async with`` block, after the iterator ended, or after
                the whole-watch deadline.
        """
        if self._lifecycle is not _RUNNING:
            raise RuntimeError("add targets inside `async with`")
        if self._exhausted or self._timed_out:
            raise RuntimeError("the watch has ended; start a new one")
        return self._admit(target, policy if policy is not None else self._policy, None, None)

    def remove(self, target: Target[S] | str) -> bool:
        """Stop watching a target (or key): its poll in flight is cancelled, and nothing more
        is yielded for it, including transitions already buffered.

        Returns False if it was not in the watch.
        """
        key = target if isinstance(target, str) else target.key
        entry = self._entries.pop(key, None)
        if entry is None:
            return self._carried.pop(key, None) is not None
        entry.removed = True
        self._sched.remove(entry.state)
        if entry.scope is not None:
            entry.scope.cancel()
        if self._hooks.on_target_finished and not entry.accounted and self._lifecycle is _RUNNING:
            self._tg.start_soon(self._notify_finished, entry, None)
        self._account(entry)
        return True

    def _admit(
        self,
        target: Target[S],
        policy: PollPolicy,
        restore: CheckpointEntry | None,
        now: float | None,
    ) -> bool:
        key = target.key
        if key in self._entries or key in self._carried:
            return False
        group = self._group_for(target)
        state = self._sched.add(
            key,
            kind=target.kind,
            group=group.key,
            policy=policy,
            now=self._clock.monotonic() if now is None else now,
            phase=None if restore is None else restore.last_phase,
            raw=None if restore is None else restore.last_raw,
            polls=0 if restore is None else restore.polls,
            restored=restore is not None,
        )
        entry = _Entry(target, state, group)
        if restore is not None:
            entry.delivered_phase = restore.last_phase
            entry.delivered_raw = restore.last_raw
        self._entries[key] = entry
        self._outstanding += 1
        if self._shared is not None:
            entry.sub = _Subscription(self, entry)
            self._shared.join(entry.sub)
        self._wake(group, state.when)
        if state.deadline < math.inf:
            self._wake(self._timer, state.deadline)
        return True

    def _group_for(self, target: Target[S]) -> _Group:
        limiter, rate_key = target.limiter, target.rate_key
        group_key = (id(limiter), rate_key)
        group = self._groups.get(group_key)
        if group is None:
            group = self._groups[group_key] = _Group(group_key, limiter, rate_key)
            self._tg.start_soon(self._run_group, group, name=f"d360-watch {rate_key}")
        return group

    # -- checkpoints ----------------------------------------------------------------------------

    def checkpoint(self) -> str:
        """A sealed, versioned checkpoint: per target, its spec and what the consumer received.

        Pass it to ``watch(..., resume=...)`` to go on without repeating a transition.  Safe
        to call at any point inside or after the ``async with`` block.  To store it, use
        [save_checkpoint][d360_async.Watch.save_checkpoint]: writing it with
        ``Path.write_text`` is not crash-safe (a kill
        between truncating and writing leaves an empty file).
        """
        if self._lifecycle is _NEW:
            raise RuntimeError("checkpoint a Watch once it has been entered")
        entries = [
            CheckpointEntry(
                key=key,
                spec=entry.target.to_spec(),
                last_raw=entry.delivered_raw,
                last_phase=entry.delivered_phase,
                polls=entry.state.polls,
                done=entry.final_delivered,
            )
            for key, entry in self._entries.items()
        ]
        entries.extend(self._carried.values())
        return dump_checkpoint(entries, priors=self._sched.durations.export())

    async def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write [checkpoint][d360_async.Watch.checkpoint] to ``path`` atomically and durably.

        The write runs off the event loop, in a worker thread.

        The file is replaced as a whole (temporary file, ``fsync``, ``os.replace``), so a
        process killed at any moment leaves the previous checkpoint or this one, never an
        empty or half-written file; and the checkpoint carries its length and checksum, so a
        file damaged afterwards is refused by ``resume=`` instead of being half-believed. Saves
        of one watch run one at a time, each taking its checkpoint when its turn comes, so the
        file never goes back to an older state. Cancelling the caller waits for a write that
        already began.

        The recipe, which delivers every transition at least once across crashes: handle the
        transition, then save; a crash between the two repeats that one transition (at most one
        per crash) when the watch is resumed from the file.
        """
        if self._save_lock is None:
            self._save_lock = anyio.Lock()
        async with self._save_lock:
            text = self.checkpoint()
            await anyio.to_thread.run_sync(write_checkpoint_file, path, text)

    # -- tasks ------------------------------------------------------------------------------------

    async def _sleep(self, sleeper: _Sleeper, until: float) -> None:
        """Sleep until ``until`` on the watch clock, or until [_wake][d360_async.Watch._wake] cuts
        it short."""
        delay = until - self._clock.monotonic()
        if delay <= 0:
            return
        with anyio.CancelScope() as scope:
            sleeper.sleep_scope = scope
            sleeper.wake_at = until
            try:
                await self._clock.sleep(delay)
            finally:
                sleeper.sleep_scope = None
                sleeper.wake_at = math.inf

    @staticmethod
    def _wake(sleeper: _Sleeper, when: float) -> None:
        if sleeper.sleep_scope is not None and when < sleeper.wake_at:
            sleeper.sleep_scope.cancel()

    async def _run_group(self, group: _Group) -> None:
        """Serve one rate-limit group: wait for a due target, get a ticket, spend it."""
        sched, clock, limiter = self._sched, self._clock, group.limiter
        while True:
            probe = group.open
            if probe:
                # Outage: one probe at a time, every outage_probe_interval, to any target.
                if group.probing or sched.next_due(group.key) is None:
                    await self._sleep(group, math.inf)
                    continue
                if group.probe_at > clock.monotonic():
                    await self._sleep(group, group.probe_at)
                    continue
            else:
                now = clock.monotonic()
                due = sched.next_due(group.key, now)
                if due is None or due > now:
                    # Every waiting target is held back: a token now could not show a finish.
                    idle = due is not None and limiter.has_capacity(group.rate_key, Priority.POLL)
                    await self._sleep(group, math.inf if due is None else due)
                    if idle:
                        spent = clock.monotonic() - now
                        self._idle_seconds += spent
                        self._idle_budget += spent * limiter.budget(group.rate_key)
                    continue
            # The limiter can tell how long the budget needs: wait here, cheaply.  Only an
            # estimate, so wait at most PREWAIT_CAP, then let acquire() decide.
            ahead = limiter.next_available(group.rate_key, Priority.POLL)
            if ahead > 0:
                await clock.sleep(min(ahead, PREWAIT_CAP))
            # Ask for a ticket only once a poll slot is free, so that it is spent at once; but
            # hold no slot while the limiter makes us wait, or one starved budget would block
            # every other group's polls.
            await self._slot_free()
            if group.open != probe:
                continue  # the circuit opened or closed meanwhile
            if not probe:
                due = sched.next_due(group.key)
                if due is None or due > clock.monotonic():
                    continue  # removed or expired meanwhile
            ticket = await limiter.acquire(group.rate_key, priority=Priority.POLL)
            try:
                await self._slots.acquire()  # normally free: we just saw it free
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await limiter.complete(ticket, status=None, state=None)
                raise
            state = sched.select(group.key, clock.monotonic())
            if state is None:
                # Every target of the group left while we waited for the ticket.
                self._slots.release()
                with anyio.CancelScope(shield=True):
                    await limiter.complete(ticket, status=None, state=None)
                continue
            entry = self._entries[state.key]
            if group.open:
                group.probing = entry.probe = True
                self._update_outage(group, probes=1)
            entry.slot_held = True
            entry.cut = False
            entry.started = started = clock.monotonic()
            self._polling.add(entry)
            timeout = state.policy.poll_timeout
            if timeout is not None:
                self._wake(self._timer, started + timeout)
            self._polls += 1
            self._tg.start_soon(self._poll, entry, ticket)

    async def _slot_free(self) -> None:
        """Return once a concurrency slot is free (without taking it).

        While a runner waits here, the timer lets polls running for longer than ``slow_poll``
        give their slot back (see `_check_polls`).
        """
        if self._slots.value > 0:
            async with self._slots:
                return
        self._slot_waiters += 1
        # Have the timer look when the oldest poll holding a slot becomes slow.
        oldest = min((e.started for e in self._polling if e.slot_held), default=math.inf)
        self._wake(self._timer, oldest + self._policy.slow_poll)
        try:
            async with self._slots:
                return
        finally:
            self._slot_waiters -= 1

    def _check_polls(self, now: float) -> float:
        """Cut the polls past their ``poll_timeout``; while a runner waits for a slot, free the
        slots of the polls past ``slow_poll``.  Returns when to check again.

        Runs in the timer task, on the watch clock; only the polls in flight are looked at
        (at most ``max_concurrency`` holding a slot, as many again without one).
        """
        again = math.inf
        slow = self._policy.slow_poll
        for entry in sorted(self._polling, key=lambda e: e.started):
            if entry.cut:
                continue
            timeout = entry.state.policy.poll_timeout
            if timeout is not None:
                if now >= entry.started + timeout:
                    self._cut(entry)
                    continue
                again = min(again, entry.started + timeout)
            if not entry.slot_held or not self._slot_waiters:
                continue
            if now < entry.started + slow:
                again = min(again, entry.started + slow)
            elif self._detached >= self._max_concurrency:
                # Too many slow polls already: this one ends now (freeing its slot as it
                # ends), a transient failure of its target.
                self._cut(entry)
            else:
                entry.slot_held = False
                entry.detached = True
                self._detached += 1
                self._slots.release()
        return again

    @staticmethod
    def _cut(entry: _Entry[Any]) -> None:
        entry.cut = True
        if entry.limit is not None:
            entry.limit.cancel()

    async def _poll(self, entry: _Entry[S], ticket: Ticket) -> None:
        """Poll one target once, report what it means, queue it again.  Owns a slot."""
        state = entry.state
        started = entry.started  # set, with the entry added to _polling, by the runner
        try:
            observation: Observation[S] | None = None
            failure: Exception | None = None
            failure_is_cut = False
            with anyio.CancelScope() as scope:
                entry.scope = scope
                try:
                    # The timer cancels this scope when the poll takes too long (_check_polls).
                    with anyio.CancelScope() as limit:
                        entry.limit = limit
                        if entry.cut:
                            limit.cancel()
                        observation = await entry.target.poll(ticket=ticket)
                    if limit.cancelled_caught:
                        failure_is_cut = True
                        failure = PollTimeout(
                            f"polling {state.key!r} was cancelled after "
                            f"{self._clock.monotonic() - started:.3g} s without an answer"
                        )
                        failure.cause_type = "poll_timeout"
                except Exception as exc:
                    failure = exc
                finally:
                    entry.scope = entry.limit = None
            if (scope.cancelled_caught or failure_is_cut) and not ticket.completed:
                # Cut short before the transport settled it: the limiter must get it back.
                with anyio.CancelScope(shield=True):
                    await entry.group.limiter.complete(ticket, status=None, state=None)
            now = self._clock.monotonic()
            if (
                entry.sub is not None
                and self._shared is not None
                and not scope.cancelled_caught
                and (observation is not None or failure is not None)
            ):
                # Before our own handling: should it end the target here, the next owner
                # finds this result queued ahead of the order to poll.
                self._shared.publish(entry.sub, observation, failure)
            self._breaker(entry, observation, failure, now)
            if scope.cancelled_caught or state.done:
                pass  # removed or timed out while polling: the result no longer matters
            elif failure is not None:
                await self._on_failure(entry, failure, now)
            elif observation is not None:
                await self._on_observation(entry, observation, now)
            if state.expired and not entry.accounted and not entry.removed:
                await self._emit(entry, self._status(entry, TransitionKind.TIMED_OUT, final=True))
            when = self._sched.release(state, now)
            if when is not None:
                self._wake(entry.group, when)
        finally:
            self._polling.discard(entry)
            if entry.slot_held:
                entry.slot_held = False
                self._slots.release()
            elif entry.detached:
                entry.detached = False
                self._detached -= 1

    # -- outages ----------------------------------------------------------------------------------

    @property
    def outages(self) -> tuple[Outage, ...]:
        """Every outage the circuit breaker saw, oldest first (the last may be ``ongoing``).

        An outage is a rate-limit key whose polls failed to connect ``outage_after`` times in
        a row (see [PollPolicy][d360_async.PollPolicy]); each one is also logged once when it
        starts and once when it ends, at WARNING on the ``d360_async.watch`` logger.
        """
        return tuple(self._outages)

    def _breaker(
        self,
        entry: _Entry[S],
        observation: Observation[S] | None,
        failure: Exception | None,
        now: float,
    ) -> None:
        """Feed one poll's result to its key's circuit breaker."""
        group, probe = entry.group, entry.probe
        entry.probe = False
        if probe:
            group.probing = False
        if observation is not None or (
            isinstance(failure, D360Error) and not isinstance(failure, TransportError)
        ):
            group.refused = 0  # the server answered
            if group.open:
                self._close_circuit(group, now)
            return
        if isinstance(failure, ConnectError):
            group.refused += 1
            threshold = self._policy.outage_after
            if group.open:
                self._update_outage(group, failures=1)
            elif threshold is not None and group.refused >= threshold:
                self._open_circuit(group, now)
                return
        if probe and group.open:
            group.probe_at = now + self._policy.outage_probe_interval
            self._wake(group, group.probe_at)

    def _open_circuit(self, group: _Group, now: float) -> None:
        group.outage = len(self._outages)
        self._outages.append(
            Outage(
                key=str(group.rate_key),
                started_at=utc_datetime(self._clock),
                failures=group.refused,
            )
        )
        group.probe_at = now + self._policy.outage_probe_interval
        logger.warning(
            "outage: %d polls in a row could not connect for %s; probing every %g s",
            group.refused,
            group.rate_key,
            self._policy.outage_probe_interval,
        )

    def _close_circuit(self, group: _Group, now: float) -> None:
        self._update_outage(group, ended_at=utc_datetime(self._clock))
        outage = self._outages[group.outage] if group.outage is not None else None
        group.outage = None
        group.probing = False
        group.probe_at = math.inf
        if outage is not None:
            logger.warning(
                "outage over: %s is reachable again after %.1f s (%d failed polls, %d probes)",
                group.rate_key,
                ((outage.ended_at or outage.started_at) - outage.started_at).total_seconds(),
                outage.failures,
                outage.probes,
            )
        # The targets that failed meanwhile backed off on their own: poll them now.
        for other in self._entries.values():
            if other.group is group and other.state.errors:
                self._sched.reschedule(other.state, now)
        self._wake(group, now)

    def _update_outage(
        self,
        group: _Group,
        *,
        failures: int = 0,
        probes: int = 0,
        ended_at: datetime | None = None,
    ) -> None:
        if group.outage is None:
            return
        old = self._outages[group.outage]
        self._outages[group.outage] = attrs.evolve(
            old,
            failures=old.failures + failures,
            probes=old.probes + probes,
            ended_at=ended_at if ended_at is not None else old.ended_at,
        )

    async def _on_observation(self, entry: _Entry[S], obs: Observation[S], now: float) -> None:
        state = entry.state
        if not isinstance(getattr(obs, "phase", None), Phase):
            await self._on_failure(
                entry, TypeError(f"poll() returned {obs!r}, not an Observation"), now
            )
            return
        outcome = self._sched.observe(state, now, obs.phase, obs.raw_status)
        if outcome.ignored:
            return
        entry.snapshot = obs.snapshot
        if outcome.changed:
            transition = Transition(
                target=entry.target,
                kind=TransitionKind.CHANGED,
                previous=outcome.previous,
                phase=obs.phase,
                raw_status=obs.raw_status,
                snapshot=obs.snapshot,
                observed_at=utc_datetime(self._clock),
                polls=state.polls,
                warnings=tuple(obs.warnings),
                final=outcome.final,
                eta=None if outcome.final else self._sched.eta(state, now),
            )
            until = state.policy.until
            if until is not None and not outcome.final:
                try:
                    stop = bool(until(transition))
                except Exception as exc:
                    await self._emit(entry, transition)
                    self._sched.finish(state)
                    await self._emit(entry, self._bug(entry, "until= raised", exc))
                    return
                if stop:
                    self._sched.finish(state)
                    transition = attrs.evolve(transition, final=True, eta=None)
            await self._emit(entry, transition)
        elif outcome.stalled:
            await self._emit(entry, self._status(entry, TransitionKind.STALLED, final=False))

    async def _on_failure(self, entry: _Entry[S], exc: Exception, now: float) -> None:
        state = entry.state
        retryable, retry_after = self._retryable(state, exc, now)
        outcome = self._sched.fail(state, now, retryable=retryable, retry_after=retry_after)
        if outcome.ignored:
            return
        if outcome.final:
            if isinstance(exc, D360Error):
                transition = self._status(entry, TransitionKind.ERROR, final=True, error=exc)
            else:
                transition = self._bug(entry, "poll() raised", exc)
            await self._emit(entry, transition)
            return
        logger.debug(
            "transient error polling %s (attempt %d): %r",
            state.key,
            state.errors,
            exc,
            extra={"d360_target": state.key, "d360_kind": state.kind, "d360_attempt": state.errors},
        )
        if outcome.stalled:
            error = exc if isinstance(exc, D360Error) else None
            await self._emit(
                entry, self._status(entry, TransitionKind.STALLED, final=False, error=error)
            )

    def _retryable(self, state: TargetState, exc: Exception, now: float) -> tuple[bool, float]:
        """Whether a failed poll is worth repeating, and the least delay before it."""
        if isinstance(exc, RateLimited):
            delay = 0.0
            if exc.retry_at is not None:
                delay = max(0.0, exc.retry_at - self._clock.time())
            return True, delay
        if isinstance(exc, _RETRYABLE):
            return True, 0.0
        if (
            isinstance(exc, MalformedResponse)
            and exc.status is not None
            and 200 <= exc.status < 300
        ):
            # ``state.errors`` counts the failed polls in a row before this one.
            return state.errors + 1 < MALFORMED_STREAK, 0.0
        if isinstance(exc, NotFound) and state.phase is None and not state.observed:
            # Just created and not visible yet?  Give it the grace period, then believe it.
            return now - state.added_at < state.policy.not_found_grace, 0.0
        return False, 0.0

    def _bug(self, entry: _Entry[S], what: str, exc: Exception) -> Transition[S]:
        """An ERROR transition for a non-library exception, which is also logged."""
        logger.error(
            "%s for watched target %s",
            what,
            entry.state.key,
            exc_info=exc,
            extra={"d360_target": entry.state.key, "d360_kind": entry.state.kind},
        )
        error = WatchError(f"{what} for target {entry.state.key!r}: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        self._sched.finish(entry.state)
        return self._status(entry, TransitionKind.ERROR, final=True, error=error)

    def _status(
        self,
        entry: _Entry[S],
        kind: TransitionKind,
        *,
        final: bool,
        error: D360Error | None = None,
    ) -> Transition[S]:
        """A transition that reports the target's last known status (not a change)."""
        state = entry.state
        return Transition(
            target=entry.target,
            kind=kind,
            previous=state.phase,
            phase=state.phase if state.phase is not None else Phase.UNKNOWN,
            raw_status=state.raw,
            snapshot=entry.snapshot,
            observed_at=utc_datetime(self._clock),
            polls=state.polls,
            error=error,
            final=final,
            eta=None if final else self._sched.eta(state, self._clock.monotonic()),
        )

    async def _emit(self, entry: _Entry[S], transition: Transition[S]) -> None:
        if entry.removed:
            return
        await self._send.send((entry, transition))
        hooks = self._hooks
        if hooks.on_transition or hooks.on_target_finished:
            await self._notify(entry, transition)
        if transition.final:
            self._account(entry)

    async def _notify(self, entry: _Entry[S], transition: Transition[S]) -> None:
        """Tell the hooks about a transition handed over, and about the end of its target."""
        if transition.previous is None and transition.kind is TransitionKind.CHANGED:
            entry.first_seen = transition.observed_at
        await notify(self._hooks.on_transition, transition)
        if transition.final and not entry.accounted:
            await self._notify_finished(entry, transition)

    async def _notify_finished(
        self, entry: _Entry[S], transition: Transition[S] | None, *, abandoned: bool = False
    ) -> None:
        state = entry.state
        finished = TargetFinished(
            key=state.key,
            kind=state.kind,
            phase=state.phase,
            polls=state.polls,
            first_seen_at=entry.first_seen,
            finished_at=transition.observed_at
            if transition is not None
            else utc_datetime(self._clock),
            transition=transition,
            abandoned=abandoned,
        )
        await notify(self._hooks.on_target_finished, finished)

    def _account(self, entry: _Entry[S]) -> None:
        """The target will yield nothing more: one fewer to wait for."""
        if entry.accounted:
            return
        entry.accounted = True
        self._leave(entry)
        self._outstanding -= 1
        if self._outstanding == 0:
            self._nudge()

    # -- shared polls -----------------------------------------------------------------------------

    def _leave(self, entry: _Entry[S]) -> None:
        """The target ends in this watch: someone else polls it for the other watches."""
        sub, entry.sub = entry.sub, None
        if sub is not None and self._shared is not None:
            self._shared.leave(sub)

    def _leave_all(self) -> None:
        for entry in self._entries.values():
            self._leave(entry)

    def _enqueue(
        self,
        entry: _Entry[S],
        observation: Observation[S] | None,
        failure: Exception | None,
        *,
        promote: bool = False,
    ) -> None:
        """Queue a result of a poll made elsewhere (or the order to poll again) for the
        inbox task; never blocks the poller."""
        if self._lifecycle is not _RUNNING or entry.removed:
            return
        at = self._clock.monotonic()
        pending = entry.pending
        if not promote and pending is not None and pending.absorb(observation, failure, at):
            return
        item = _Delivery(entry, observation, failure, at, promote=promote)
        entry.pending = item
        self._inbox.append(item)
        ready = self._inbox_ready
        if ready is not None:
            ready.set()

    async def _run_inbox(self) -> None:
        """Deliver what other pollers saw for parked targets, in the order it came."""
        inbox, sched = self._inbox, self._sched
        while True:
            if not inbox:
                ready = self._inbox_ready = anyio.Event()
                await ready.wait()
                continue
            item = inbox.popleft()
            entry = item.entry
            if entry.pending is item:
                entry.pending = None
            state = entry.state
            if entry.removed or entry.accounted or state.done:
                continue
            if item.promote:
                when = sched.unpark(state, self._clock.monotonic())
                if when is not None:
                    self._wake(entry.group, when)
                continue
            if not state.parked:
                continue  # it polls for itself again: its own polls tell it
            sched.shared_poll(state, item.at, item.polls)
            self._shared_polls += item.polls
            if item.failure is not None:
                await self._on_failure(entry, item.failure, item.at)
            elif item.observation is not None:
                await self._on_observation(entry, item.observation, item.at)

    def _nudge(self) -> None:
        """Wake a consumer blocked in ``__anext__`` so it notices the watch is over."""
        # WouldBlock: it has items to read and checks again after them.  Closed: it is gone.
        with contextlib.suppress(
            anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError
        ):
            self._send.send_nowait(None)

    async def _run_timer(self) -> None:
        """Report per-target deadlines, and the whole watch's, when they pass."""
        sched, clock = self._sched, self._clock
        while True:
            now = clock.monotonic()
            if now >= self._deadline:
                self._timed_out = True
                entries = list(self._entries.values())
                expired = sched.expire_all(entry.state for entry in entries)
                await self._report_expired(expired)
                self._nudge()
                return
            expired = sched.expire(now)
            if expired:
                await self._report_expired(expired)
                continue
            upcoming = sched.next_deadline()
            polls = self._check_polls(now) if self._polling else math.inf
            await self._sleep(self._timer, min(self._deadline, upcoming or math.inf, polls))

    async def _report_expired(self, states: list[TargetState]) -> None:
        for state in states:
            entry = self._entries.get(state.key)
            if entry is None or entry.state is not state:
                continue
            if state.in_flight:
                # Its poll task reports the time-out once the poll is over; cut the poll short.
                if entry.scope is not None:
                    entry.scope.cancel()
                continue
            await self._emit(entry, self._status(entry, TransitionKind.TIMED_OUT, final=True))


def _last_of(estimates: list[Eta]) -> Eta:
    """Quantiles of the maximum of independent finishes, each summarised by an
    [Eta][d360_async.Eta].

    Each remaining time is modelled by a piecewise-linear distribution function through its
    10th percentile, its mean (taken as the median) and its 90th percentile, reaching 1 an
    eighth of the 80 % interval past the 90th (as a uniform would); the distribution function
    of the maximum is their product, inverted by bisection (the latest finishers first, so a
    product below the goal stops early).
    """
    shapes = sorted(
        ((e.low, min(max(e.seconds, e.low), e.high), e.high) for e in estimates),
        key=lambda shape: -shape[2],
    )

    def cdf(low: float, mid: float, high: float, t: float) -> float:
        if t >= high:
            tail = max((high - low) / 8, 1e-3)
            return min(1.0, 0.9 + 0.1 * (t - high) / tail)
        if t >= mid:
            return 0.5 + 0.4 * (t - mid) / (high - mid) if high > mid else 0.9
        if t >= low:
            return 0.1 + 0.4 * (t - low) / (mid - low) if mid > low else 0.5
        return 0.1 * t / low if low > 0 else 0.1

    def quantile(q: float) -> float:
        lo = max(shape[0] for shape in shapes)
        hi = max(high + (high - low) / 8 for low, _, high in shapes) + 1e-3
        while hi - lo > 1e-3 * max(1.0, hi):
            mid = (lo + hi) / 2
            product = 1.0
            for low, middle, high in shapes:
                product *= cdf(low, middle, high, mid)
                if product < q:
                    break
            if product >= q:
                hi = mid
            else:
                lo = mid
        return hi

    return Eta(
        seconds=quantile(0.5),
        low=quantile(0.1),
        high=quantile(0.9),
        samples=min(e.samples for e in estimates),
    )


# -- entry points ---------------------------------------------------------------------------------


class WatchOptions(TypedDict, total=False):
    """The keyword options of [Watch][d360_async.Watch] (and `watch`), for type checkers."""

    policy: PollPolicy
    max_concurrency: int
    keep_open: bool
    resume: str | bytes | None
    buffer: int
    clock: Clock | None
    resolver: Callable[[Mapping[str, Any]], Target[Any]] | None
    hooks: Hooks | None
    priors: Priors | None
    durations: DurationModels | None
    keep_finished: bool
    shared: PollRegistry | None


def watch(targets: Iterable[Target[S]] = (), **options: Unpack[WatchOptions]) -> Watch[S]:
    """Watch many long-running operations; use as ``async with watch(targets) as w``.

    Args:
        targets: what to watch; targets with a key already seen are ignored.
        **options: the keyword options of [Watch][d360_async.Watch], below (typed as
            `WatchOptions` for type checkers).

    Options:

    - `policy`: pacing, deadlines, ``until=`` and stall detection (see
      [PollPolicy][d360_async.PollPolicy]).
    - `max_concurrency`: polls in flight at once, over all targets.
    - `keep_open`: keep iterating when no target is left (for services that
      [Watch.add][d360_async.Watch.add] work continually); the whole-watch deadline still ends
      it.  Such a watch forgets a target once its final transition was delivered (memory stays
      flat), unless ``keep_finished=True``; a forgotten key can be added again and is watched
      afresh.
    - `resume`: a [Watch.checkpoint][d360_async.Watch.checkpoint] string: transitions already
      delivered are not repeated, changes that happened meanwhile are delivered once, finished
      targets are not polled.
    - `buffer`: transitions buffered for a slow consumer before polling slows down.
    - `clock`: where the watch's time comes from ([Clock][d360_async.Clock]): the scheduler's
      time base, poll timeouts and ``observed_at``; default the
      [SystemClock][d360_async.SystemClock], in tests a
      [ManualClock][d360_async.testing.ManualClock].
    - `resolver`: rebuilds checkpointed targets that are not in ``targets`` from their spec
      (``client.watch`` passes ``client.target_from_spec``).
    - `hooks`: ``on_transition`` and ``on_target_finished`` callbacks (``client.watch`` passes
      the client's hooks, its OpenTelemetry support included).
    - `priors`: learned durations to start from (a checkpoint, ``Watch.priors()``, or a client's
      models), so the first polls already go where finishes are likely; a ``resume``
      checkpoint's own priors are used when nothing has been learned yet.
    - `durations`: the models to learn into and read from (``client.watch`` passes the client's,
      so every watch of a client shares them); by default the watch's own.
    - `keep_finished`: with ``keep_open``, keep finished targets in the watch (listed as done in
      checkpoints, re-adding their key does nothing).
    - `shared`: the poll registry of a client (``client.watch`` passes its own): watches sharing
      one poll each target that several of them include once, the one with the most demanding
      policy polling it for all (see [Client.watch][d360_async.Client.watch]).

    Raises:
        CheckpointError: (a ``ValueError``) a checkpoint that is damaged, malformed, of
            another version, or names live targets that are neither given nor rebuildable.
        ValueError: malformed ``priors``.
    """
    return Watch(targets, **options)


async def wait(
    target: Target[S],
    *,
    # Not a cancellation timeout: it becomes the target's deadline, reported as TIMED_OUT.
    timeout: float | None = None,  # noqa: ASYNC109
    policy: PollPolicy = DEFAULT_POLICY,
    clock: Clock | None = None,
    hooks: Hooks | None = None,
    durations: DurationModels | None = None,
    shared: PollRegistry | None = None,
) -> Transition[S]:
    """Watch one target until it ends, and return its final transition.

    The final transition is returned, not raised, whatever it is: check ``kind`` (CHANGED
    with a terminal ``phase``, or with ``until=`` satisfied; ERROR with ``error`` set; or
    TIMED_OUT after ``timeout`` seconds) and ``phase`` (a FAILED export is a normal answer).
    """
    if timeout is not None:
        policy = attrs.evolve(policy, target_timeout=timeout)
    final: Transition[S] | None = None
    async with watch(
        [target],
        policy=policy,
        clock=clock,
        max_concurrency=1,
        hooks=hooks,
        durations=durations,
        shared=shared,
    ) as w:
        async for transition in w:
            final = transition
    if final is None or not final.final:  # pragma: no cover - the iterator ends on a final one
        raise RuntimeError(f"the watch of {target.key!r} ended without a final transition")
    return final
