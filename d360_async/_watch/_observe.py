"""One poll per operation, however many watches include it: the client's poll registry.

Every watch of one [Client][d360_async.Client] subscribes its targets here.  For each topic
(``(kind, key)``, see `_sharing`) one subscriber, the owner, polls; what its polls observe is
handed to every other subscriber, which applies its own semantics to it.  The bookkeeping is the
pure `Subscriptions` of `_sharing`; this module only applies its
handovers to the watches and fans observations out.  An observation hub
(Redis) extends the same registry across processes.

Fan-out never blocks the owner: each watch queues what it is given and delivers it from its own
task, in order, so a slow consumer of one watch slows only that watch.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol

from d360_async._core._target_protocol import Observation
from d360_async._core._watch._sharing import Demand, Handover, Subscriptions, Topic

__all__ = ["PollRegistry", "Subscriber"]


class Subscriber(Hashable, Protocol):
    """One watch's subscription to one topic (implemented by the watch)."""

    @property
    def topic(self) -> Topic: ...

    @property
    def rank(self) -> Demand: ...

    def park(self) -> None:
        """Stop polling the target at once (a poll in flight finishes normally)."""
        ...

    def promote(self) -> None:
        """Start polling the target, once what was delivered before has been handled."""
        ...

    def deliver(self, observation: Observation[Any] | None, failure: Exception | None) -> None:
        """Queue what a poll made elsewhere saw (an observation, or the exception it raised)."""
        ...


class PollRegistry:
    """The operations the watches of one client include, and which watch polls each.

    Every [Client][d360_async.Client] has one and passes it to its watches, so you only meet
    this class when you build watches with the internal ``watch()`` directly: pass the same
    registry as ``shared=`` to the watches that should poll each operation once between them.
    The watch with the most demanding policy polls an operation for all (see
    [Client.watch][d360_async.Client.watch]).  Not thread-safe: one event loop.

    Added in version 0.1.0.

    Attributes:
        shared: observations handed from one watch's poll to another watch (polls saved).
    """

    __slots__ = ("_subs", "hub", "shared")

    def __init__(self) -> None:
        self._subs: Subscriptions[Subscriber] = Subscriptions()
        self.hub: Any = None  # an ObservationHub extends the registry across processes
        self.shared = 0

    def __repr__(self) -> str:
        return f"<PollRegistry {self._subs!r} shared={self.shared}>"

    def __len__(self) -> int:
        return len(self._subs)

    def owner(self, topic: Topic) -> Subscriber | None:
        """Who polls ``topic`` in this process (None: nobody, or another process)."""
        return self._subs.owner(topic)

    def subscribers(self, topic: Topic) -> list[Subscriber]:
        """The subscriptions to ``topic``, in the order they were made."""
        return self._subs.subscribers(topic)

    def join(self, subscriber: Subscriber) -> None:
        """Subscribe; a subscriber that does not own the topic is parked at once."""
        topic = subscriber.topic
        fresh = topic not in self._subs
        hub = self.hub
        remote = hub is not None and hub.starts_remote(topic)
        handover = self._subs.join(topic, subscriber, subscriber.rank, remote=remote)
        if self._subs.owner(topic) is not subscriber:
            subscriber.park()
        self._apply(handover, joining=subscriber)
        if fresh and hub is not None:
            hub.track(topic)

    def leave(self, subscriber: Subscriber) -> None:
        """Unsubscribe (the target ended in that watch, was removed, or the watch closed)."""
        topic = subscriber.topic
        self._apply(self._subs.leave(topic, subscriber))
        if topic not in self._subs and self.hub is not None:
            self.hub.untrack(topic)

    def set_remote(self, topic: Topic, remote: bool) -> None:
        """Another process polls ``topic`` now (True), or this one must (False)."""
        self._apply(self._subs.set_remote(topic, remote))

    def remote(self, topic: Topic) -> bool:
        """Whether another process polls ``topic``."""
        return self._subs.remote(topic)

    def topics(self) -> list[Topic]:
        """Every topic with a subscriber."""
        return list(self._subs)

    def publish(
        self,
        subscriber: Subscriber,
        observation: Observation[Any] | None,
        failure: Exception | None,
    ) -> None:
        """The owner ``subscriber`` polled its topic: hand the result to the others (and to
        the hub, when this process holds the topic's lease)."""
        topic = subscriber.topic
        for other in self._subs.others(topic, subscriber):
            other.deliver(observation, failure)
            self.shared += 1
        if self.hub is not None:
            self.hub.publish(topic, observation, failure)

    def deliver(
        self, topic: Topic, observation: Observation[Any] | None, failure: Exception | None
    ) -> int:
        """What another process observed: hand it to every local subscriber of ``topic``
        while it is remote.  Returns how many were given it."""
        if not self._subs.remote(topic):
            return 0
        count = 0
        for subscriber in self._subs.subscribers(topic):
            subscriber.deliver(observation, failure)
            count += 1
        return count

    def _apply(self, handover: Handover[Subscriber], joining: Subscriber | None = None) -> None:
        if not handover.changed:
            return
        if handover.stop is not None:
            handover.stop.park()
        if handover.start is not None and handover.start is not joining:
            handover.start.promote()
