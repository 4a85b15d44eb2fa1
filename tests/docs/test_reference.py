"""The documentation site builds with no warning, and its API reference is complete and clean.

The site is built once, exactly as `make docs` builds it (`mkdocs build --strict`, no `--quiet`
to hide warnings), into a temporary directory. Then:

* every name in the `__all__` of a public module has an entry, and so has every public method,
  property and attribute its classes define (attrs fields are documented in their class's
  attributes table instead);
* no rendered docstring shows raw reST (`:class:`, `.. versionadded::`, `::` blocks);
* no docstring or comment cites a file that is not in this repository.
"""

from __future__ import annotations

import enum
import html
import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_MODULES = (
    "d360_async",
    "d360_async.smartdocumentor",
    "d360_async.ids",
    "d360_async.testing",
    "d360_async.contrib.fastapi",
)
RAW_REST = re.compile(
    r":(?:class|meth|func|data|attr|mod|exc|obj):|^\s*\.\. [\w-]+::|\w::\s*$", re.MULTILINE
)

# Docstrings whose Markdown conversion waits for the rewrite their owners are doing (the rate
# limiter and the watch internals). Remove an entry once its module is converted: the test then
# holds it to the same rule as everything else.
PENDING_MODULES: tuple[str, ...] = ()
PENDING_OBJECTS: frozenset[str] = frozenset()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "WARNING" not in log, log
    return out


def _anchors(site: Path) -> set[str]:
    found: set[str] = set()
    for page in site.rglob("*.html"):
        found.update(re.findall(r'id="(d360_async[\w.]*)"', page.read_text(encoding="utf-8")))
    return found


def _defining_class(cls: type, name: str) -> type | None:
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


def _expected_entries() -> list[str]:
    entries = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            path = f"{module_name}.{name}"
            entries.append(path)
            obj = getattr(module, name)
            if not inspect.isclass(obj):
                continue
            fields = {a.name for a in attrs.fields(obj)} if attrs.has(obj) else set()
            for member in dir(obj):
                if member.startswith("_") or member in fields:
                    continue
                if isinstance(obj, enum.EnumMeta) and member in obj.__members__:
                    continue
                owner = _defining_class(obj, member)
                # Members a third-party base defines (Exception, Starlette) are theirs to document.
                if owner is None or not owner.__module__.startswith("d360_async"):
                    continue
                entries.append(f"{path}.{member}")
    return entries


def test_the_site_builds_strictly_with_no_warning(site: Path) -> None:
    assert (site / "reference" / "index.html").is_file()


def test_make_docs_does_not_hide_warnings() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\ndocs:", 1)[1].split("\n\n", 1)[0]
    assert "mkdocs build --strict" in recipe
    assert "--quiet" not in recipe
    assert " -q" not in recipe


def test_every_public_name_and_member_is_in_the_reference(site: Path) -> None:
    anchors = _anchors(site)
    missing = [entry for entry in _expected_entries() if entry not in anchors]
    assert not missing, f"not in the reference: {missing}"


def test_the_resource_groups_are_public_and_documented(site: Path) -> None:
    anchors = _anchors(site)
    for entry in (
        "d360_async.Client.exports",
        "d360_async.Client.drive",
        "d360_async.Client.imports",
        "d360_async.Client.api_references",
        "d360_async.Client.v2",
        "d360_async.ExportsResource.create",
        "d360_async.ExportsResource.get",
        "d360_async.ExportsResource.download",
        "d360_async.ExportsResource.target",
        "d360_async.DriveResource.get_task",
        "d360_async.ImportsResource.get",
        "d360_async.ApiReferencesResource.logs",
        "d360_async.V2Resource.delete_file_status",
        "d360_async.V2ExportsResource.get",
        "d360_async.smartdocumentor.SmartDocumentorTasks.status",
    ):
        assert entry in anchors, entry


def _object_sections(page: str) -> dict[str, str]:
    """Each documented object's rendered text, by its anchor (its own part only)."""
    sections = {}
    for part in re.split(r'<div class="doc doc-object doc-\w+">', page)[1:]:
        match = re.search(r'id="(d360_async[\w.]*)"', part)
        if match:
            text = html.unescape(re.sub(r"<[^>]+>", "", part))
            sections[match.group(1)] = text
    return sections


def _is_pending(path: str) -> bool:
    """Whether the object documented at ``path`` is defined in a module still pending."""
    if any(path == p or path.startswith(p + ".") for p in PENDING_OBJECTS):
        return True
    module_name = max((m for m in PUBLIC_MODULES if path.startswith(m + ".")), key=len)
    obj: object = importlib.import_module(module_name)
    home = module_name
    for part in path[len(module_name) + 1 :].split("."):
        try:
            # Modules through getattr (RedisRateLimiter is imported lazily), classes statically.
            obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
        except AttributeError:
            break
        home = getattr(obj, "__module__", None) or home
        if not inspect.isclass(obj):
            break
    return home.startswith(PENDING_MODULES)


def test_no_raw_rest_on_the_reference_page(site: Path) -> None:
    page = (site / "reference" / "index.html").read_text(encoding="utf-8")
    sections = _object_sections(page)
    assert len(sections) > 100
    offenders = {
        path: RAW_REST.findall(text)
        for path, text in sections.items()
        if RAW_REST.search(text) and not _is_pending(path)
    }
    assert not offenders, offenders


def test_nothing_cites_a_file_outside_the_repository() -> None:
    outside = re.compile(r"DESIGN\.md|vendor-docs|shared/vendor")
    pending = [ROOT / name.replace(".", "/") for name in PENDING_MODULES]
    files = [ROOT / "README.md"]
    for folder in ("d360_async", "docs", "tests"):
        files.extend(p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md"))
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        if path != Path(__file__) and not any(path.is_relative_to(p) for p in pending)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if outside.search(line)
    ]
    assert not offenders, "\n".join(offenders)
