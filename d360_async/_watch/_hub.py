"""One poll per operation across processes: the observation hub on Redis.

The watches of one process already poll each operation once between them (`_observe`).  An
[ObservationHub][d360_async.ObservationHub] extends that to every process using the same Redis
and prefix:

* **Leases.**  For each operation a process watches, it tries to take a lease (after a
  random pause of up to `SPREAD`, so that processes starting together share the leases out):
  one Redis string per topic, ``SET NX PX lease_ttl`` holding the process's instance id.  The holder
  polls the operation (through its watches, at the most demanding policy among them) and
  renews the lease every ``lease_ttl / 3``; the other processes park their copies.  One Lua
  script takes, renews or reports the time left of a lease in one round trip, pipelined over
  every topic that needs it.
* **The stream.**  Each poll the holder makes is appended to one Redis Stream
  (``XADD ... MAXLEN ~ stream_maxlen``; entry format in `d360_async._core._watch._wire`),
  and every process reads it (``XREAD BLOCK``) and hands each entry to its local watches of
  that operation, which apply their own semantics to it (first sight, ``until=``,
  deadlines, checkpoints).
* **Takeover.**  A process that does not hold a lease learns how long it has left (``PTTL``)
  and asks again the moment it expires, so if the holder dies (even by ``kill -9``), its
  operations are taken over by another process within the lease TTL of its last renewal.  A
  holder whose operation ended in it lets the lease expire (the others are reading the
  terminal status meanwhile, so nobody polls it again); one that stops watching an operation
  that has not finished deletes its lease, so another process takes over at once.
* **Nothing grows.**  Leases expire by themselves; the stream is trimmed to about
  ``stream_maxlen`` entries and expires ``key_ttl`` seconds after its last write.
* **Loss of Redis.**  Any Redis error or time-out switches the hub to local polling: every
  process polls the operations it watches itself (the watches' own state makes sure no
  transition is repeated or lost), one warning is logged; the hub probes Redis every
  ``probe_interval`` seconds and, once it answers, logs it once at INFO and goes back to
  leases (keeping the polling local until another process is seen to hold the lease, so there
  is no gap).

The budget is shared separately, through [RedisRateLimiter][d360_async.RedisRateLimiter].
"""

from __future__ import annotations

import logging
import math
import random
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs
from anyio.abc import TaskGroup

from d360_async._clock import Clock, as_clock
from d360_async._core._target_protocol import Observation
from d360_async._core._watch._sharing import Topic
from d360_async._core._watch._wire import decode_entry, encode_entry, encode_release
from d360_async._limiters._redis import _describe, check_seconds, redis_modules

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

    from d360_async._watch._observe import PollRegistry

__all__ = ["HubStats", "ObservationHub"]

logger = logging.getLogger("d360_async.watch.hub")

LEASE_SCRIPT: Final = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, tonumber(ARGV[2])}
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {2, tonumber(ARGV[2])}
end
return {0, redis.call('PTTL', KEYS[1])}
"""
"""Take a free lease (1), renew ours (2), or report another holder's milliseconds left (0)."""

RELEASE_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
"""Delete a lease only if it is ours."""

BATCH: Final = 512
"""Most entries written or read in one round trip."""

SPREAD: Final = 0.1
"""Most seconds (at most a tenth of the lease TTL) a process waits, at random, before it
first asks for the lease of an operation it starts watching.  Processes that start watching
the same operations together then win about as many leases each, instead of the quickest
taking them all and polling everything alone."""


@attrs.frozen(slots=True)
class HubStats:
    """What an [ObservationHub][d360_async.ObservationHub] has done
    ([ObservationHub.stats][d360_async.ObservationHub.stats]).

    Added in version 0.1.0.

    Attributes:
        topics: operations this process watches through the hub.
        held: of those, the ones whose lease this process holds (it polls them).
        remote: the ones another process polls.
        published: polls of this process written to the stream.
        received: entries of other processes handed to this process's watches.
        takeovers: leases taken from another process that had held them (it died, or
            stopped watching the operation).
        degraded: Redis is unreachable and this process polls everything itself.
        outages: times Redis was lost so far.
    """

    topics: int
    held: int
    remote: int
    published: int
    received: int
    takeovers: int
    degraded: bool
    outages: int


