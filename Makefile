# Two entry points: `make demo` (main job on the built-in cell) and `make test` (lint, then every test).
# Both create/update the virtual environment, install the project and compile the mechanisms.
# Also: `make lint` (ruff only) and `make test-fast` (the tests not marked slow, under 2 minutes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint install

$(STAMP): setup.cfg pyproject.toml $(wildcard surrogate_cell/cells/nmodl/*.mod)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# Only this torch spec is a local CPU wheel here; any other would download CUDA builds.
	$(PY) -m pip show torch >/dev/null 2>&1 || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -c "from surrogate_cell.mechanisms import load_mechanisms; load_mechanisms()"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) examples/compare_lfp.py

lint: install
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"
