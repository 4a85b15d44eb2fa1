"""Every Python block of ``docs/quickstart.md`` and of the README runs, as written, against
``FakeDocument360``.

The blocks are complete programs that read their settings from the environment
(``D360_API_TOKEN``, ``D360_BASE_URL``, ``D360_PROJECT_ID``, ``D360_WORKSPACE_ID``), exactly as
a reader would run them; the test points those variables at the fake server. Each block runs
in a thread of its own, because it calls ``asyncio.run`` while the fake is served by the test's
event loop.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from d360_async.testing import FakeDocument360, FakeLifecycle, FakeRateLimit

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "docs" / "quickstart.md"
README = ROOT / "README.md"

_FENCE = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_HEADING = re.compile(r"^## (.+)$", re.MULTILINE)

# What a reader should see printed, by the section a block is in; blocks under other headings
# only have to run without an exception.
EXPECTED_OUTPUT = {
    "Start an export and read its status": ["started export ", "its status is "],
    "Wait for it, then download it": ["succeeded Completed", "saved export.zip "],
    "Watch many at once": [": None -> ", "-> succeeded", "all finished"],
    "Handle errors": ["not found: 404 ", "refused: "],
}
# The README's one program: its transitions printed, the export downloaded.
README_OUTPUT = {"Quickstart": [" None -> ", "-> succeeded"]}


def python_blocks(text: str) -> list[tuple[str, str]]:
    """``(section heading, code)`` of each fenced ``python`` block, in order."""
    blocks = []
    for match in _FENCE.finditer(text):
        headings = _HEADING.findall(text, 0, match.start())
        blocks.append((headings[-1] if headings else "", match.group(1)))
    return blocks


BLOCKS = python_blocks(QUICKSTART.read_text(encoding="utf-8"))
README_BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def run_block(code: str, name: str) -> None:
    exec(compile(code, name, "exec"), {"__name__": "__main__"})


def test_the_quickstart_has_its_examples() -> None:
    assert [heading for heading, _ in BLOCKS] == list(EXPECTED_OUTPUT)


def test_the_readme_has_its_quickstart() -> None:
    assert [heading for heading, _ in README_BLOCKS] == list(README_OUTPUT)


CASES = [
    pytest.param("quickstart.md", heading, code, EXPECTED_OUTPUT, id=f"quickstart: {heading}")
    for heading, code in BLOCKS
] + [
    pytest.param("README.md", heading, code, README_OUTPUT, id=f"README: {heading}")
    for heading, code in README_BLOCKS
]


@pytest.mark.parametrize(("page", "heading", "code", "expected_output"), CASES)
async def test_documented_block_runs_against_the_fake(
    page: str,
    heading: str,
    code: str,
    expected_output: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lifecycle = FakeLifecycle(pending=(0.05, 0.1), running=(0.1, 0.3))
    async with FakeDocument360(
        lifecycle=lifecycle, rate_limit=FakeRateLimit(limit=600, window=60.0)
    ) as fake:
        # Exactly the variables the page tells a reader to set (and `d360-async fake` prints).
        monkeypatch.setenv("D360_API_TOKEN", fake.api_token)
        monkeypatch.setenv("D360_BASE_URL", fake.url)
        monkeypatch.setenv("D360_PROJECT_ID", fake.project_id)
        monkeypatch.setenv("D360_WORKSPACE_ID", "ws-docs")
        monkeypatch.chdir(tmp_path)  # where a block writes its files

        await asyncio.wait_for(asyncio.to_thread(run_block, code, f"{page}: {heading}"), 60)

        output = capsys.readouterr().out
        for expected in expected_output.get(heading, []):
            assert expected in output, f"{expected!r} not printed; got:\n{output}"
        assert fake.stats.rate_limited == 0
        assert fake.stats.auth_failures == 0
        if "wait(" in code or "watch(" in code:  # followed to the end: all seen finished
            exports = fake.operations("v3.export")
            assert exports
            assert all(op.first_terminal_served_at is not None for op in exports)
        if "download(" in code:
            assert (tmp_path / "export.zip").is_file()
