"""A rate limiter whose budgets are shared through Redis by every process using the same keys.

One chassis with the in-process limiter: each process keeps a replica of the very same
`Budget` (the policy it learned, the credits the server vouched for, the pacing) and feeds it
one log per key, held in Redis (see `d360_async._core._ratelimit._ledger`). An admission is an
*attempt* appended to the log; whether it is granted is what the budget says once the log is
applied up to it, and since every replica holds the same state there, every process agrees.
Answers are appended too, so every process calibrates from every answer. One Lua script
(``_redis.lua``) appends and reads in one atomic round trip, stamping each line with Redis
``TIME``: one clock for all.

So the learning, the pacing and the guarantees are the in-process limiter's, whatever the
server's policy: four processes spend one budget as one process would.

Waiting is local: each process keeps its own FIFO per `Priority` for each key, and one task per
key makes attempts on behalf of the head of that queue, sleeping between them as long as its
replica says (at most ``max_sleep``, plus up to a millisecond of jitter so processes do not ask
in lockstep), or less when an answer from this process changes the picture. Both keys expire
after ``key_ttl`` idle seconds; an admission never answered (its process died) stops counting
as in flight ``in_flight_timeout`` seconds after it was granted; the log is trimmed to
``log_size`` lines. Keys hold the token's fingerprint, never the token.

If Redis becomes unreachable (any redis-py error or a timeout), the limiter carries on alone
with its replica in an internal `LocalRateLimiter` (pauses, calibration and learned policy
survive the switch), logs one warning, and probes Redis (at most every ``probe_interval``
seconds, when requests come) until it answers, which it logs once at INFO. No redis exception
reaches a caller.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
import math
import random
import secrets
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

import attrs

from d360_async._clock import Clock, as_clock, reading
from d360_async._core._ratelimit._headers import RateLimitState
from d360_async._core._ratelimit._ledger import (
    ATTEMPT,
    Replica,
    Take,
    encode_record,
    encode_refund,
)
from d360_async._core._ratelimit._protocol import LimiterStats, Priority, RateLimitKey, Ticket
from d360_async._limiters._local import LocalRateLimiter, RateLimitConfig, budget_stats

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = [
    "LOG_SIZE",
    "RedisRateLimiter",
    "RedisTicket",
    "check_seconds",
    "parse_reply",
    "redis_modules",
]

logger = logging.getLogger("d360_async.ratelimit")

NAP_JITTER: Final = 0.001
"""Most seconds added at random to a wait for a token, to de-synchronise processes."""

MIN_NAP: Final = 0.002
"""Least seconds between two attempts of one process after one was refused."""

LOG_SIZE: Final = 10_000
"""Lines of a key's log kept when it is trimmed (it is trimmed at twice as many)."""

SCRIPT: Final[str] = (
    importlib.resources.files(__package__).joinpath("_redis.lua").read_text(encoding="utf-8")
)
"""The Lua script that appends to and reads every key's log."""


@attrs.define(slots=True, eq=False)
class RedisTicket(Ticket):
    """A ticket granted through the shared log.

    Attributes:
        take: its admission's name in the log.
        sent: when it was granted, on the shared (Redis) clock.
    """

    take: str = ""
    sent: float = 0.0


class BadReply(Exception):
    """Redis answered the script with something it never returns (another program's key?)."""


class _Divert:
    """Sentinel handed to queued callers when Redis failed: acquire locally instead."""

    __slots__ = ()


_DIVERT: Final = _Divert()

_Waiter = tuple["asyncio.Future[RedisTicket | _Divert]", float]


@attrs.frozen(slots=True)
class Reply:
    """The script's answer, decoded."""

    epoch: str
    base: int
    now: float
    mine: int
    lines: list[bytes | str]


def _text(raw: object) -> str:
    if isinstance(raw, bytes):
        return raw.decode()
    if isinstance(raw, str):
        return raw
    raise ValueError(f"expected text, got {type(raw).__name__}")


