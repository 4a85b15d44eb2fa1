# Two set-up commands, as the README promises: `make demo` and `make test`.
# Each creates .venv on first use and installs what it needs into it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test test-slow lint typecheck unit docs dist package-check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[cli]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[dev]'
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(BIN)/d360-async demo $(DEMO_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check d360_async tests benchmarks docs/examples
	$(BIN)/ruff format --check d360_async tests benchmarks docs/examples
	$(BIN)/lint-imports --no-cache

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

# The default run: every test but those marked `slow` (pyproject.toml's addopts).
unit: $(VENV)/.dev-installed
	$(BIN)/pytest -W error $(PYTEST_ARGS)

# The tests that need real OS processes over real seconds (kill -9 of a process, four worker
# processes on one Redis budget, uvicorn --workers 4, the soak); .ci/run runs them after
# `make test`.
test-slow: $(VENV)/.dev-installed
	$(BIN)/pytest -W error -m slow $(PYTEST_ARGS)

docs: $(VENV)/.dev-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(VENV)/site

# The sdist and the wheel, built from this tree with the dev venv's hatchling (no isolated
# build env to download), and checked by twine: metadata and the README as PyPI renders it.
dist: $(VENV)/.dev-installed
	rm -rf dist
	$(BIN)/python -m build --no-isolation --sdist --wheel --outdir dist . >/dev/null
	$(BIN)/twine check --strict dist/*

# The wheel in a fresh venv (its dependencies from the package index, through pip), and the
# console script it installs must run from there.
WHEEL_VENV := $(VENV)/wheel-check
package-check: dist
	rm -rf $(WHEEL_VENV)
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip --disable-pip-version-check -q install dist/*.whl
	cd $(WHEEL_VENV) && bin/python -c "import sys, d360_async; \
	  assert d360_async.__file__.startswith(sys.prefix), d360_async.__file__"
	cd $(WHEEL_VENV) && bin/d360-async --help >/dev/null && bin/d360-async --version
	rm -rf $(WHEEL_VENV)

test: lint typecheck docs package-check unit

bench: $(VENV)/.dev-installed
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) site dist .mypy_cache .ruff_cache .hypothesis
