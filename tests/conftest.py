"""Suite-wide settings.

Machines are shared and noisy (CI runs on two cores): hypothesis must judge examples by what
they check, never by how long they took, so its deadline and the too-slow health check are off.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "d360",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("d360")


@pytest.fixture(autouse=True)
def _no_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Client()` reads `D360_*` variables; a developer's own must not leak into the tests."""
    for name in ("D360_API_TOKEN", "D360_V2_API_TOKEN", "D360_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
