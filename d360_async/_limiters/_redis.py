"""A rate limiter whose buckets live in Redis, shared by every process using the same keys.

Each budget is one Redis hash (the token bucket of `_bucket`, field for field) and one
sorted set of the requests in flight, updated atomically by one Lua script
(``_redis.lua``, a line-for-line port of `TokenBucket`). The script reads the
time with Redis ``TIME``, so every process shares one clock, one calibration and one 429 pause.
Both keys expire after ``key_ttl`` idle seconds (longer while a pause or a reset is pending);
a request in flight is forgotten after ``in_flight_timeout`` seconds, so a crashed process
cannot hold the budget down for good. Keys hold the token's fingerprint, never the token.

Waiting is local: each process keeps its own FIFO per `Priority` for each
key, and one task per key asks Redis for a token on behalf of the head of that queue. When
there is none, the script answers how long until there will be, and the task sleeps that
long (at most ``max_sleep``, plus up to a millisecond of jitter so processes do not ask in
lockstep), or less when an answer from this process recalibrates the key.

If Redis becomes unreachable (any redis-py error or a timeout), the limiter carries on with an
internal `LocalRateLimiter`, seeded with the last state Redis reported, logs one
warning, and probes Redis (at most every ``probe_interval`` seconds, when requests come) until
it answers, which it logs once at INFO. No redis exception reaches a caller.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import itertools
import logging
import math
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

import attrs

from d360_async._core._ratelimit._bucket import BucketSnapshot, TokenBucket
from d360_async._core._ratelimit._budget import BudgetSnapshot
from d360_async._core._ratelimit._headers import RateLimitState
from d360_async._core._ratelimit._protocol import LimiterStats, Priority, RateLimitKey, Ticket
from d360_async._limiters._local import LocalRateLimiter, RateLimitConfig

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["RedisRateLimiter"]

logger = logging.getLogger("d360_async.ratelimit")

NAP_JITTER: Final = 0.001
"""Most seconds added at random to a wait for a token, to de-synchronise processes."""

SCRIPT: Final[str] = (
    importlib.resources.files(__package__).joinpath("_redis.lua").read_text(encoding="utf-8")
)
"""The Lua script that owns every bucket in Redis."""


@attrs.define(slots=True, eq=False)
class RedisTicket(Ticket):
    """A ticket admitted through Redis: ``member`` names its entry in the in-flight set."""

    member: str = ""
    remote_admitted_at: float | None = None


class BadReply(Exception):
    """Redis answered the script with something it never returns (another program's key?)."""


class _Divert:
    """Sentinel handed to queued callers when Redis failed: acquire locally instead."""

    __slots__ = ()


_DIVERT: Final = _Divert()

_Waiter = tuple["asyncio.Future[RedisTicket | _Divert]", float]


@attrs.frozen(slots=True)
class _Reply:
    result: float
    now: float
    snapshot: BucketSnapshot
    in_flight: int


def _number(raw: bytes | str) -> float | None:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return float(text) if text else None


def parse_reply(raw: list[bytes | str]) -> _Reply:
    """Decode the script's answer (a list of strings, ``""`` for none)."""
    values = [_number(item) for item in raw]
    if len(values) != 16:
        raise ValueError(f"unexpected rate-limit script reply: {raw!r}")

    def required(index: int) -> float:
        value = values[index]
        if value is None:
            raise ValueError(f"rate-limit script reply lacks item {index}: {raw!r}")
        return value

    learned = values[7]
    return _Reply(
        result=required(0),
        now=required(1),
        snapshot=BucketSnapshot(
            tokens=required(2),
            updated=required(3),
            paused_until=required(4),
            reset_at=values[5],
            spread_rate=values[6],
            learned_limit=None if learned is None else int(learned),
            remaining=values[8],
            factor=required(9),
            throttled_at=values[10],
            consecutive=int(required(11)),
            calibrated_at=values[12],
            anchor=values[13],
            period_refuted=values[14] == 1.0,
        ),
        in_flight=int(required(15)),
    )


def _arg(value: float | int | None) -> str:
    if value is None:
        return ""
    return repr(float(value))


def script_args(
    op: str,
    config: RateLimitConfig,
    *,
    key_ttl: float,
    in_flight_timeout: float,
    member: str = "",
    status: int | None = None,
    state: RateLimitState | None = None,
    admitted_at: float | None = None,
    backlog_since: float | None = None,
    now: float | None = None,
) -> list[str]:
    """The script's ARGV for one operation (``now`` overrides Redis TIME, for tests)."""
    return [
        op,
        _arg(now),
        _arg(config.rate),
        _arg(config.period),
        str(config.effective_burst),
        _arg(config.safety_margin),
        _arg(config.effective_wait_margin),
        "1" if config.adaptive else "0",
        _arg(key_ttl),
        _arg(in_flight_timeout),
        member,
        "" if status is None else str(status),
        _arg(state.limit if state is not None else None),
        _arg(state.remaining if state is not None else None),
        _arg(state.reset_after if state is not None else None),
        _arg(state.retry_after if state is not None else None),
        _arg(admitted_at),
        "1" if state is not None else "0",
        _arg(backlog_since),
        _arg(config.effective_epoch_margin),
        "1" if state is not None and state.reset_is_epoch else "0",
        "1" if state is not None and state.retry_is_date else "0",
    ]


class _Lane:
    """This process's view of one key: its queues, counters and last known bucket."""

    __slots__ = (
        "backlog_since",
        "in_flight",
        "key",
        "keys",
        "mirror",
        "offset",
        "queues",
        "requests",
        "task",
        "throttled",
        "total_wait",
        "waiting",
        "waits",
        "wake",
    )

    def __init__(self, key: RateLimitKey, keys: list[str], mirror: TokenBucket) -> None:
        self.key = key
        self.keys = keys
        self.mirror = mirror
        self.offset: float | None = None  # our clock minus Redis's, from the last answer
        self.backlog_since = 0.0  # when the current run of waiting began, our clock
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
    """A `RateLimiter` whose budgets are shared through Redis.

    Args:
        redis: a ``redis.asyncio.Redis`` client (borrowed: not closed by
            [aclose][d360_async.RedisRateLimiter.aclose]) or a URL such as
            ``"redis://localhost:6379/0"`` (a client is created and owned).
        config: the pacing settings (every process sharing a key should use the same).
        prefix: the start of every Redis key this limiter writes.
        key_ttl: seconds an idle key is kept.
        in_flight_timeout: seconds after which an admitted request that was never completed
            (its process died) stops counting as in flight.
        probe_interval: least seconds between attempts to reach Redis again after a failure.
        operation_timeout: longest wait for one Redis round trip before falling back.
        max_sleep: longest sleep between two questions to Redis while waiting.
        clock: this process's monotonic clock (for local waits, stats and the fallback).

    Added in version 0.1.0."""

    __slots__ = (
        "_clock",
        "_closed",
        "_config",
        "_errors",
        "_fallback",
        "_in_flight_timeout",
        "_instance",
        "_key_ttl",
        "_lanes",
        "_local",
        "_max_sleep",
        "_next_probe",
        "_operation_timeout",
        "_owns_redis",
        "_prefix",
        "_probe",
        "_probe_interval",
        "_redis",
        "_script",
        "_serial",
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            import redis.asyncio as redis_asyncio
            import redis.exceptions as redis_exceptions
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "RedisRateLimiter needs redis-py: pip install 'd360-async[redis]'"
            ) from exc
        for name, value in (
            ("key_ttl", key_ttl),
            ("in_flight_timeout", in_flight_timeout),
            ("probe_interval", probe_interval),
            ("operation_timeout", operation_timeout),
            ("max_sleep", max_sleep),
        ):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
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
        self._clock = clock
        self._errors: tuple[type[BaseException], ...] = (
            redis_exceptions.RedisError,
            OSError,
            TimeoutError,
            BadReply,
        )
        self._script: AsyncScript = self._redis.register_script(SCRIPT)
        self._local = LocalRateLimiter(self._config, clock=clock)
        self._lanes: dict[RateLimitKey, _Lane] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fallback = False
        self._next_probe = -math.inf
        self._probe: asyncio.Task[None] | None = None
        self._instance = secrets.token_hex(6)
        self._serial = itertools.count(1)
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
        """The two Redis keys holding ``key``'s budget (hash-tagged: one cluster slot)."""
        base = f"{self._prefix}:{{{key}}}"
        return [f"{base}:bucket", f"{base}:inflight"]

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
            lane.backlog_since = self._clock()
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
        """Settle a ticket: calibrate the shared bucket from the answer, or pause it on a 429.

        Never raises a redis error: if Redis fails, the answer calibrates the local fallback.

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
            self._local._feedback(ticket.key, status, used, admitted_at=ticket.admitted_at)
            return
        # Shielded: a caller cancelled while settling must not leave the shared state half
        # told (the update finishes in the background).
        await asyncio.shield(self._spawn(self._complete_remote(lane, ticket, status, used)))

    def stats(self) -> list[LimiterStats]:
        """Counters of this process and the last known shared estimate, per key.

        Requests admitted by the local fallback are included in the counters.
        """
        now = self._clock()
        local = {s.key: s for s in self._local.stats()}
        found: list[LimiterStats] = []
        for lane in self._lanes.values():
            mine = self._lane_stats(lane, now)
            other = local.pop(lane.key, None)
            if other is not None:
                estimate = other if self._fallback else mine
                mine = attrs.evolve(
                    estimate,
                    requests=mine.requests + other.requests,
                    waits=mine.waits + other.waits,
                    total_wait=mine.total_wait + other.total_wait,
                    throttled=mine.throttled + other.throttled,
                    in_flight=mine.in_flight + other.in_flight,
                    queued=mine.queued + other.queued,
                )
            found.append(mine)
        found.extend(local.values())
        return found

    def has_capacity(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> bool:
        """Whether an [acquire][d360_async.RedisRateLimiter.acquire] would likely be admitted now
        (from the last answer)."""
        if self._closed:
            return False
        if self._fallback:
            return self._local.has_capacity(key, priority)
        lane = self._lanes.get(key)
        if lane is None:
            return True
        return lane.ahead(int(priority)) == 0 and lane.mirror.wait_time(self._clock()) == 0.0

    def next_available(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> float:
        """Seconds until an [acquire][d360_async.RedisRateLimiter.acquire] would be admitted, from
        the last shared state.

        Other processes' requests since that answer are not known here, so this is a lower
        bound when the key is busy elsewhere.
        """
        if self._fallback:
            return self._local.next_available(key, priority)
        lane = self._lanes.get(key)
        if lane is None:
            return 0.0
        need = lane.ahead(int(priority)) + 1
        return lane.mirror.wait_time(self._clock(), float(need))

    def budget(self, key: RateLimitKey) -> float:
        """The sustainable requests per second on ``key``, shared by every process."""
        if self._fallback:
            return self._local.budget(key)
        lane = self._lanes.get(key)
        if lane is None:
            return self._local.budget(key)
        return lane.mirror.sustainable_rate

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

    def _lane(self, key: RateLimitKey) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            lane = _Lane(key, self.redis_keys(key), _token_bucket(self._config, self._clock()))
            self._lanes[key] = lane
        return lane

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _call(
        self,
        lane: _Lane,
        op: str,
        *,
        member: str = "",
        status: int | None = None,
        state: RateLimitState | None = None,
        admitted_at: float | None = None,
        backlog_since: float | None = None,
    ) -> _Reply:
        args = script_args(
            op,
            self._config,
            key_ttl=self._key_ttl,
            in_flight_timeout=self._in_flight_timeout,
            member=member,
            status=status,
            state=state,
            admitted_at=admitted_at,
            backlog_since=backlog_since,
        )
        async with asyncio.timeout(self._operation_timeout):
            raw = await self._script(keys=lane.keys, args=args)
        try:
            reply = parse_reply(raw)
        except (ValueError, TypeError, AttributeError) as exc:
            raise BadReply(str(exc)) from exc
        # Redis time to ours: the answer was computed at most one round trip ago.
        lane.offset = offset = self._clock() - reply.now
        lane.mirror.restore(reply.snapshot.shifted(offset))
        return reply

    async def _serve(self, lane: _Lane) -> None:
        """Admit this process's waiters on one key, head first, one Redis answer at a time."""
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
            member = f"{self._instance}:{next(self._serial)}"
            # This process has had a caller waiting since backlog_since: a token completed
            # meanwhile was due to it, even if our nap ended late (see TokenBucket.advance).
            since = None if lane.offset is None else lane.backlog_since - lane.offset
            try:
                reply = await self._call(lane, "acquire", member=member, backlog_since=since)
            except self._errors as exc:
                self._degrade(exc)
                continue
            if reply.result > 0.0:
                await self._nap(lane, reply.result)
                continue
            self._hand_over(lane, member, reply.now)

    def _hand_over(self, lane: _Lane, member: str, remote_now: float | None) -> bool:
        """Give an admission to the head waiter; refund it when nobody is left."""
        head = lane.head()
        if head is None:
            self._spawn(self._refund(lane, member))
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
                member=member,
                remote_admitted_at=remote_now,
            )
        )
        return True

    def _pass_on(self, lane: _Lane, ticket: RedisTicket) -> None:
        """An admitted caller was cancelled before it could send: the next one gets its slot."""
        ticket.completed = True
        lane.in_flight -= 1
        lane.requests -= 1
        if not self._closed:
            self._hand_over(lane, ticket.member, ticket.remote_admitted_at)

    async def _refund(self, lane: _Lane, member: str) -> None:
        if self._fallback or self._closed:
            return
        try:
            await self._call(lane, "refund", member=member)
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
            await self._call(
                lane,
                "complete",
                member=ticket.member,
                status=status,
                state=state,
                admitted_at=ticket.remote_admitted_at,
            )
        except self._errors as exc:
            self._degrade(exc)
            self._local._feedback(ticket.key, status, state, admitted_at=ticket.admitted_at)
        else:
            lane.nudge()

    async def _nap(self, lane: _Lane, wait: float) -> None:
        """Sleep until a token should be there (bounded, jittered), or until nudged.

        The jitter only keeps processes that computed the same wake-up from reaching Redis in
        the same instant; one script call takes well under a millisecond, so a millisecond is
        plenty. Waking late costs no token (the backlog is credited, see ``_serve_until_idle``)
        but delays the request, so the jitter is kept that small.
        """
        delay = min(wait, self._max_sleep)
        delay += random.uniform(0.0, min(NAP_JITTER, delay * 0.1))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        handle = asyncio.get_running_loop().call_later(delay, _resolve, future)
        lane.wake = future
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
            # Carry on from what Redis last said: pauses and calibration survive the switch.
            self._local._seed(lane.key, _as_budget(lane.mirror))
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
            self._fallback = False
            logger.info("Redis %s answers again; rate limits are shared again", self._where)

    def _lane_stats(self, lane: _Lane, now: float) -> LimiterStats:
        bucket = lane.mirror
        bucket.advance(now)
        reset_at = bucket.reset_at
        return LimiterStats(
            key=lane.key,
            requests=lane.requests,
            waits=lane.waits,
            total_wait=lane.total_wait,
            throttled=lane.throttled,
            limit=bucket.learned_limit,
            remaining=bucket.remaining,
            reset_after=reset_at - now if reset_at is not None and reset_at > now else None,
            rate=bucket.rate,
            in_flight=lane.in_flight,
            queued=sum(lane.waiting),
            paused_for=max(0.0, bucket.paused_until - now),
            budget=bucket.sustainable_rate,
        )


def _token_bucket(config: RateLimitConfig, now: float) -> TokenBucket:
    """The bucket the script keeps, with these settings."""
    return TokenBucket(config.rate, config.period, now=now, **config.pacing())


def _as_budget(bucket: TokenBucket) -> BudgetSnapshot:
    """What the shared bucket knew, for the local fallback to continue from."""
    return BudgetSnapshot(
        credits=bucket.remaining,
        grant_at=bucket.reset_at,
        paused_until=bucket.paused_until,
        limit=int(bucket.limit),
        window=bucket.period,
        family="unknown",
        end_lo=None,
        end_hi=bucket.reset_at,
        refill_rate=0.0,
        factor=bucket.factor,
        rate=max(bucket.rate, bucket.sustainable_rate),
    )


def _describe(client: Any) -> str:
    """Where the client connects, for logs (never its password)."""
    try:
        kwargs = client.connection_pool.connection_kwargs
    except AttributeError:
        return "(unknown address)"
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
