"""How often, and for how long, a watch polls one target: [PollPolicy][d360_async.PollPolicy].

The policy is a small frozen value object so it can be shared by thousands of targets (each
target's state holds a reference, not a copy) and so a watch's behaviour can be read from one
place.  The arithmetic here is pure; the scheduler applies it.

Rules, written once:

* A new target is first polled ``first_delay`` seconds after it joins the watch.
* With ``adaptive=True`` (the default) the watch is work-conserving: a target may be polled
  again whenever the budget has a token for it once it could have finished unseen for
  ``interval`` seconds (counted from its last poll, or from the shortest duration its kind has
  shown if that is later; the scheduler's module docstring states the rule); which target
  gets each token is decided by the learned duration models, and by least recently polled
  first where they cannot tell targets apart.
* With ``adaptive=False`` the pace is a plain backoff: after a change (and after the first
  sighting) the next poll is ``interval`` seconds later, and each poll that sees no change
  multiplies the interval by ``backoff``, up to ``max_interval`` (``reset_on_change=False``
  keeps backing off across changes).
* Transient errors back off the same way under either setting, and ``Retry-After`` is
  honoured.
* Every interval is multiplied by a random factor in ``[1 - jitter, 1 + jitter]`` so targets
  created together do not stay in lock-step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from d360_async._core._watch._values import Transition

__all__ = ["PollPolicy"]


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _positive_or_none(_inst: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None:
        _positive(_inst, attribute, value)


def _count_or_none(_inst: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{attribute.name} must be an int >= 1 or None, got {value!r}")


def _backoff_factor(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (value >= 1 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number >= 1, got {value!r}")


def _jitter_fraction(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{attribute.name} must be in [0, 1), got {value!r}")


@attrs.frozen(slots=True, kw_only=True)
class PollPolicy:
    """How a watch paces the polls of one target, and when it gives up.

    All durations are seconds.

    Attributes:
        first_delay: wait before the first poll of a target that joins the watch.
        interval: the shortest interval between two polls of one target; also the interval
            right after a change.
        backoff: multiplier applied to the interval after each transient error, and (with
            ``adaptive=False``) after each poll that saw no change.
        max_interval: the interval never grows beyond this.
        jitter: each interval is multiplied by a random factor in ``[1 - jitter, 1 + jitter]``.
        reset_on_change: go back to ``interval`` after a change ("fast again").
        adaptive: spend every token a target could use (after ``interval``), choose targets
            by the durations learned from operations of the same kind, and hold back polls
            that cannot see a finish yet (see the module docstring); False: plain backoff.
        target_timeout: a target still live this long after it joined the watch ends with a
            ``TIMED_OUT`` transition.
        watch_timeout: the whole watch ends this long after it started; every live target
            gets a ``TIMED_OUT`` transition.  Read from the policy given to ``watch()``.
        until: called with every ``CHANGED`` transition; returning True ends that target
            (the transition is marked ``final``), e.g. stop a SmartDocumentor task at review.
        stall_after: a target that shows no change for this long yields one ``STALLED``
            transition (then another only after it changes and stalls again); it keeps being
            watched.
        not_found_grace: a 404 before the first successful poll is retried for this long after
            the target joined the watch (a just-created operation may not be visible yet);
            a 404 after that, or after the target was seen, ends it with an ``ERROR``.
        poll_timeout: one poll (the transport's own retries included) that takes longer is
            cancelled and counts as a transient failure of that target alone
            ([TimeoutError][d360_async.TimeoutError]); its rate-limit ticket is settled and the
            target backs off like after any transient error. The default is the transport's
            default read timeout; the time a retry inside the poll waits for the rate limiter
            counts too, so keep it well above that on a tight budget. ``None``: no limit.
        slow_poll: a poll still running this long after it started gives its concurrency slot
            back when another poll needs one (it goes on, up to ``poll_timeout``, outside the
            ``max_concurrency`` count; at most ``max_concurrency`` such polls at once, beyond
            which the oldest is cancelled), so hung requests cannot starve the others. Read
            from the policy given to ``watch()``.
        outage_after: this many polls in a row of one rate-limit key failing to connect
            ([ConnectError][d360_async.ConnectError]) open that key's circuit: the watch stops
            polling its targets, sends one probe every ``outage_probe_interval``, and on the
            first probe that reaches the server resumes at full pace, polling at once the
            targets that failed meanwhile. ``None`` disables it. Read from the policy given
            to ``watch()``; see [Watch.outages][d360_async.Watch.outages].
        outage_probe_interval: seconds between two probes while a key's circuit is open.
    """

    first_delay: float = attrs.field(default=0.0, validator=_non_negative)
    interval: float = attrs.field(default=1.0, validator=_positive)
    backoff: float = attrs.field(default=1.5, validator=_backoff_factor)
    max_interval: float = attrs.field(default=30.0, validator=_positive)
    jitter: float = attrs.field(default=0.1, validator=_jitter_fraction)
    reset_on_change: bool = True
    adaptive: bool = True
    target_timeout: float | None = attrs.field(default=None, validator=_positive_or_none)
    watch_timeout: float | None = attrs.field(default=None, validator=_positive_or_none)
    until: Callable[[Transition[Any]], bool] | None = None
    stall_after: float | None = attrs.field(default=None, validator=_positive_or_none)
    not_found_grace: float = attrs.field(default=10.0, validator=_non_negative)
    poll_timeout: float | None = attrs.field(default=30.0, validator=_positive_or_none)
    slow_poll: float = attrs.field(default=1.0, validator=_positive)
    outage_after: int | None = attrs.field(default=8, validator=_count_or_none)
    outage_probe_interval: float = attrs.field(default=1.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.max_interval < self.interval:
            raise ValueError(
                f"max_interval ({self.max_interval}) must be >= interval ({self.interval})"
            )
        if self.until is not None and not callable(self.until):
            raise TypeError("until must be a callable taking a Transition, or None")

    def backoff_interval(self, streak: int) -> float:
        """The un-jittered interval after ``streak`` consecutive polls without a change.

        ``streak=0`` is `interval`; the result never exceeds `max_interval`.
        """
        if streak <= 0 or self.backoff == 1.0:
            return self.interval
        # Compare in log space so a long streak cannot overflow the power.
        if streak * math.log(self.backoff) >= math.log(self.max_interval / self.interval):
            return self.max_interval
        return min(self.max_interval, self.interval * self.backoff**streak)

    def jittered(self, delay: float, unit: float) -> float:
        """Apply jitter to ``delay`` given ``unit``, a uniform random number in ``[0, 1)``.

        Taking the random number as an argument keeps this pure and testable.
        """
        return delay * (1.0 + self.jitter * (2.0 * unit - 1.0))
