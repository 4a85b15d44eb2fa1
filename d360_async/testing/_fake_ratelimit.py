"""The fake server's rate limiter: pure arithmetic, time passed in."""

from __future__ import annotations

import math
from collections.abc import Hashable

import attrs

from ._fake_config import FakeRateLimit

__all__ = ["RateDecision", "ServerRateLimiter"]


@attrs.frozen(slots=True)
class RateDecision:
    """The limiter's answer for one request.

    Attributes:
        allowed: whether the request is admitted (else: 429).
        limit: the configured limit.
        remaining: requests left after this one (0 when refused).
        reset_after: seconds until the budget is back to ``limit`` (the window's end, or the
            time the bucket is full again).
        retry_after: seconds until a request would be admitted (0 when admitted).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float


class ServerRateLimiter:
    """One budget per key, either a fixed window or a token bucket.

    Each key's state is two floats in a dict, so admission is O(1).
    """

    __slots__ = ("_config", "_rate", "_state")

    def __init__(self, config: FakeRateLimit) -> None:
        self._config = config
        self._rate = config.limit / config.window
        # fixed_window: [count, window_end]; token_bucket: [tokens, last_refill]
        self._state: dict[Hashable, list[float]] = {}

    @property
    def config(self) -> FakeRateLimit:
        """The configuration this limiter enforces."""
        return self._config

    def reset(self) -> None:
        """Forget every key (every budget is full again)."""
        self._state.clear()

    def admit(self, key: Hashable, now: float) -> RateDecision:
        """Spend one request of ``key``'s budget at time ``now``, if there is one."""
        if self._config.algorithm == "fixed_window":
            return self._fixed_window(key, now)
        return self._token_bucket(key, now)

    def _fixed_window(self, key: Hashable, now: float) -> RateDecision:
        limit = self._config.limit
        state = self._state.get(key)
        if state is None or now >= state[1]:
            # The window opens with the first request after the previous one closed.
            state = [0.0, now + self._config.window]
            self._state[key] = state
        reset_after = state[1] - now
        if state[0] < limit:
            state[0] += 1
            return RateDecision(True, limit, limit - int(state[0]), reset_after, 0.0)
        return RateDecision(False, limit, 0, reset_after, reset_after)

    def _token_bucket(self, key: Hashable, now: float) -> RateDecision:
        limit = self._config.limit
        rate = self._rate
        state = self._state.get(key)
        if state is None:
            state = [float(limit), now]
            self._state[key] = state
        tokens = min(float(limit), state[0] + max(0.0, now - state[1]) * rate)
        state[1] = now
        if tokens >= 1.0 - 1e-9:
            tokens = max(0.0, tokens - 1.0)
            state[0] = tokens
            return RateDecision(True, limit, math.floor(tokens), (limit - tokens) / rate, 0.0)
        state[0] = tokens
        return RateDecision(False, limit, 0, (limit - tokens) / rate, (1.0 - tokens) / rate)
