"""Who polls a target that several watches include: the pure bookkeeping of shared polls.

Pure: no I/O, no asyncio.  The I/O layer (`d360_async._watch._observe.PollRegistry`) feeds
it and acts on the `Handover` values it returns.

Vocabulary, written once:

* A **topic** is one operation as watches name it: ``(kind, key)`` of a
  [Target][d360_async.Target].  Every watch of one client that includes the topic is a
  **subscriber** of it.
* The **owner** of a topic is the one subscriber that polls it; every other subscriber is
  *parked* (its scheduler does not queue the target) and is given the owner's observations.
  Each subscriber still applies its own semantics to them (first sight, ``until=``, deadlines,
  stall detection, its checkpoint).
* The owner is the subscriber with the **most demanding** policy (`demand`); among equally
  demanding ones, the earliest to subscribe, so that a newcomer with the same policy never
  takes a target over (no churn).
* A topic is **remote** while another process polls it (it holds the topic's lease in a hub):
  then no local subscriber owns it and every local subscriber is given what the hub reads.

Every change of owner is returned as a `Handover` (who stops polling, who starts), so the
caller can park the one and unpark the other; nothing here calls back.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Final, Generic, TypeVar

import attrs

from d360_async._core._watch._policy import PollPolicy

__all__ = ["NO_HANDOVER", "Demand", "Handover", "Subscriptions", "Topic", "demand"]

H = TypeVar("H", bound=Hashable)

Topic = tuple[str, str]
"""``(kind, key)`` of a target: what makes two watched targets the same operation."""

Demand = tuple[float, int, float, float]
"""A sortable summary of a policy; smaller is more demanding (see `demand`)."""


def demand(policy: PollPolicy) -> Demand:
    """How demanding ``policy`` is, as a key that sorts the most demanding first.

    In order: the shortest interval between two polls, then adaptive before plain backoff
    (adaptive spends every token the target could use), then the lower ``max_interval`` (how
    far a plain backoff slows down), then the shorter ``first_delay``.
    """
    return (policy.interval, 0 if policy.adaptive else 1, policy.max_interval, policy.first_delay)


@attrs.frozen(slots=True)
class Handover(Generic[H]):
    """A change of who polls one topic.

    Attributes:
        stop: the subscriber that polled it and must stop (park its target); None if nobody
            local polled it.
        start: the subscriber that must start polling it (unpark its target); None if nobody
            local polls it now (no subscriber left, or the topic is remote).
    """

    stop: H | None = None
    start: H | None = None

    @property
    def changed(self) -> bool:
        """The owner changed."""
        return self.stop != self.start


NO_HANDOVER: Final[Handover[object]] = Handover()


class _Topic(Generic[H]):
    __slots__ = ("owner", "remote", "subscribers")

    def __init__(self, remote: bool) -> None:
        # Insertion ordered: the value is (demand, join order), the owner's ranking key.
        self.subscribers: dict[H, tuple[Demand, int]] = {}
        self.owner: H | None = None
        self.remote = remote

    def elect(self) -> H | None:
        if self.remote or not self.subscribers:
            return None
        return min(self.subscribers.items(), key=lambda item: item[1])[0]


class Subscriptions(Generic[H]):
    """The subscribers of every topic, and which of them polls it.

    Subscribers are any hashable values (the watch uses one object per watched target); a
    subscriber belongs to one topic.  Costs O(subscribers of the topic) per change, which is
    the number of watches including it.
    """

    __slots__ = ("_seq", "_topics")

    def __init__(self) -> None:
        self._topics: dict[Topic, _Topic[H]] = {}
        self._seq = 0

    def __len__(self) -> int:
        """Topics with at least one subscriber."""
        return len(self._topics)

    def __contains__(self, topic: object) -> bool:
        return topic in self._topics

    def __iter__(self) -> Iterator[Topic]:
        return iter(list(self._topics))

    def __repr__(self) -> str:
        subscribers = sum(len(t.subscribers) for t in self._topics.values())
        remote = sum(1 for t in self._topics.values() if t.remote)
        return f"<Subscriptions topics={len(self)} subscribers={subscribers} remote={remote}>"

    def join(
        self, topic: Topic, subscriber: H, rank: Demand, *, remote: bool = False
    ) -> Handover[H]:
        """Subscribe ``subscriber`` (ranked by ``rank``, see `demand`) to ``topic``.

        ``remote`` is the state of a topic nobody subscribed to yet (a hub starts it remote
        until it holds the lease); it is ignored for a topic that has subscribers.

        Raises:
            ValueError: ``subscriber`` already subscribes to ``topic``.
        """
        found = self._topics.get(topic)
        if found is None:
            found = self._topics[topic] = _Topic(remote)
        if subscriber in found.subscribers:
            raise ValueError(f"{subscriber!r} already subscribes to {topic!r}")
        self._seq += 1
        found.subscribers[subscriber] = (rank, self._seq)
        return self._elect(found)

    def leave(self, topic: Topic, subscriber: H) -> Handover[H]:
        """Unsubscribe; the topic is forgotten with its last subscriber.  Unknown: no-op."""
        found = self._topics.get(topic)
        if found is None or found.subscribers.pop(subscriber, None) is None:
            return NO_HANDOVER  # type: ignore[return-value]
        handover = self._elect(found)
        if not found.subscribers:
            del self._topics[topic]
        if handover.stop == subscriber:
            # It left: there is nothing to park.
            handover = Handover(None, handover.start)
        return handover

    def set_remote(self, topic: Topic, remote: bool) -> Handover[H]:
        """Another process polls ``topic`` (True) or this one should (False)."""
        found = self._topics.get(topic)
        if found is None or found.remote == remote:
            return NO_HANDOVER  # type: ignore[return-value]
        found.remote = remote
        return self._elect(found)

    def owner(self, topic: Topic) -> H | None:
        """The subscriber that polls ``topic``; None when remote or unknown."""
        found = self._topics.get(topic)
        return None if found is None else found.owner

    def remote(self, topic: Topic) -> bool:
        """Whether another process polls ``topic`` (False for an unknown topic)."""
        found = self._topics.get(topic)
        return found is not None and found.remote

    def subscribers(self, topic: Topic) -> list[H]:
        """The subscribers of ``topic``, in the order they joined."""
        found = self._topics.get(topic)
        return [] if found is None else list(found.subscribers)

    def others(self, topic: Topic, subscriber: H) -> list[H]:
        """The subscribers of ``topic`` other than ``subscriber``, in the order they joined."""
        found = self._topics.get(topic)
        if found is None:
            return []
        return [other for other in found.subscribers if other != subscriber]

    @staticmethod
    def _elect(found: _Topic[H]) -> Handover[H]:
        old = found.owner
        new = found.owner = found.elect()
        if old == new:
            return NO_HANDOVER  # type: ignore[return-value]
        return Handover(old, new)
