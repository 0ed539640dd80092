# Two commands matter: `make run` (the whole system on this machine) and `make test` (lint, types, suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fmt typecheck pytest bench chaos lock clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,embedded]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/orders-stack

test: lint typecheck pytest

# ruff, then the import rules of SPEC section 1 (contracts in .importlinter).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache --no-logo

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# Every scenario of bench/run.py, its report in bench/results/latest.md with PNG plots. wrk is
# Debian's (installed here when missing and allowed); matplotlib comes with the `bench` extra.
BENCH_ARGS ?=
bench: $(STAMP)
	command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,embedded,bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The chaos suite's long profile (README, "Chaos suite"): a random seed, printed for replay, and
# the report kept in chaos/reports/. CHAOS_ARGS="--minutes 5" for a shorter run.
CHAOS_ARGS ?= --minutes 30
chaos: $(STAMP)
	$(BIN)/python -m chaos --profile long $(CHAOS_ARGS) --report chaos/reports/

# Re-pin every package after changing pyproject.toml's dependencies.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[dev,embedded,bench]'
	(echo '# Every package of the dev and embedded install, pinned (pip freeze). Regenerate with `make lock`.'; \
	 .lock-venv/bin/pip freeze --exclude-editable) > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