class _Lease:
    __slots__ = ("held", "retry_at", "seen_other", "terminal")

    def __init__(self) -> None:
        self.held = False  # this process holds it (and so polls the topic)
        self.retry_at = -math.inf  # when to ask for the lease again (monotonic)
        self.seen_other = False  # another process was seen holding it
        self.terminal = False  # the last poll published saw a terminal phase


class ObservationHub:
    """Poll each watched operation once across processes, through Redis.

    Give every process (the workers of a web service, say) the same Redis, prefix and
    token; pass the hub to the [Client][d360_async.Client] and share the budget with a
    [RedisRateLimiter][d360_async.RedisRateLimiter]:

    ```python
    async with (
        RedisRateLimiter(redis_url) as limiter,
        ObservationHub(redis_url) as hub,
        Client(api_token=token, rate_limiter=limiter, hub=hub) as client,
    ):
        async with client.watch(targets) as watch:
            ...  # one process polls each export; every process gets every transition
    ```

    See [the Redis page](redis.md#one-poll-per-operation-across-processes)
    for how leases, the stream, takeover and the fallback work.

    Args:
        redis: a ``redis.asyncio.Redis`` client (borrowed: not closed by
            [aclose][d360_async.ObservationHub.aclose]) or a URL (a client is created and
            owned).  Its socket timeout must exceed ``block``.
        prefix: the start of every Redis key the hub writes.
        lease_ttl: seconds a lease lasts unless renewed: how long the operations of a
            process that died go unpolled at most.
        stream_maxlen: entries the stream keeps (approximately; ``MAXLEN ~``).  A reader
            further behind than this misses entries (it then polls nothing it missed: its
            watches see the next entries, or poll themselves after a takeover).
        key_ttl: seconds the stream is kept after its last write.
        block: longest a read of the stream waits for new entries.
        probe_interval: seconds between attempts to reach Redis again after a failure.
        operation_timeout: longest wait for one Redis round trip before falling back.
        clock: where its time comes from ([Clock][d360_async.Clock]; its ``monotonic()``
            times lease renewals and the moments to ask again).

    Raises:
        ValueError: a duration or size that is not positive, or ``lease_ttl`` shorter than
            three times ``operation_timeout`` would allow renewing in time.

    Added in version 0.1.0.
    """

    def __init__(
        self,
        redis: Redis | str,
        *,
        prefix: str = "d360-async:watch",
        lease_ttl: float = 5.0,
        stream_maxlen: int = 10_000,
        key_ttl: float = 3600.0,
        block: float = 0.5,
        probe_interval: float = 2.0,
        operation_timeout: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        redis_asyncio, redis_exceptions = redis_modules("ObservationHub")
        check_seconds(
            lease_ttl=lease_ttl,
            key_ttl=key_ttl,
            block=block,
            probe_interval=probe_interval,
            operation_timeout=operation_timeout,
        )
        if (
            isinstance(stream_maxlen, bool)
            or not isinstance(stream_maxlen, int)
            or stream_maxlen < 1
        ):
            raise ValueError(f"stream_maxlen must be an int >= 1, got {stream_maxlen!r}")
        if lease_ttl < 3 * operation_timeout:
            raise ValueError(
                f"lease_ttl ({lease_ttl:g} s) must be at least 3 x operation_timeout "
                f"({operation_timeout:g} s), or a slow renewal loses the lease"
            )
        if isinstance(redis, str):
            self._redis: Redis = redis_asyncio.Redis.from_url(
                redis,
                socket_connect_timeout=operation_timeout,
                socket_timeout=operation_timeout + block,
            )
            self._owns_redis = True
        else:
            self._redis = redis
            self._owns_redis = False
        self._errors: tuple[type[BaseException], ...] = (
            redis_exceptions.RedisError,
            OSError,
            TimeoutError,
            ValueError,
            TypeError,
            IndexError,
        )
        self._lease_script: AsyncScript = self._redis.register_script(LEASE_SCRIPT)
        self._release_script: AsyncScript = self._redis.register_script(RELEASE_SCRIPT)
        self._prefix = prefix
        self._stream = f"{prefix}:stream"
        self._lease_ttl = lease_ttl
        self._maxlen = stream_maxlen
        self._key_ttl = key_ttl
        self._block = block
        self._probe_interval = probe_interval
        self._timeout = operation_timeout
        self._clock = as_clock(clock, owner="ObservationHub")
        self.instance = secrets.token_hex(8)
        """This process's id in Redis (lease values, stream entries)."""
        self._registry: PollRegistry | None = None
        self._leases: dict[Topic, _Lease] = {}
        self._release: set[Topic] = set()  # leases to delete (we stopped watching early)
        self._outbox: deque[dict[str, str]] = deque()
        self._tg: TaskGroup | None = None
        self._running = False
        self._degraded = False
        self._outages = 0
        self._published = 0
        self._received = 0
        self._takeovers = 0
        # Created on entering (an event belongs to a running loop).
        self._lease_wake: anyio.Event | None = None
        self._writer_wake: anyio.Event | None = None
        self._recovered: anyio.Event | None = None
        self._where = _describe(self._redis)

    def __repr__(self) -> str:
        state = (
            "degraded: polling locally"
            if self._degraded
            else ("running" if self._running else "idle")
        )
        held = sum(1 for lease in self._leases.values() if lease.held)
        return (
            f"ObservationHub({self._where}, prefix={self._prefix!r}, topics={len(self._leases)}, "
            f"held={held}, {state})"
        )

    # -- public ---------------------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and this process polls everything it watches."""
        return self._degraded

    @property
    def lease_ttl(self) -> float:
        """Seconds a lease lasts unless renewed."""
        return self._lease_ttl

    def lease_key(self, topic: Topic) -> str:
        """The Redis key of ``topic``'s lease (``topic`` is ``(kind, key)`` of a target)."""
        return f"{self._prefix}:lease:{topic[0]}:{topic[1]}"

    @property
    def stream_key(self) -> str:
        """The Redis key of the stream of observations."""
        return self._stream

    def held(self) -> set[Topic]:
        """The topics whose lease this process holds now (it polls them for every process)."""
        return {topic for topic, lease in self._leases.items() if lease.held}

    def stats(self) -> HubStats:
        """Topics, leases held, entries written and read, takeovers and outages so far."""
        held = sum(1 for lease in self._leases.values() if lease.held)
        registry = self._registry
        remote = 0 if registry is None else sum(1 for t in self._leases if registry.remote(t))
        return HubStats(
            topics=len(self._leases),
            held=held,
            remote=remote,
            published=self._published,
            received=self._received,
            takeovers=self._takeovers,
            degraded=self._degraded,
            outages=self._outages,
        )

    async def __aenter__(self) -> ObservationHub:
        if self._tg is not None:
            raise RuntimeError("an ObservationHub can be entered only once")
        self._lease_wake = anyio.Event()
        self._writer_wake = anyio.Event()
        self._recovered = anyio.Event()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._running = True
        tg.start_soon(self._run_leases, name="d360-hub leases")
        tg.start_soon(self._run_reader, name="d360-hub reader")
        tg.start_soon(self._run_writer, name="d360-hub writer")
        # Watches that subscribed before the hub ran poll locally; from now on, leases decide.
        for topic in list(self._leases):
            self._leases[topic].retry_at = self._spread()
        _poke(self._lease_wake)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Give the leases held back (so other processes take over at once), stop the tasks,
        and close the Redis client if the hub created it.  The watches still running poll
        locally from then on.  Idempotent."""
        if not self._running:
            return
        self._running = False
        held = [topic for topic, lease in self._leases.items() if lease.held]
        for topic in list(self._leases):
            self._leases[topic].held = False
            if self._registry is not None:
                self._registry.set_remote(topic, False)
        with anyio.CancelScope(shield=True):
            if held and not self._degraded:
                try:
                    with anyio.fail_after(self._timeout):
                        async with self._redis.pipeline(transaction=False) as pipe:
                            await self._queue_release(pipe, held)
                            await pipe.execute()
                except self._errors as exc:
                    logger.debug("giving leases back failed: %r", exc)
        if self._tg is not None:
            # Outside the shield: the task group's scope was entered before it.
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True):
            if self._owns_redis:
                try:
                    await self._redis.aclose()
                except self._errors as exc:  # pragma: no cover - closing a dead connection
                    logger.debug("closing the Redis client failed: %r", exc)

    # -- the registry's side ------------------------------------------------------------------

    def attach(self, registry: PollRegistry) -> None:
        """Serve ``registry`` (a client's); a hub serves one client.

        Raises:
            RuntimeError: it already serves another.
        """
        if self._registry is not None and self._registry is not registry:
            raise RuntimeError("this ObservationHub already serves another client")
        self._registry = registry
        registry.hub = self

    def starts_remote(self, topic: Topic) -> bool:
        """Whether a newly watched topic waits for the lease before anyone local polls it."""
        return self._running and not self._degraded

    def track(self, topic: Topic) -> None:
        """The process watches ``topic`` now: ask for its lease."""
        if topic in self._leases:
            return
        self._leases[topic] = lease = _Lease()
        lease.retry_at = self._spread()
        self._release.discard(topic)
        _poke(self._lease_wake)

    def untrack(self, topic: Topic) -> None:
        """No watch of the process includes ``topic`` any more."""
        lease = self._leases.pop(topic, None)
        if lease is not None and lease.held and not lease.terminal:
            # Others may still want it: let them take over now, not when it expires.
            self._release.add(topic)
            _poke(self._lease_wake)

    def publish(
        self, topic: Topic, observation: Observation[Any] | None, failure: Exception | None
    ) -> None:
        """A local watch polled ``topic``: write it to the stream if we hold the lease."""
        lease = self._leases.get(topic)
        if lease is None or not lease.held or self._degraded or not self._running:
            return
        lease.terminal = observation is not None and observation.phase.is_terminal
        self._outbox.append(encode_entry(topic, self.instance, observation, failure))
        _poke(self._writer_wake)

    # -- tasks ----------------------------------------------------------------------------------

    def _degrade(self, exc: BaseException) -> None:
        """Redis failed: every process polls for itself until it answers again."""
        if self._degraded or not self._running:
            return
        self._degraded = True
        self._outages += 1
        self._recovered = anyio.Event()
        self._outbox.clear()
        logger.warning(
            "Redis %s unreachable (%s: %s); the observation hub falls back to polling every "
            "watched operation in this process until it answers again",
            self._where,
            type(exc).__name__,
            exc,
        )
        for topic, lease in self._leases.items():
            lease.held = False
            lease.retry_at = -math.inf
            if self._registry is not None:
                self._registry.set_remote(topic, False)
        _poke(self._lease_wake)

    def _recover(self) -> None:
        self._degraded = False
        logger.info("Redis %s answers again; the observation hub shares polls again", self._where)
        for lease in self._leases.values():
            lease.retry_at = self._spread()
        _poke(self._recovered)

    def _spread(self) -> float:
        """When to first ask for a lease: now, plus a random share of `SPREAD`."""
        return self._clock.monotonic() + random.uniform(0.0, min(SPREAD, self._lease_ttl / 10))

    async def _run_leases(self) -> None:
        renew_every = self._lease_ttl / 3
        next_renew = -math.inf
        while True:
            if self._degraded:
                await anyio.sleep(self._probe_interval)
                try:
                    with anyio.fail_after(self._timeout):
                        # Idle connections may predate a restart of the server: drop them,
                        # or the first command after the recovery fails on a closed socket.
                        await self._redis.connection_pool.disconnect(inuse_connections=False)
                        await self._redis.ping()
                except self._errors as exc:
                    logger.debug("Redis %s still unreachable: %r", self._where, exc)
                    continue
                self._recover()
                next_renew = -math.inf
                continue
            # A fresh event before the round: a topic tracked during it wakes us at once.
            self._lease_wake = event = anyio.Event()
            now = self._clock.monotonic()
            renew = now >= next_renew
            asking = [
                topic
                for topic, lease in self._leases.items()
                if (lease.held and renew) or (not lease.held and lease.retry_at <= now)
            ]
            releasing = list(self._release)
            if asking or releasing:
                try:
                    await self._lease_round(asking, releasing)
                except self._errors as exc:
                    self._degrade(exc)
                    continue
            if renew:
                next_renew = now + renew_every
            wake = min(
                [next_renew] + [lease.retry_at for lease in self._leases.values() if not lease.held]
            )
            delay = wake - self._clock.monotonic()
            if delay > 0:
                with anyio.move_on_after(delay):
                    await event.wait()

    async def _lease_round(self, asking: list[Topic], releasing: list[Topic]) -> None:
        ttl_ms = str(max(1, int(self._lease_ttl * 1000)))
        with anyio.fail_after(self._timeout):
            async with self._redis.pipeline(transaction=False) as pipe:
                for topic in asking:
                    await self._lease_script(
                        keys=[self.lease_key(topic)], args=[self.instance, ttl_ms], client=pipe
                    )
                await self._queue_release(pipe, releasing)
                replies = await pipe.execute()
        self._release.difference_update(releasing)
        now = self._clock.monotonic()
        registry = self._registry
        for topic, reply in zip(asking, replies, strict=False):
            code, ms = int(reply[0]), int(reply[1])
            lease = self._leases.get(topic)
            if lease is None:
                if code in (1, 2):
                    self._release.add(topic)  # untracked meanwhile: give it back
                continue
            if code in (1, 2):
                if code == 1 and lease.seen_other:
                    self._takeovers += 1
                if not lease.held:
                    lease.held = True
                    if registry is not None:
                        registry.set_remote(topic, False)
            else:
                lease.seen_other = True
                lease.held = False
                # Ask again the moment it expires (a lease without a TTL: in a lease period).
                left = ms / 1000 if ms >= 0 else self._lease_ttl
                lease.retry_at = now + left
                if registry is not None:
                    registry.set_remote(topic, True)

    async def _queue_release(self, pipe: Any, topics: list[Topic]) -> None:
        """Add to ``pipe``: delete our leases of ``topics``, and tell the other processes
        through the stream, so that one of them takes each over at once."""
        for topic in topics:
            await self._release_script(
                keys=[self.lease_key(topic)], args=[self.instance], client=pipe
            )
        for topic in topics:
            entry: dict[Any, Any] = encode_release(topic, self.instance)
            pipe.xadd(self._stream, entry, maxlen=self._maxlen, approximate=True)

    async def _run_writer(self) -> None:
        outbox = self._outbox
        maxlen, ttl_ms = self._maxlen, max(1, int(self._key_ttl * 1000))
        while True:
            if self._degraded:
                await _wait(self._recovered)
                continue
            if not outbox:
                self._writer_wake = event = anyio.Event()
                await event.wait()
                continue
            batch = [outbox.popleft() for _ in range(min(BATCH, len(outbox)))]
            try:
                with anyio.fail_after(self._timeout):
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for fields in batch:
                            entry: dict[Any, Any] = dict(fields)
                            pipe.xadd(self._stream, entry, maxlen=maxlen, approximate=True)
                        pipe.pexpire(self._stream, ttl_ms)
                        await pipe.execute()
            except self._errors as exc:
                self._degrade(exc)
                continue
            self._published += len(batch)

    async def _run_reader(self) -> None:
        last: str | None = None
        block_ms = max(1, int(self._block * 1000))
        while True:
            if self._degraded:
                last = None
                await _wait(self._recovered)
                continue
            try:
                with anyio.fail_after(self._timeout + self._block):
                    if last is None:
                        # Start at the end: what was written before we watched is not ours.
                        newest: Any = await self._redis.xrevrange(self._stream, count=1)
                        last = _id(newest[0][0]) if newest else "0-0"
                    replies: Any = await self._redis.xread(
                        {self._stream: last}, count=BATCH, block=block_ms
                    )
            except self._errors as exc:
                self._degrade(exc)
                continue
            registry = self._registry
            streams = replies.items() if isinstance(replies, dict) else replies or ()
            for _stream, entries in streams:
                for entry_id, fields in entries:
                    last = _id(entry_id)
                    wire = decode_entry(fields)
                    if wire is None:
                        logger.debug("skipped a stream entry this version cannot read")
                        continue
                    if wire.origin == self.instance or registry is None:
                        continue
                    lease = self._leases.get(wire.topic)
                    if lease is None:
                        continue
                    if wire.released:
                        if not lease.held:
                            lease.retry_at = -math.inf  # take it over now
                            _poke(self._lease_wake)
                        continue
                    if registry.deliver(wire.topic, wire.observation, wire.failure):
                        self._received += 1


def _poke(event: anyio.Event | None) -> None:
    if event is not None:
        event.set()


async def _wait(event: anyio.Event | None) -> None:
    if event is None:  # pragma: no cover - only while entering
        await anyio.sleep(0.05)
    else:
        await event.wait()


def _id(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
