"""The pytest plugin, exercised the way a user meets it: in a separate pytest run (pytester)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTING_PAGE = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
# A fenced Python block whose first line is "# file: NAME" is a file of the example project.
_FILE_BLOCK = re.compile(r"^```python\n# file: (\S+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)

AUTO_INI = """
    [pytest]
    asyncio_mode = auto
    asyncio_default_fixture_loop_scope = function
    filterwarnings = error
"""

# A user's own code, and the tests they would write for it with the fixtures.
USER_CODE = '''
    from d360_async import Client


    async def count_pending_exports(client: Client, project_id: str, export_ids: list[str]) -> int:
        """Application code under test: how many of these exports are not finished yet."""
        pending = 0
        for export_id in export_ids:
            export = await client.exports.get(project_id, export_id)
            if export.status not in ("Completed", "Failed"):
                pending += 1
        return pending
'''

USER_TESTS = """
    import pytest

    from d360_async.testing import FakeDocument360
    from myapp import count_pending_exports

    {mark}
    async def test_counts_unfinished_exports(fake_d360: FakeDocument360, d360_client) -> None:
        ids = fake_d360.seed("v3.export", 3, pending=600.0, running=600.0)
        assert await count_pending_exports(d360_client, fake_d360.project_id, ids) == 3
        assert fake_d360.stats.requests == 3
        assert fake_d360.stats.rate_limited == 0

    {mark}
    async def test_finished_export_is_not_counted(fake_d360, d360_client) -> None:
        [export_id] = fake_d360.seed("v3.export", 1, pending=600.0, running=600.0)
        fake_d360.finish(export_id)
        assert await count_pending_exports(d360_client, fake_d360.project_id, [export_id]) == 0

    {mark}
    async def test_each_test_gets_a_fresh_server(fake_d360) -> None:
        assert fake_d360.stats.requests == 0
        assert fake_d360.operations() == []
"""


def _write_project(pytester: pytest.Pytester, *, mode: str, mark: str = "") -> None:
    pytester.makepyfile(myapp=textwrap.dedent(USER_CODE))
    pytester.makepyfile(test_user=textwrap.dedent(USER_TESTS).format(mark=mark))
    pytester.makeini(
        f"""
        [pytest]
        asyncio_mode = {mode}
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )


# A conftest that configures the fake for the tests beside it, and those tests.
OPTIONS_CONFTEST = """
        import pytest

        @pytest.fixture
        def fake_d360_options():
            return {"api_token": "my-token", "rate_limit": None}
"""
OPTIONS_TESTS = """
        import pytest

        async def test_options_apply(fake_d360, d360_client):
            assert fake_d360.api_token == "my-token"
            [task_id] = fake_d360.seed("v3.drive_task", 1)
            task = await d360_client.drive.get_task(fake_d360.project_id, task_id)
            assert task.status == "Pending"

        @pytest.mark.fake_d360(v2_api_token="other-v2", seed=7)
        async def test_marker_overrides(fake_d360, d360_client):
            assert fake_d360.api_token == "my-token"
            assert fake_d360.v2_api_token == "other-v2"
            [task_id] = fake_d360.seed("v2.delete_file", 1, pending=600.0)
            status = await d360_client.v2.delete_file_status(task_id)
            assert status is not None
"""
# The marker's ManualClock drives the fake and the client: an hour of polling in no time.
CLOCK_TESTS = """
        import time

        import pytest
        from d360_async import PollPolicy
        from d360_async.testing import FakeRateLimit, ManualClock

        CLOCK = ManualClock()

        @pytest.mark.fake_d360(clock=CLOCK, rate_limit=FakeRateLimit(limit=60, window=60.0))
        async def test_an_hour_of_polling_in_no_time(fake_d360, d360_client):
            assert fake_d360.clock is CLOCK
            [export_id] = fake_d360.seed("v3.export", pending=600, running=3000, failure_ratio=0)
            target = d360_client.exports.target(fake_d360.project_id, export_id)
            started = time.monotonic()
            final = await CLOCK.run(d360_client.wait(target, policy=PollPolicy(interval=30)))
            assert final.phase.is_terminal
            assert CLOCK.now >= 1000 + 3600
            assert fake_d360.stats.rate_limited == 0
            assert time.monotonic() - started < 60  # not the hour: room for a loaded machine
"""


def test_fixtures_options_marker_and_a_manual_clock_in_auto_mode(
    pytester: pytest.Pytester,
) -> None:
    # One pytest run (each costs a Python start-up) for three projects of one user: the
    # fixtures in auto mode, an options fixture and the marker (in options/, whose conftest
    # applies there only) and a ManualClock given through the marker.
    _write_project(pytester, mode="auto")
    options = pytester.mkpydir("options")
    (options / "conftest.py").write_text(textwrap.dedent(OPTIONS_CONFTEST))
    (options / "test_options.py").write_text(textwrap.dedent(OPTIONS_TESTS))
    clock = pytester.mkpydir("clock")
    (clock / "test_manual_clock.py").write_text(textwrap.dedent(CLOCK_TESTS))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=3 + 2 + 1)


