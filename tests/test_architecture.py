"""The layered layout holds, and the checks that hold it can fail.

`make lint` runs import-linter over the real tree. Here the same contracts run over copies of
the package with one deliberate violation each, so a contract that silently stopped checking
(a renamed package, a typo in `pyproject.toml`) fails this test; and docs/internals.md is held to
name every module the tree has, and nothing else.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "d360_async"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def run_contracts(tree: Path) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "200"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "d360_async", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_real_tree_keeps_every_contract(tree: Path) -> None:
    result = run_contracts(tree)
    assert result.returncode == 0, result.stdout
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("_core/_phase.py", "import asyncio", "The core does no I/O"),
        ("_core/_status.py", "import d360_async._transport._transport", "Layers"),
        ("_transport/_auth.py", "import d360_async._limiters._local", "Layers"),
        ("_resources/drive.py", "import d360_async._watch._watch", "Layers"),
        ("cli/_jsonl.py", "import d360_async._core._phase", "use only the public API"),
        ("_core/_phase.py", "import d360_async._core._status", "No import cycles"),
    ],
)
def test_a_deliberate_violation_breaks_its_contract(
    tree: Path, module: str, line: str, broken: str
) -> None:
    path = tree / "d360_async" / module
    path.write_text(path.read_text() + f"\n{line}  # deliberate violation\n")
    result = run_contracts(tree)
    assert result.returncode != 0
    verdicts = dict(re.findall(r"^(.+?) (KEPT|BROKEN)$", result.stdout, re.MULTILINE))
    assert [name for name, v in verdicts.items() if v == "BROKEN" and broken in name], result.stdout


def test_internals_page_names_every_module_and_only_those() -> None:
    page = (ROOT / "docs" / "internals.md").read_text()
    named = set(re.findall(r"`(d360_async/[\w/]+\.py)`", page))
    modules = {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and path.parts[len(ROOT.parts) + 1] not in {"testing", "cli"}
    }
    modules.add("d360_async/__init__.py")
    assert modules - named == set(), "modules the page does not name"
    assert {n for n in named if not (ROOT / n).exists()} == set(), "names with no module"
