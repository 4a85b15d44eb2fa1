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


# -- `--idle-over SECONDS`: which tests wait on the real clock ---------------------------------
#
# A test that sleeps on the real clock (a real timeout, lifecycle or TTL) spends wall time its
# process and its children do not spend on the CPU. With `--idle-over 2`, the run ends with
# every test (setup and teardown included) whose wall time minus CPU time (this process's and
# its reaped children's) exceeded 2 s. On a loaded machine, waiting for a core counts as idle
# too: read it on a quiet one.


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--idle-over",
        type=float,
        default=None,
        metavar="SECONDS",
        help="report tests whose wall time minus CPU time exceeds SECONDS",
    )


def _cpu() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


_IDLE: list[tuple[float, float, str]] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    if item.config.getoption("--idle-over") is None:
        return (yield)
    import time

    wall, cpu = time.monotonic(), _cpu()
    try:
        return (yield)
    finally:
        elapsed = time.monotonic() - wall
        _IDLE.append((elapsed - (_cpu() - cpu), elapsed, item.nodeid))


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    limit = config.getoption("--idle-over")
    if limit is None:
        return
    over = sorted((entry for entry in _IDLE if entry[0] > limit), reverse=True)
    terminalreporter.section(f"tests idle on the real clock for more than {limit:g} s")
    for idle, elapsed, nodeid in over:
        terminalreporter.write_line(f"{idle:6.2f} s idle of {elapsed:6.2f} s  {nodeid}")
    terminalreporter.write_line(f"{len(over)} of {len(_IDLE)} tests")
