"""pytest fixtures for testing your own code against a fake Document360.

Installed with the package and loaded automatically through the ``pytest11`` entry point, so a
test only has to name the fixtures:

``fake_d360``
    A running [FakeDocument360][d360_async.testing.FakeDocument360] on 127.0.0.1, started for the
    test and stopped after it (function scope).  Seed operations with ``fake_d360.seed(...)``,
    inspect ``fake_d360.stats`` and ``fake_d360.operation(id)``.

``d360_client``
    A [Client][d360_async.Client] pointed at ``fake_d360`` with the fake's V3 and V2 tokens and
    the fake's rate limit as its starting budget, on the fake's clock, closed after the test.
    With ``@pytest.mark.fake_d360(clock=ManualClock())`` (or ``clock`` in
    ``fake_d360_options``) the fake, the client, its limiter and its watches share that
    [ManualClock][d360_async.testing.ManualClock]; drive it with ``clock.run(...)``.

``fake_d360_options``
    Keyword arguments for ``FakeDocument360``, applied over `default_fake_options`
    (default: none).  Override it in a ``conftest.py`` or a test module to change the fake for
    many tests; for one test, use the marker ``@pytest.mark.fake_d360(rate_limit=None, ...)``,
    whose keyword arguments are applied last.

The fixture's fake enforces a rate limit and sends the vendor's headers, but 100 requests per
*second* (`FakeRateLimit(limit=100, window=1.0)`), so tests run in milliseconds and the limiter
is still exercised; a `FakeDocument360()` built directly enforces the vendor's lowest plan,
60 per minute.  Pass ``rate_limit=FakeRateLimit()`` for that, or ``rate_limit=None`` for no
limit at all.

The fixtures are async and are declared with ``pytest_asyncio.fixture``, so they work with
pytest-asyncio in ``auto`` mode and in ``strict`` mode (there, mark your tests with
``@pytest.mark.asyncio``).  pytest-asyncio is not a dependency of d360-async: when it is not
installed, this plugin registers no fixture at all (it only declares the marker), so it never
breaks a test suite that does not use it.

Set pytest-asyncio's ``asyncio_default_fixture_loop_scope`` (to ``function``) in the project's
pytest configuration: pytest-asyncio 0.24 and later warn on every run where it is unset, which
``-W error`` turns into an INTERNALERROR before any test runs (see docs/testing.md).

Added in version 0.1.0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from d360_async import Client
    from d360_async.testing import FakeDocument360

__all__ = [
    "HAVE_PYTEST_ASYNCIO",
    "d360_client",
    "default_fake_options",
    "fake_d360",
    "fake_d360_options",
]

MARKER = "fake_d360"

_VENDOR_DEFAULT: Any = object()
# Requests per second the client allows itself when the fake has no limit at all.
_UNLIMITED = 10_000.0


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker, so ``--strict-markers`` accepts it."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): keyword arguments for the FakeDocument360 behind the "
        "fake_d360 fixture (for example rate_limit=None or latency=0.01)",
    )


def default_fake_options() -> dict[str, Any]:
    """What ``fake_d360`` is built with before ``fake_d360_options`` and the marker apply."""
    from d360_async.testing import FakeRateLimit

    return {"rate_limit": FakeRateLimit(limit=100, window=1.0)}


@pytest.fixture
def fake_d360_options() -> dict[str, Any]:
    """Keyword arguments for [FakeDocument360][d360_async.testing.FakeDocument360]; override to
    change."""
    return {}


def _settings(request: pytest.FixtureRequest, options: dict[str, Any]) -> dict[str, Any]:
    settings = default_fake_options()
    settings.update(options)
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword arguments only")
        settings.update(marker.kwargs)
    return settings


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only where pytest-asyncio is absent
    HAVE_PYTEST_ASYNCIO = False
else:
    HAVE_PYTEST_ASYNCIO = True


if HAVE_PYTEST_ASYNCIO:

    @pytest_asyncio.fixture
    async def fake_d360(
        request: pytest.FixtureRequest, fake_d360_options: dict[str, Any]
    ) -> AsyncIterator[FakeDocument360]:
        """A running fake Document360 for one test (see the module docstring)."""
        from d360_async.testing import FakeDocument360

        async with FakeDocument360(**_settings(request, fake_d360_options)) as fake:
            yield fake

    @pytest_asyncio.fixture
    async def d360_client(
        request: pytest.FixtureRequest,
        fake_d360: FakeDocument360,
        fake_d360_options: dict[str, Any],
    ) -> AsyncIterator[Client]:
        """A `Client` talking to ``fake_d360``, closed after the test."""
        from d360_async import Client, RateLimitConfig

        limit = _settings(request, fake_d360_options).get("rate_limit", _VENDOR_DEFAULT)
        if limit is _VENDOR_DEFAULT:
            config = RateLimitConfig()  # the fake's own default is the vendor's 60/min
        elif limit is None:
            config = RateLimitConfig(rate=_UNLIMITED, period=1.0)
        else:
            config = RateLimitConfig(rate=limit.limit, period=limit.window)
        async with Client(
            api_token=fake_d360.api_token,
            v2_api_token=fake_d360.v2_api_token,
            base_url=fake_d360.url,
            rate_limit=config,
            clock=fake_d360.clock,
        ) as client:
            yield client
