# placer: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp-install
DEMO_DIR ?= .demo
# What the tests exercise when present: the shim under jemalloc and tcmalloc, a jemalloc
# program (redis), the reports in a real browser.
TEST_SYSTEM_PKGS := libjemalloc2 libtcmalloc-minimal4 redis-server redis-tools chromium

.PHONY: setup test test-deps test-fast demo daemon-demo lint clean system-deps

setup: $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

$(STAMP): pyproject.toml
	@bash scripts/system-deps.sh
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "placer needs Python >= 3.11, found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	@# the distribution was called `placer` before it became placer-ml (a free name on PyPI)
	@$(PY) -m pip uninstall -q -y placer 2>/dev/null || true
	$(PY) -m pip install -q -e '.[dev,pipelines,tf]'
	@touch $(STAMP)

test-deps:
	@bash scripts/system-deps.sh --optional $(TEST_SYSTEM_PKGS)

test: setup test-deps
	$(VENV)/bin/pytest -q

test-fast: setup test-deps
	$(VENV)/bin/pytest -q -m 'not slow'

demo: setup
	@DEMO_DIR=$(DEMO_DIR) VENV=$(VENV) bash scripts/demo.sh

daemon-demo: setup
	@DEMO_DIR=$(DEMO_DIR)/daemon VENV=$(VENV) bash scripts/daemon-demo.sh

# The layers (docs/architecture.md) are import-linter contracts in pyproject.toml; the
# rooms whose types matter most are held to mypy --strict.
STRICT := placer/store placer/contracts placer/placement placer/emulator placer/tuners/analysis.py

lint: setup
	$(VENV)/bin/ruff check placer collectors tuners tests
	$(VENV)/bin/ruff format --check placer collectors tuners tests
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict $(STRICT)
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) $(DEMO_DIR) build dist *.egg-info
