# The two commands of the README: `make run` and `make test`.
# Both set up what they need first: a .venv with Slipway and its dependencies.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test setup lint docs bench clean

run: setup
	$(BIN)/slipway up

test: setup lint docs
	$(BIN)/pytest

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

docs: setup
	$(BIN)/mkdocs build --strict --site-dir $(VENV)/site-check

bench: setup
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
