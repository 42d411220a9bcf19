# The two commands from the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench fuzz lint format clean test-napari system-deps

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
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench,dask]'
	$(BIN)/python benchmarks/run_all.py

# Debian packages for the browser and GUI tests (run as root): headless Chromium renders the HTML
# report in tests/test_report.py; Xvfb gives Qt the OpenGL context napari's canvas needs.
system-deps:
	apt-get update
	apt-get install -y chromium xvfb

# napari gets its own venv: in any venv that has napari, napari's pytest plugin loads at startup
# and its pydantic deprecation warning fails every run under -W error.
NAPARI_VENV := .venv-napari
test-napari:
	$(PYTHON) -m venv $(NAPARI_VENV)
	$(NAPARI_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(NAPARI_VENV)/bin/python -m pip install --quiet -e '.[test,napari]' 'pytest-qt>=4.4'
	QT_QPA_PLATFORM=offscreen xvfb-run -a $(NAPARI_VENV)/bin/python -m pytest tests/test_napari.py \
		src/defocus/napari -W 'ignore::pydantic.warnings.PydanticDeprecatedSince20'

# Mutation fuzz of the readers over real files, for FUZZ_BUDGET seconds.
FUZZ_BUDGET ?= 60
fuzz: $(STAMP)
	$(BIN)/python scripts/fuzz_readers.py --budget $(FUZZ_BUDGET)

lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m mypy

format: $(STAMP)
	$(BIN)/python -m ruff format .
	$(BIN)/python -m ruff check --fix .

clean:
	rm -rf $(VENV) $(NAPARI_VENV) out .pytest_cache .ruff_cache
