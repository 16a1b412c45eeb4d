PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,lint,mpich,backends,tensorboard]'
	touch $(STAMP)

demo: install
	$(BIN)/mpilearn demo

test: install lint
	$(BIN)/python -m pytest -q

# The gate every change passes: ruff's checks and mypy (configured in pyproject.toml).
lint: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build src/*.egg-info
