"""The exception tree is drawn once, and the drawing is the classes.

The drawing stands in the `d360_async._core._errors` docstring and, the same text, in
docs/errors.md. Both are checked against the tree rebuilt from the classes themselves: every
class under `D360Error`, where its first base puts it, in the order the module defines it, and
every further base named as "(also a ...)". A class added, moved or given another base without
redrawing the tree fails here.
"""

from __future__ import annotations

import pathlib
import re

import pytest

import d360_async
from d360_async._core import _errors

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "errors.md"
_BLOCK = re.compile(r"```text\n(D360Error\n.*?)```", re.DOTALL)


def _drawn(text: str) -> list[str]:
    match = _BLOCK.search(text)
    assert match is not None, "no exception tree drawn"
    return match.group(1).rstrip("\n").split("\n")


def _derive(cls: type[BaseException], prefix: str = "") -> list[tuple[str, type[BaseException]]]:
    """``(glyphs and name, class)`` per line, as the tree must be drawn."""
    children = [c for c in cls.__subclasses__() if c.__bases__[0] is cls]
    lines: list[tuple[str, type[BaseException]]] = []
    for i, child in enumerate(children):
        last = i == len(children) - 1
        lines.append((f"{prefix}{'└── ' if last else '├── '}{child.__name__}", child))
        lines += _derive(child, prefix + ("    " if last else "│   "))
    return lines


def _also(cls: type[BaseException]) -> list[str]:
    """How a line must name the bases after the first one: a builtin that one of ours shadows
    (``TimeoutError``) in full, anything else by its name."""
    return [
        f"builtins.{b.__name__}"
        if b.__module__ == "builtins" and hasattr(_errors, b.__name__)
        else b.__name__
        for b in cls.__bases__[1:]
    ]


EXPECTED = [("D360Error", _errors.D360Error), *_derive(_errors.D360Error)]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(_errors.__doc__ or "", id="_errors.py"),
        pytest.param(DOCS.read_text(), id="errors.md"),
    ],
)
def test_the_drawn_tree_is_the_class_tree(text: str) -> None:
    drawn = _drawn(text)
    assert [line[:35].rstrip() for line in drawn] == [name for name, _ in EXPECTED]
    for line, (_, cls) in zip(drawn[1:], EXPECTED[1:], strict=True):
        described = line[35:]
        assert described.strip(), f"{cls.__name__} is drawn without a description"
        for base in _also(cls):
            assert f"also a {base})" in described, f"{cls.__name__}: say '(also a {base})'"
        if not _also(cls):
            assert "also a" not in described, f"{cls.__name__} has no second base"


def test_the_tree_is_drawn_once() -> None:
    # The page shows the very drawing of the module: one text, not two that drift.
    assert _drawn(DOCS.read_text()) == _drawn(_errors.__doc__ or "")


def test_every_class_of_the_tree_is_public() -> None:
    for _, cls in EXPECTED:
        assert getattr(d360_async, cls.__name__) is cls
        assert cls.__name__ in _errors.__all__
    # And nothing else in the module is an exception class.
    classes = {
        name
        for name, value in vars(_errors).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == _errors.__name__
    }
    assert classes == {cls.__name__ for _, cls in EXPECTED}
