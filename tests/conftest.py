"""Suite-wide settings.

Machines are shared and noisy (CI runs on two cores): hypothesis must judge examples by what
they check, never by how long they took, so its deadline and the too-slow health check are off.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "d360",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("d360")