def parse_reply(raw: object) -> Reply:
    """Decode the script's answer; `ValueError` for anything it never returns."""
    if not isinstance(raw, list) or len(raw) != 5 or not isinstance(raw[4], list):
        raise ValueError(f"unexpected rate-limit script reply: {raw!r:.200}")
    epoch, base, now, mine = (_text(item) for item in raw[:4])
    stamp = float(now)
    if not math.isfinite(stamp):
        raise ValueError(f"unexpected time in the script reply: {now!r}")
    return Reply(epoch, int(base), stamp, int(mine), list(raw[4]))


class _Lane:
    """This process's side of one key: its queues, counters and replica of the budget."""

    __slots__ = (
        "fresh",
        "in_flight",
        "key",
        "keys",
        "queues",
        "replica",
        "requests",
        "task",
        "throttled",
        "total_wait",
        "waiting",
        "waits",
        "wake",
    )

    def __init__(self, key: RateLimitKey, keys: list[str], replica: Replica) -> None:
        self.key = key
        self.keys = keys
        self.replica = replica
        self.fresh = False  # the replica was read from Redis since the last sleep
        self.queues: tuple[deque[_Waiter], ...] = tuple(deque() for _ in Priority)
        self.waiting = [0] * len(Priority)
        self.task: asyncio.Task[None] | None = None
        self.wake: asyncio.Future[None] | None = None
        self.in_flight = 0
        self.requests = 0
        self.waits = 0
        self.total_wait = 0.0
        self.throttled = 0

    def ahead(self, priority: int) -> int:
        return sum(self.waiting[: priority + 1])

    def head(self) -> tuple[_Waiter, int] | None:
        for priority, queue in enumerate(self.queues):
            while queue:
                waiter = queue[0]
                if not waiter[0].done():
                    return waiter, priority
                queue.popleft()
        return None

    def nudge(self) -> None:
        """Cut the dispatcher's sleep short: the answer may have changed."""
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RedisRateLimiter:
    """A `RateLimiter` whose budgets are shared through Redis (module docstring).

    Args:
        redis: a ``redis.asyncio.Redis`` client (borrowed: not closed by
            [aclose][d360_async.RedisRateLimiter.aclose]) or a URL such as
            ``"redis://localhost:6379/0"`` (a client is created and owned).
        config: the pacing settings and priors (every process sharing a key must use the
            same: their replicas must compute alike).
        prefix: the start of every Redis key this limiter writes.
        key_ttl: seconds an idle key is kept.
        in_flight_timeout: seconds after which an admitted request that was never completed
            (its process died) stops counting as in flight.
        probe_interval: least seconds between attempts to reach Redis again after a failure.
        operation_timeout: longest wait for one Redis round trip before falling back.
        max_sleep: longest sleep between two looks at Redis while waiting.
        log_size: lines of each key's log kept when it is trimmed.
        clock: this process's [Clock][d360_async.Clock]: its ``monotonic()`` times local waits
            and stats (Redis's own ``TIME`` paces the shared budget, so tests of this limiter
            run on the real clock).

    Added in version 0.1.0."""

    __slots__ = (
        "_clock",
        "_closed",
        "_config",
        "_errors",
        "_fallback",
        "_in_flight_timeout",
        "_key_ttl",
        "_lanes",
        "_local",
        "_log_size",
        "_max_sleep",
        "_next_probe",
        "_offset",
        "_operation_timeout",
        "_owns_redis",
        "_prefix",
        "_probe",
        "_probe_interval",
        "_redis",
        "_script",
        "_tasks",
        "_where",
    )

    def __init__(
        self,
        redis: Redis | str,
        *,
        config: RateLimitConfig | None = None,
        prefix: str = "d360-async:ratelimit",
        key_ttl: float = 900.0,
        in_flight_timeout: float = 300.0,
        probe_interval: float = 5.0,
        operation_timeout: float = 2.0,
        max_sleep: float = 1.0,
        log_size: int = LOG_SIZE,
        clock: Clock | Callable[[], float] | None = None,
    ) -> None:
        source = as_clock(clock, owner="RedisRateLimiter")
        redis_asyncio, redis_exceptions = redis_modules("RedisRateLimiter")
        check_seconds(
            key_ttl=key_ttl,
            in_flight_timeout=in_flight_timeout,
            probe_interval=probe_interval,
            operation_timeout=operation_timeout,
            max_sleep=max_sleep,
        )
        if log_size < 1:
            raise ValueError(f"log_size must be at least 1, got {log_size!r}")
        if isinstance(redis, str):
            self._redis: Redis = redis_asyncio.Redis.from_url(
                redis,
                socket_connect_timeout=operation_timeout,
                socket_timeout=operation_timeout,
            )
            self._owns_redis = True
        else:
            self._redis = redis
            self._owns_redis = False
        self._where = _describe(self._redis)
        self._config = config if config is not None else RateLimitConfig()
        self._prefix = prefix
        self._key_ttl = key_ttl
        self._in_flight_timeout = in_flight_timeout
        self._probe_interval = probe_interval
        self._operation_timeout = operation_timeout
        self._max_sleep = max_sleep
        self._log_size = log_size
        self._clock = source.monotonic
        # The shared clock (Redis TIME) minus ours; the wall clock until Redis has answered.
        self._offset = source.time() - self._clock()
        self._errors: tuple[type[BaseException], ...] = (
            redis_exceptions.RedisError,
            OSError,
            TimeoutError,
            BadReply,
        )
        self._script: AsyncScript = self._redis.register_script(SCRIPT)
        # The fallback runs on the shared clock, so that it can carry the replicas on.
        self._local = LocalRateLimiter(self._config, clock=reading(self._shared_now, source))
        self._lanes: dict[RateLimitKey, _Lane] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fallback = False
        self._next_probe = -math.inf
        self._probe: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisRateLimiter:
        """A limiter with its own client for ``url`` (closed by
        [aclose][d360_async.RedisRateLimiter.aclose]).

        The keyword arguments are those of the constructor.
        """
        return cls(url, **kwargs)

    @property
    def config(self) -> RateLimitConfig:
        """The pacing settings."""
        return self._config

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and this process limits on its own."""
        return self._fallback

    def redis_keys(self, key: RateLimitKey) -> list[str]:
        """The two Redis keys holding ``key``'s log (hash-tagged: one cluster slot)."""
        base = f"{self._prefix}:{{{key}}}"
        return [f"{base}:log", f"{base}:meta"]

    def __repr__(self) -> str:
        if self._closed:
            state = "closed"
        elif self._fallback:
            state = "degraded: limiting locally"
        else:
            state = "shared"
        return (
            f"RedisRateLimiter({self._where}, prefix={self._prefix!r}, "
            f"rate={self._config.rate:g}/{self._config.period:g}s, keys={len(self._lanes)}, "
            f"{state})"
        )

    async def __aenter__(self) -> RedisRateLimiter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the protocol ---------------------------------------------------------------------

    async def acquire(self, key: RateLimitKey, *, priority: Priority = Priority.DIRECT) -> Ticket:
        """Wait until a request on ``key`` may be sent, then return its ticket.

        Raises:
            RuntimeError: the limiter is (or gets) closed.
        """
        if self._closed:
            raise RuntimeError("the rate limiter is closed")
        lane = self._lane(key)
        if self._fallback:
            self._maybe_probe()
            if not any(lane.waiting):
                return await self._local.acquire(key, priority=priority)
        level = int(priority)
        future: asyncio.Future[RedisTicket | _Divert] = asyncio.get_running_loop().create_future()
        lane.queues[level].append((future, self._clock()))
        lane.waiting[level] += 1
        if lane.task is None:
            lane.task = self._spawn(self._serve(lane))
        try:
            admitted = await future
        except asyncio.CancelledError:
            if not future.done() or future.cancelled():
                future.cancel()
                if not self._closed:
                    lane.waiting[level] -= 1
            elif future.exception() is None:
                result = future.result()
                if isinstance(result, RedisTicket):
                    self._pass_on(lane, result)
            raise
        if isinstance(admitted, _Divert):
            return await self._local.acquire(key, priority=priority)
        return admitted

    async def complete(
        self, ticket: Ticket, *, status: int | None, state: RateLimitState | None
    ) -> None:
        """Settle a ticket: its answer goes to every process's budget (or pauses it on a 429).

        Never raises a redis error: if Redis fails, the answer goes to the local fallback.

        Raises:
            RuntimeError: the ticket was already completed.
            ValueError: the ticket was not issued by this limiter.
        """
        if not isinstance(ticket, RedisTicket):
            self._local.settle(ticket, status=status, state=state)
            return
        if ticket.completed:
            raise RuntimeError(f"ticket for {ticket.key} completed twice")
        lane = self._lanes.get(ticket.key)
        if lane is None:
            raise ValueError(f"ticket for {ticket.key} was not issued by this limiter")
        ticket.completed = True
        lane.in_flight -= 1
        if status == 429:
            lane.throttled += 1
        used = self._config.headers_in_use(status, state)
        if self._fallback or self._closed:
            self._record_locally(lane, ticket, status, used)
            return
        # Shielded: a caller cancelled while settling must not keep the answer from the
        # others (the append finishes in the background).
        await asyncio.shield(self._spawn(self._complete_remote(lane, ticket, status, used)))

    def stats(self) -> list[LimiterStats]:
        """Counters of this process and its replica's estimate, per key.

        Requests admitted by the local fallback are included in the counters.
        """
        now = self._shared_now()
        local = {s.key: s for s in self._local.stats()}
        found: list[LimiterStats] = []
        for lane in self._lanes.values():
            mine = self._lane_stats(lane, now)
            other = local.pop(lane.key, None)
            if other is not None:
                estimate = other if self._fallback or mine is None else mine
                found.append(
                    attrs.evolve(
                        estimate,
                        requests=lane.requests + other.requests,
                        waits=lane.waits + other.waits,
                        total_wait=lane.total_wait + other.total_wait,
                        throttled=lane.throttled + other.throttled,
                        in_flight=lane.in_flight + other.in_flight,
                        queued=sum(lane.waiting) + other.queued,
                    )
                )
            elif mine is not None:
                found.append(mine)
        found.extend(local.values())
        return found

    def has_capacity(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> bool:
        """Whether an [acquire][d360_async.RedisRateLimiter.acquire] would likely be admitted now
        (from what this process last read)."""
        if self._closed:
            return False
        if self._fallback:
            return self._local.has_capacity(key, priority)
        lane = self._lanes.get(key)
        if lane is None:
            return True
        return lane.ahead(int(priority)) == 0 and lane.replica.wait_time(self._shared_now()) == 0.0

    def next_available(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> float:
        """Seconds until an [acquire][d360_async.RedisRateLimiter.acquire] would be admitted, from
        what this process last read of the shared log.

        Other processes' requests since then are not known here, so this is a lower bound
        when the key is busy elsewhere.
        """
        if self._fallback:
            return self._local.next_available(key, priority)
        lane = self._lanes.get(key)
        if lane is None:
            return 0.0
        need = lane.ahead(int(priority)) + 1
        return lane.replica.wait_time(self._shared_now(), float(need))

    def paused_for(self, key: RateLimitKey) -> float:
        """Seconds until the server lets ``key`` spend again, as it said, from what this
        process last read of the shared log (see the protocol)."""
        if self._fallback:
            return self._local.paused_for(key)
        lane = self._lanes.get(key)
        if lane is None:
            return 0.0
        return lane.replica.server_wait(self._shared_now())

    def budget(self, key: RateLimitKey) -> float:
        """The sustainable requests per second on ``key``, shared by every process."""
        lane = self._lanes.get(key)
        if self._fallback or lane is None or lane.replica.budget is None:
            return self._local.budget(key)
        return lane.replica.budget.sustainable_rate

    async def aclose(self) -> None:
        """Stop every task, fail queued acquires with `RuntimeError`, close the client
        when this limiter created it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for lane in self._lanes.values():
            for queue in lane.queues:
                while queue:
                    future, _ = queue.popleft()
                    if not future.done():
                        future.set_exception(RuntimeError("the rate limiter was closed"))
            lane.waiting = [0] * len(Priority)
            lane.nudge()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._local.aclose()
        if self._owns_redis:
            try:
                await self._redis.aclose()
            except self._errors as exc:  # pragma: no cover - closing a dead connection
                logger.debug("closing the Redis client failed: %r", exc)

    # -- internals ------------------------------------------------------------------------

    def _shared_now(self) -> float:
        return self._clock() + self._offset

    def _lane(self, key: RateLimitKey) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            replica = Replica(self._config.new_bucket, in_flight_timeout=self._in_flight_timeout)
            lane = _Lane(key, self.redis_keys(key), replica)
            self._lanes[key] = lane
        return lane

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _call(self, lane: _Lane, event: str = "") -> Take | None:
        """Append `event` (if any) to the key's log and apply the log up to now; return the
        outcome of the appended event when it was a granted attempt."""
        replica = lane.replica
        asked_from, asked_epoch = replica.next_index, replica.epoch
        args = [
            str(asked_from),
            event,
            str(self._log_size),
            str(max(1, round(self._key_ttl * 1000))),
            secrets.token_hex(6),
            asked_epoch,
        ]
        async with asyncio.timeout(self._operation_timeout):
            raw = await self._script(keys=lane.keys, args=args)
        try:
            reply = parse_reply(raw)
        except (ValueError, TypeError) as exc:
            raise BadReply(str(exc)) from exc
        # The reply's time was read at most one round trip ago.
        self._offset = reply.now - self._clock()
        lane.fresh = True
        return replica.ingest(
            reply.epoch,
            reply.base,
            reply.lines,
            asked_from=asked_from,
            asked_epoch=asked_epoch,
            mine=reply.mine if event else None,
        )

    async def _serve(self, lane: _Lane) -> None:
        """Admit this process's waiters on one key, head first, one attempt at a time."""
        try:
            await self._serve_until_idle(lane)
        except Exception as exc:
            # A bug must not strand the waiters: hand them to the local limiter.
            logger.exception("rate limiter dispatch for %s failed", lane.key)
            self._degrade(exc)
            self._divert(lane)
        finally:
            lane.task = None

    async def _serve_until_idle(self, lane: _Lane) -> None:
        while not self._closed:
            if lane.head() is None:
                return
            if self._fallback:
                self._divert(lane)
                return
            if lane.fresh:
                wait = lane.replica.wait_time(self._shared_now())
                if wait > 0.0:
                    await self._nap(lane, wait)
                    continue
            try:
                take = await self._call(lane, ATTEMPT)
            except self._errors as exc:
                self._degrade(exc)
                continue
            if take is None:
                # Refused (another process was first, or the budget moved): look again soon.
                await self._nap(lane, max(MIN_NAP, lane.replica.wait_time(self._shared_now())))
                continue
            self._hand_over(lane, take)

    def _hand_over(self, lane: _Lane, take: Take) -> bool:
        """Give an admission to the head waiter; give it back when nobody is left."""
        head = lane.head()
        if head is None:
            self._spawn(self._append(lane, encode_refund(take.id)))
            return False
        (future, enqueued), level = head
        lane.queues[level].popleft()
        lane.waiting[level] -= 1
        now = self._clock()
        waited = now - enqueued
        lane.in_flight += 1
        lane.requests += 1
        if waited > 0.0:
            lane.waits += 1
            lane.total_wait += waited
        future.set_result(
            RedisTicket(
                lane.key,
                now,
                waited,
                Priority(level),
                seq=take.seq,
                take=take.id,
                sent=take.sent,
            )
        )
        return True

    def _pass_on(self, lane: _Lane, ticket: RedisTicket) -> None:
        """An admitted caller was cancelled before it could send: the next one gets its slot."""
        ticket.completed = True
        lane.in_flight -= 1
        lane.requests -= 1
        if not self._closed:
            self._hand_over(lane, Take(ticket.take, ticket.seq, ticket.sent))

    async def _append(self, lane: _Lane, event: str) -> None:
        if self._fallback or self._closed:
            return
        try:
            await self._call(lane, event)
        except self._errors as exc:
            self._degrade(exc)

    async def _complete_remote(
        self,
        lane: _Lane,
        ticket: RedisTicket,
        status: int | None,
        state: RateLimitState | None,
    ) -> None:
        try:
            await self._call(lane, encode_record(ticket.take, status, state))
        except self._errors as exc:
            self._degrade(exc)
            self._record_locally(lane, ticket, status, state)
        else:
            lane.nudge()

    def _record_locally(
        self,
        lane: _Lane,
        ticket: RedisTicket,
        status: int | None,
        state: RateLimitState | None,
    ) -> None:
        """An answer to a shared admission while Redis is away: the replica, now driven by
        the local fallback, takes it as it is."""
        self._local._record(lane.key, status, state, sent=ticket.sent, seq=ticket.seq)

    async def _nap(self, lane: _Lane, wait: float) -> None:
        """Sleep until an attempt should be granted (bounded, jittered), or until nudged.

        The jitter only keeps processes that computed the same wake-up from reaching Redis in
        the same instant; one script call takes well under a millisecond, so a millisecond is
        plenty.
        """
        delay = min(wait, self._max_sleep)
        delay += random.uniform(0.0, min(NAP_JITTER, delay * 0.1))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        handle = asyncio.get_running_loop().call_later(delay, _resolve, future)
        lane.wake = future
        lane.fresh = False
        try:
            await future
        finally:
            handle.cancel()
            lane.wake = None

    def _degrade(self, exc: BaseException) -> None:
        """Switch to the local fallback (once per outage, with one warning)."""
        if self._fallback or self._closed:
            return
        self._fallback = True
        self._next_probe = self._clock() + self._probe_interval
        logger.warning(
            "Redis %s unreachable (%s: %s); rate limits are now enforced per process until it "
            "answers again",
            self._where,
            type(exc).__name__,
            exc,
        )
        for lane in self._lanes.values():
            # Carry on with the replica itself: pauses, credits and the learned policy.
            if lane.replica.budget is not None:
                self._local._adopt(lane.key, lane.replica.budget)
            lane.nudge()

    def _divert(self, lane: _Lane) -> None:
        """Send this key's queued callers to the local limiter, in their order."""
        for queue in lane.queues:
            while queue:
                future, _ = queue.popleft()
                if not future.done():
                    future.set_result(_DIVERT)
        lane.waiting = [0] * len(Priority)

    def _maybe_probe(self) -> None:
        if self._probe is None and self._clock() >= self._next_probe:
            self._next_probe = self._clock() + self._probe_interval
            self._probe = self._spawn(self._run_probe())

    async def _run_probe(self) -> None:
        try:
            async with asyncio.timeout(self._operation_timeout):
                await self._redis.ping()
        except self._errors as exc:
            logger.debug("Redis %s still unreachable: %r", self._where, exc)
            return
        finally:
            self._probe = None
        if self._fallback and not self._closed:
            # Idle connections opened before the outage are dead: drop them, so that the
            # first calls after it do not fail on them and start a second outage.
            pool = getattr(self._redis, "connection_pool", None)
            if pool is not None:
                try:
                    await pool.disconnect(inuse_connections=False)
                except self._errors as exc:  # pragma: no cover - closing dead sockets
                    logger.debug("dropping stale Redis connections failed: %r", exc)
            self._fallback = False
            logger.info("Redis %s answers again; rate limits are shared again", self._where)

    def _lane_stats(self, lane: _Lane, now: float) -> LimiterStats | None:
        budget = lane.replica.budget
        if budget is None:
            return None
        return budget_stats(
            lane.key,
            budget,
            max(now, lane.replica.now),
            requests=lane.requests,
            waits=lane.waits,
            total_wait=lane.total_wait,
            throttled=lane.throttled,
            in_flight=lane.in_flight,
            queued=sum(lane.waiting),
        )


def redis_modules(owner: str) -> tuple[Any, Any]:
    """``redis.asyncio`` and ``redis.exceptions``, or an `ImportError` naming the extra."""
    try:
        import redis.asyncio as redis_asyncio
        import redis.exceptions as redis_exceptions
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"{owner} needs redis-py: pip install 'd360-async[redis]'") from exc
    return redis_asyncio, redis_exceptions


def check_seconds(**values: float) -> None:
    """Raise `ValueError` naming the first setting that is not a positive number of seconds."""
    for name, value in values.items():
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


def _describe(client: Any) -> str:
    """Where the client connects, for logs (never its password)."""
    try:
        kwargs = client.connection_pool.connection_kwargs
    except AttributeError:
        return "(unknown address)"
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
