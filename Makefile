# Two commands: `make demo` and `make test`. Each creates $(VENV) with $(PYTHON) if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extra pytest arguments; the suite runs on every core (pytest-xdist).
PYTEST_ARGS ?=

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# What an install depends on: the metadata (and the version it reads) and the C extension.
INSTALL_INPUTS := pyproject.toml setup.py src/zcio/_version.py $(wildcard native/*.[ch])

# `pip install zcio` is the standard-library-only core; the demo runs `zcio bench`, so it
# needs the command line (the cli extra).  The test extra pulls cli, serve and plot.
$(VENV)/.installed-demo: $(INSTALL_INPUTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[cli]'
	touch $@

$(VENV)/.installed-test: $(INSTALL_INPUTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The docs extra names httptools itself: the reference documents zcio.serve.
$(VENV)/.installed-docs: pyproject.toml setup.py $(wildcard native/*.[ch]) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/zcio bench

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/python -m ruff check src tests benchmarks examples
	$(BIN)/python -m mypy --strict src

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/buffer_ops.py
	$(BIN)/python benchmarks/transfer.py

# The API reference from the docstrings, into docs/_build/html; any warning fails it.
# -E: a fresh environment each time, since Sphinx does not see docstrings change.
.PHONY: docs
docs: $(VENV)/.installed-docs
	$(BIN)/python -m sphinx -W --keep-going -E -q -b html docs docs/_build/html

clean:
	rm -rf .venv .venv-* build dist .pytest_cache .mypy_cache .ruff_cache src/zcio/*.so
