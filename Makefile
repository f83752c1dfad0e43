# cpt-scaling: `make demo` and `make test` work from a fresh clone (they create .venv when missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
# CPU torch: the pinned CPU wheel from the PyTorch CPU index (a local wheel directory is used when pip is set up
# with one); GPU users install their CUDA torch and `pip install -e .[gpu]` instead.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install demo test lint bench clean-results

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	$(BIN)/pip install -q "$(TORCH)" || $(BIN)/pip install -q "$(TORCH)" --index-url $(TORCH_INDEX)
	DS_BUILD_OPS=0 $(BIN)/pip install -q -e ".[dev,reports]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --profile profiles/local --configfile config/demo.yaml

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check src tests workflow_scripts bench scripts
	$(BIN)/snakemake --lint --configfile config/demo.yaml

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done
