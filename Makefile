# The two commands of the README: `make run` and `make test`.
#
# Both run the whole set-up first, `make setup`, one idempotent path:
#   system    Debian packages, a Docker engine and the base image (scripts/setup-system.sh);
#             as root it does them, as another user it prints the one root command
#             and goes on with the rest
#   python    .venv with Slipway (pyproject.toml, constraints.txt) and the scanners'
#             own environment .venv/scanners (scanners.lock), each remade when its
#             pins change, with progress (scripts/venv.sh)
# A second run checks and goes on in about a second.

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed-stamp
SCANNERS := $(VENV)/scanners
SCANNERS_STAMP := $(SCANNERS)/.installed-stamp

export PYTHON

.PHONY: run test setup system python lint docs bench clean

run: setup
	$(BIN)/slipway up

# pytest exits 5 when it collected no test: that is a failure, never green.
test: setup lint docs
	@$(BIN)/pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

setup: system python

system:
	@bash scripts/setup-system.sh

python: $(STAMP) $(SCANNERS_STAMP)

$(STAMP): pyproject.toml constraints.txt
	@bash scripts/venv.sh $(VENV) Slipway -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# After the platform's venv, which it lives in (.venv/scanners).
$(SCANNERS_STAMP): scanners.lock | $(STAMP)
	@bash scripts/venv.sh $(SCANNERS) "Scanners" -r scanners.lock
	@touch $(SCANNERS_STAMP)

# bench/ holds scripts, not a package: mypy checks it in a run of its own.
lint: python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy bench

docs: python
	$(BIN)/mkdocs build --strict --site-dir $(VENV)/site-check

bench: setup
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
