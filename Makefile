# Two commands do all the set-up (see README.md):
#   make demo   set everything up, then run the whole pipeline on the bundled Medaka sample
#   make test   set everything up, then run ruff and the whole test suite (under Xvfb)
# Both are idempotent: a second run reuses the virtual environment and the system packages.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 (CPU build) is on this kind of machine's disk; an unpinned torch pulls a CUDA build
# of several GB. Elsewhere: `make TORCH_SPEC=torch` (CUDA/MPS), see README "Installing into your own napari".
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= demo_output

STAMP := $(VENV)/.installed

.PHONY: demo test setup system-deps lint clean screenshots

# The demo's own output folder is replaced on a rerun (--overwrite); nothing else is touched.
demo: setup
	$(BIN)/napari-distill run --sample medaka --out-dir $(DEMO_DIR) --overwrite

test: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

setup: system-deps $(STAMP)

system-deps:
	@bash scripts/install_system_deps.sh

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=python3'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[testing]"
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/lint-imports

screenshots: setup
	xvfb-run -a -s "-screen 0 1600x1000x24" $(BIN)/python scripts/screenshot_samples.py
	xvfb-run -a -s "-screen 0 1366x768x24" $(BIN)/python scripts/screenshot_tour.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache build src/*.egg-info
