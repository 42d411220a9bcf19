# The two commands from the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench fuzz lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,dask]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/defocus demo -o out

test: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench,dask]'
	$(BIN)/python benchmarks/run_all.py

# Mutation fuzz of the readers over real files, for FUZZ_BUDGET seconds.
FUZZ_BUDGET ?= 60
fuzz: $(STAMP)
	$(BIN)/python scripts/fuzz_readers.py --budget $(FUZZ_BUDGET)

lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .

format: $(STAMP)
	$(BIN)/python -m ruff format .
	$(BIN)/python -m ruff check --fix .

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
