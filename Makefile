# `make demo` and `make test` work on a fresh machine with only Python 3.11 and make.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-fast lint typecheck bench examples clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hierlm demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

# Tests run on every core (at most 4 workers): compiling, the suite's main cost, is
# single-threaded. Measured on 2 cores: 893 s against 1,235-1,558 s in one process.
PYTEST := $(BIN)/python -m pytest -q -n auto --maxprocesses 4 --durations 15

test: lint typecheck
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

examples: $(STAMP)
	for example in radon_mn radon_states kc_house income per_observation_slope parameterizations; do \
		$(BIN)/python examples/$$example.py || exit 1; \
	done

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info
