"""The public surface is exactly what ``__all__`` says, and every name in it exists."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import d360_async


def test_all_is_unique() -> None:
    # Its order is kept sorted by ruff (RUF022).
    names = list(d360_async.__all__)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", d360_async.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(d360_async, name) is not None


def test_no_public_name_is_missing_from_all() -> None:
    public = {n for n in vars(d360_async) if n.isidentifier() and not n.startswith("_")}
    # Submodules are attributes of a package once imported; they are not API names.
    modules = {m.name for m in pkgutil.iter_modules(d360_async.__path__)}
    assert public - modules - {"annotations", "TYPE_CHECKING", "Any"} <= set(d360_async.__all__)


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError):
        _ = d360_async.NoSuchThing  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "module", ["d360_async.smartdocumentor", "d360_async.testing", "d360_async.contrib.fastapi"]
)
def test_public_modules_declare_all(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name), name


def test_py_typed_shipped() -> None:
    import pathlib

    assert (pathlib.Path(d360_async.__file__).parent / "py.typed").exists()
