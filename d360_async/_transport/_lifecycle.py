"""The lifecycle every client shares: it owns one `Transport` and closes it once."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from d360_async._core._ratelimit._protocol import RateLimiter
from d360_async._transport._transport import Transport

__all__ = ["TransportOwner"]


class TransportOwner:
    """Base of [Client][d360_async.Client] and ``SmartDocumentorClient``: ``async with`` and
    ``aclose``.

    A closed client cannot be reopened; ``aclose`` is idempotent and closes only what the
    transport owns (a session or limiter passed in by the caller stays open).
    """

    _transport: Transport

    @property
    def closed(self) -> bool:
        """True once `aclose` has run."""
        return self._transport.closed

    @property
    def rate_limiter(self) -> RateLimiter:
        """The limiter every request of this client goes through."""
        return self._transport.limiter

    async def __aenter__(self) -> Self:
        if self._transport.closed:
            raise RuntimeError("this client is closed; create a new one")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session and the limiter this client owns; idempotent."""
        await self._transport.aclose()
