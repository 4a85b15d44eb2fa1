"""Shared polls: the pure bookkeeping (`_sharing`), exhaustively, and the scheduler's parking."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from d360_async._core._phase import Phase
from d360_async._core._watch._sharing import NO_HANDOVER, Handover, Subscriptions, demand
from d360_async._watch import PollPolicy, Scheduler

TOPIC = ("v3.export", "v3.export/p/e1")
OTHER = ("v3.export", "v3.export/p/e2")


def test_the_most_demanding_policy_polls() -> None:
    subs: Subscriptions[str] = Subscriptions()
    slow = demand(PollPolicy(interval=5.0, max_interval=30.0))
    fast = demand(PollPolicy(interval=0.5))
    assert subs.join(TOPIC, "slow", slow) == Handover(None, "slow")
    assert subs.join(TOPIC, "fast", fast) == Handover("slow", "fast")
    assert subs.owner(TOPIC) == "fast"
    # Equally demanding newcomers never take over (no churn).
    assert subs.join(TOPIC, "fast2", fast) is NO_HANDOVER
    assert subs.leave(TOPIC, "fast") == Handover(None, "fast2")
    assert subs.leave(TOPIC, "fast2") == Handover(None, "slow")
    assert subs.leave(TOPIC, "slow") == Handover(None, None)
    assert TOPIC not in subs
    assert len(subs) == 0


def test_demand_orders_interval_then_adaptive_then_max_interval() -> None:
    adaptive = demand(PollPolicy(interval=1.0, max_interval=30.0))
    plain = demand(PollPolicy(interval=1.0, max_interval=30.0, adaptive=False))
    plain_low = demand(PollPolicy(interval=1.0, max_interval=5.0, adaptive=False))
    quicker = demand(PollPolicy(interval=0.5, adaptive=False))
    assert sorted([plain, adaptive, quicker, plain_low]) == [quicker, adaptive, plain_low, plain]


def test_remote_topics_have_no_local_owner() -> None:
    subs: Subscriptions[str] = Subscriptions()
    rank = demand(PollPolicy())
    assert subs.join(TOPIC, "a", rank, remote=True) is NO_HANDOVER
    assert subs.owner(TOPIC) is None
    assert subs.remote(TOPIC)
    assert subs.join(TOPIC, "b", rank, remote=False) is NO_HANDOVER  # ignored: not new
    assert subs.set_remote(TOPIC, False) == Handover(None, "a")
    assert subs.set_remote(TOPIC, False) is NO_HANDOVER
    assert subs.set_remote(TOPIC, True) == Handover("a", None)
    assert subs.set_remote(OTHER, True) is NO_HANDOVER  # unknown topic
    assert subs.others(TOPIC, "a") == ["b"]
    assert subs.subscribers(TOPIC) == ["a", "b"]


def test_double_subscription_is_refused_and_unknown_leave_is_a_no_op() -> None:
    subs: Subscriptions[str] = Subscriptions()
    subs.join(TOPIC, "a", demand(PollPolicy()))
    with pytest.raises(ValueError, match="already subscribes"):
        subs.join(TOPIC, "a", demand(PollPolicy()))
    assert subs.leave(OTHER, "a") is NO_HANDOVER
    assert subs.leave(TOPIC, "zz") is NO_HANDOVER
    assert "topics=1" in repr(subs)


_INTERVALS = st.sampled_from([0.5, 1.0, 2.0])
_OPS = st.lists(
    st.tuples(
        st.sampled_from(["join", "leave", "remote", "local"]),
        st.sampled_from([TOPIC, OTHER]),
        st.integers(0, 5),
        _INTERVALS,
    ),
    max_size=60,
)


@given(_OPS)
def test_handovers_replay_the_owner_exactly(
    ops: list[tuple[str, tuple[str, str], int, float]],
) -> None:
    """Against a naive model: the owner is always the most demanding earliest subscriber of a
    local topic, and applying the handovers to a set of 'polling' subscribers reproduces
    exactly one poller per local topic with subscribers, none for remote ones."""
    subs: Subscriptions[str] = Subscriptions()
    model: dict[tuple[str, str], list[tuple[tuple[float, int, float, float], int, str]]] = {}
    remote: dict[tuple[str, str], bool] = {}
    polling: set[str] = set()
    order = itertools.count()
    for op, topic, who, interval in ops:
        name = f"{topic[1]}#{who}"
        members = model.setdefault(topic, [])
        if op == "join":
            if any(m[2] == name for m in members):
                with pytest.raises(ValueError, match="already subscribes"):
                    subs.join(topic, name, demand(PollPolicy(interval=interval)))
                continue
            fresh = not members
            is_remote = who % 2 == 1
            handover = subs.join(
                topic, name, demand(PollPolicy(interval=interval)), remote=is_remote
            )
            if fresh:
                remote[topic] = is_remote
            members.append((demand(PollPolicy(interval=interval)), next(order), name))
        elif op == "leave":
            handover = subs.leave(topic, name)
            members[:] = [m for m in members if m[2] != name]
            polling.discard(name)
        else:
            handover = subs.set_remote(topic, op == "remote")
            if members:
                remote[topic] = op == "remote"
        if handover.stop is not None:
            assert handover.stop in polling
            polling.discard(handover.stop)
        if handover.start is not None:
            assert handover.start not in polling
            polling.add(handover.start)
        if not members:
            remote.pop(topic, None)
        for t, ms in model.items():
            expected = None
            if ms and not remote.get(t, False):
                expected = min(ms)[2]
            assert subs.owner(t) == expected
            assert subs.remote(t) == (bool(ms) and remote.get(t, False))
        owners = {subs.owner(t) for t in model} - {None}
        assert polling == owners


# -- the scheduler's side -------------------------------------------------------------------------


def test_a_parked_target_is_never_selected_but_keeps_its_deadline() -> None:
    sched = Scheduler()
    policy = PollPolicy(interval=1.0, jitter=0.0, target_timeout=10.0)
    a = sched.add("a", kind="k", group="g", policy=policy, now=0.0)
    b = sched.add("b", kind="k", group="g", policy=policy, now=0.0)
    sched.park(a)
    sched.park(a)  # idempotent
    assert sched.select("g", 0.0) is b
    assert sched.select("g", 0.0) is None
    sched.shared_poll(a, 3.0, polls=2)
    assert sched.observe(a, 3.0, Phase.PENDING, "Queued").changed
    assert a.polls == 2
    assert a.polled_at == 3.0
    assert sched.next_deadline() == 10.0
    assert [s.key for s in sched.expire(10.0)] == ["a", "b"]


def test_unpark_is_due_one_interval_after_the_last_shared_poll() -> None:
    sched = Scheduler()
    policy = PollPolicy(interval=2.0, jitter=0.0)
    a = sched.add("a", kind="k", group="g", policy=policy, now=0.0)
    sched.park(a)
    assert sched.next_due("g", 0.0) is None
    sched.shared_poll(a, 5.0)
    assert sched.unpark(a, 6.0) == 7.0
    assert sched.unpark(a, 6.0) is None  # not parked any more
    assert sched.select("g", 7.0) is a


def test_parked_while_in_flight_is_not_queued_again() -> None:
    sched = Scheduler()
    policy = PollPolicy(interval=1.0, jitter=0.0)
    a = sched.add("a", kind="k", group="g", policy=policy, now=0.0)
    assert sched.select("g", 0.0) is a
    sched.park(a)
    assert sched.release(a, 0.5) is None
    assert sched.next_due("g", 1.0) is None
    assert sched.unpark(a, 2.0) == 1.5  # one interval after its own poll: due already
    assert sched.select("g", 2.0) is a
    # Unparked while in flight: release() queues it.
    sched.park(a)
    assert sched.unpark(a, 2.5) is None
    assert sched.release(a, 2.6) == pytest.approx(3.6)


def test_a_finished_target_cannot_be_parked_or_unparked() -> None:
    sched = Scheduler()
    a = sched.add("a", kind="k", group="g", policy=PollPolicy(), now=0.0)
    sched.finish(a)
    sched.park(a)
    assert not a.parked
    assert sched.unpark(a, 1.0) is None
    assert math.isinf(a.deadline)


def test_unparking_a_target_never_polled_keeps_its_first_due_time() -> None:
    sched = Scheduler()
    policy = PollPolicy(interval=5.0, jitter=0.0, first_delay=0.5)
    a = sched.add("a", kind="k", group="g", policy=policy, now=10.0)
    sched.park(a)
    assert sched.unpark(a, 10.2) == 10.5  # not 10 + 5