def test_fixtures_in_strict_mode(pytester: pytest.Pytester) -> None:
    _write_project(pytester, mode="strict", mark="@pytest.mark.asyncio")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_without_pytest_asyncio_nothing_is_registered(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A package that fails to import shadows the real pytest-asyncio, as if it were missing.
    shadow = pytester.mkdir("shadow")
    (shadow / "pytest_asyncio").mkdir()
    (shadow / "pytest_asyncio" / "__init__.py").write_text(
        'raise ImportError("pytest-asyncio is not installed")\n'
    )
    pytester.makepyfile(
        """
        import pytest

        def test_plain_tests_still_run(request):
            with pytest.raises(pytest.FixtureLookupError):
                request.getfixturevalue("fake_d360")
            assert request.getfixturevalue("fake_d360_options") == {}
        """
    )
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(passed=1)


_CONFIG_BLOCK = re.compile(r"^```toml\n# file: (\S+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _documented_project(pytester: pytest.Pytester, *, loop_scope: bool = True) -> None:
    """The example project of the testing page, with the configuration the page gives."""
    text = TESTING_PAGE.read_text(encoding="utf-8")
    files = dict(_FILE_BLOCK.findall(text)) | dict(_CONFIG_BLOCK.findall(text))
    assert sorted(files) == ["myapp.py", "pyproject.toml", "test_myapp.py"]
    if not loop_scope:
        files["pyproject.toml"] = "\n".join(
            line
            for line in files["pyproject.toml"].splitlines()
            if "asyncio_default_fixture_loop_scope" not in line
        )
    for name, code in files.items():
        pytester.path.joinpath(name).write_text(code, encoding="utf-8")


def test_the_documented_configuration_passes_under_w_error(pytester: pytest.Pytester) -> None:
    _documented_project(pytester)
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert result.ret == 0
    assert "PytestDeprecationWarning" not in result.stdout.str() + result.stderr.str()


def _pytest_asyncio_warns_when_unset() -> bool:
    import pytest_asyncio.plugin

    return "_DEFAULT_FIXTURE_LOOP_SCOPE_UNSET" in vars(pytest_asyncio.plugin)


@pytest.mark.skipif(
    not _pytest_asyncio_warns_when_unset(),
    reason="this pytest-asyncio does not warn about an unset loop scope",
)
def test_without_the_loop_scope_a_w_error_run_stops(pytester: pytest.Pytester) -> None:
    """Why the page asks for the setting: without it, `-W error` ends the run at once."""
    _documented_project(pytester, loop_scope=False)
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    assert result.ret != 0
    assert "asyncio_default_fixture_loop_scope" in result.stdout.str() + result.stderr.str()


_ROW = re.compile(r"^\| ((?:`\w+`(?:, )?)+) \| (.+?) \| (.+?) \|$", re.MULTILINE)


def test_the_defaults_table_matches_the_code() -> None:
    import inspect

    import d360_async.testing as testing
    from d360_async.testing import FakeDocument360
    from d360_async.testing.pytest_plugin import default_fake_options

    text = TESTING_PAGE.read_text(encoding="utf-8")
    table = text.split("| argument | `FakeDocument360()` | `fake_d360` fixture |", 1)[1]
    table = table.split("\n\n", 1)[0]
    defaults = {
        name: p.default for name, p in inspect.signature(FakeDocument360).parameters.items()
    }
    fixture = {**defaults, **default_fake_options()}
    namespace = vars(testing)
    rows = _ROW.findall(table)
    documented = set()
    for names_cell, class_cell, fixture_cell in rows:
        names = re.findall(r"`(\w+)`", names_cell)
        # The first code span per name is the value; any further ones only explain it.
        codes = re.findall(r"`([^`]+)`", class_cell)[: len(names)]
        values = [eval(code, namespace) for code in codes]
        for name, value in zip(names, values, strict=False):
            documented.add(name)
            assert defaults[name] == value, name
            if fixture_cell == "the same":
                assert fixture[name] == value, name
            else:
                expected = eval(re.findall(r"`([^`]+)`", fixture_cell)[0], namespace)
                assert fixture[name] == expected, name
    # Every argument a user would set is in the table (the clock and shutdown tuning aside).
    assert set(defaults) - documented <= {
        "clock",
        "clock_skew",
        "record_times",
        "shutdown_timeout",
    }
