"""Fixtures for the resource tests: the fake server on a hand-driven clock, a transport to it,
and a limiter that admits at once and records what it was asked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import attrs
import pytest

from d360_async._core._ratelimit._headers import RateLimitState
from d360_async._core._ratelimit._protocol import LimiterStats, Priority, RateLimitKey, Ticket
from d360_async._core._retry import RetryPolicy
from d360_async._resources import (
    ApiReferencesResource,
    DriveResource,
    ExportsResource,
    ImportsResource,
    V2Resource,
)
from d360_async._transport._auth import ApiTokenAuth, BearerAuth
from d360_async._transport._transport import Transport
from d360_async.testing import FakeDocument360, ManualClock

FAST_RETRY = RetryPolicy(backoff_base=0.001, backoff_cap=0.005)


@attrs.define
class RecordingLimiter:
    """Admits every request at once; remembers each acquisition and completion."""

    acquired: list[tuple[RateLimitKey, Priority]] = attrs.field(factory=list)
    completed: list[tuple[Ticket, int | None]] = attrs.field(factory=list)

    async def acquire(self, key: RateLimitKey, *, priority: Priority = Priority.DIRECT) -> Ticket:
        self.acquired.append((key, priority))
        return Ticket(key=key, admitted_at=0.0)

    async def complete(
        self, ticket: Ticket, *, status: int | None, state: RateLimitState | None
    ) -> None:
        self.completed.append((ticket, status))

    def stats(self) -> list[LimiterStats]:
        return []

    def has_capacity(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> bool:
        return True

    def next_available(self, key: RateLimitKey, priority: Priority = Priority.DIRECT) -> float:
        return 0.0

    def paused_for(self, key: RateLimitKey) -> float:
        return 0.0

    def budget(self, key: RateLimitKey) -> float:
        return 1000.0

    async def aclose(self) -> None:
        return None


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeDocument360]:
    async with FakeDocument360(clock=clock, rate_limit=None) as server:
        yield server


@pytest.fixture
def limiter() -> RecordingLimiter:
    return RecordingLimiter()


@pytest.fixture
async def transport(fake: FakeDocument360, limiter: RecordingLimiter) -> AsyncIterator[Transport]:
    transport = Transport(base_url=fake.url, limiter=limiter, retry=FAST_RETRY)
    try:
        yield transport
    finally:
        await transport.aclose()


class Resources(SimpleNamespace):
    """The resources a ``Client`` would hold; like a client, it offers them to
    ``target_from_spec``."""

    def _target_resources(self) -> tuple[object, ...]:
        return (
            self.drive,
            self.exports,
            self.imports,
            self.api_references,
            self.v2,
            self.v2.exports,
            self.v2.imports,
        )


@pytest.fixture
def api(transport: Transport, fake: FakeDocument360) -> SimpleNamespace:
    """The resources a ``Client`` would hold, built on the test transport."""
    v3 = BearerAuth(fake.api_token)
    v2 = ApiTokenAuth(fake.v2_api_token)
    return Resources(
        drive=DriveResource(transport, v3),
        exports=ExportsResource(transport, v3),
        imports=ImportsResource(transport, v3),
        api_references=ApiReferencesResource(transport, v3),
        v2=V2Resource(transport, v2),
    )
