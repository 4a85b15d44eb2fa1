"""pytest fixtures for testing your own code against a fake Document360.

Installed with the package and loaded automatically through the ``pytest11`` entry point, so a
test only has to name the fixtures:

``fake_d360``
    A running :class:`~d360_async.testing.FakeDocument360` on 127.0.0.1, started for the test
    and stopped after it (function scope).  Seed operations with ``fake_d360.seed(...)``,
    inspect ``fake_d360.stats`` and ``fake_d360.operation(id)``.

``d360_client``
    A :class:`~d360_async.Client` pointed at ``fake_d360`` with the fake's V3 and V2 tokens,
    closed after the test.

``fake_d360_options``
    The keyword arguments ``fake_d360`` is built with (default: none, so the fake's own
    defaults).  Override it in a ``conftest.py`` or a test module to change the fake for many
    tests; for one test, use the marker ``@pytest.mark.fake_d360(rate_limit=None, ...)``,
    whose keyword arguments are applied on top.

The fixtures are async and are declared with ``pytest_asyncio.fixture``, so they work with
pytest-asyncio in ``auto`` mode and in ``strict`` mode (there, mark your tests with
``@pytest.mark.asyncio``).  pytest-asyncio is not a dependency of d360-async: when it is not
installed, this plugin registers no fixture at all (it only declares the marker), so it never
breaks a test suite that does not use it.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from d360_async._client import Client
    from d360_async.testing import FakeDocument360

__all__ = ["HAVE_PYTEST_ASYNCIO", "d360_client", "fake_d360", "fake_d360_options"]

MARKER = "fake_d360"


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker, so ``--strict-markers`` accepts it."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): keyword arguments for the FakeDocument360 behind the "
        "fake_d360 fixture (for example rate_limit=None or latency=0.01)",
    )


@pytest.fixture
def fake_d360_options() -> dict[str, Any]:
    """Keyword arguments for :class:`~d360_async.testing.FakeDocument360`; override to change."""
    return {}


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

        options = dict(fake_d360_options)
        marker = request.node.get_closest_marker(MARKER)
        if marker is not None:
            if marker.args:
                raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword arguments only")
            options.update(marker.kwargs)
        async with FakeDocument360(**options) as fake:
            yield fake

    @pytest_asyncio.fixture
    async def d360_client(fake_d360: FakeDocument360) -> AsyncIterator[Client]:
        """A :class:`~d360_async.Client` talking to ``fake_d360``, closed after the test."""
        from d360_async._client import Client

        async with Client(
            api_token=fake_d360.api_token,
            v2_api_token=fake_d360.v2_api_token,
            base_url=fake_d360.url,
        ) as client:
            yield client
