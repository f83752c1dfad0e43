# cpt-scaling: `make demo` and `make test` work from a fresh clone (they create .venv when missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
# CPU torch: the pinned CPU wheel from the PyTorch CPU index (a local wheel directory is used when pip is set up
# with one); GPU users install their CUDA torch and `pip install -e .[gpu]` instead.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install demo demo-record test lint bench clean-results

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	$(BIN)/pip install -q "$(TORCH)" || $(BIN)/pip install -q "$(TORCH)" --index-url $(TORCH_INDEX)
	DS_BUILD_OPS=0 $(BIN)/pip install -q -e ".[dev,reports,exams]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --profile profiles/local --configfile config/demo.yaml

# After `make demo`: record its study tables, law diagnostics and seed findings in report/demo/ (maintainers; the
# tests check them against the demo's current plan).
demo-record: $(STAMP)
	$(BIN)/python scripts/record_demo_tables.py

# The one-node test SLURM runs for the whole session when it can be installed: the SLURM executor plugin asks
# `scontrol` for its config whenever snakemake starts, which stalls ~9 s per call while slurmctld is down.
test: $(STAMP)
	@if tests/slurm/cluster.sh status >/dev/null 2>&1; then own=0; \
	elif tests/slurm/cluster.sh start >/dev/null 2>&1; then own=1; else own=0; fi; \
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q --durations=15 tests; rc=$$?; \
	if [ $$own = 1 ]; then tests/slurm/cluster.sh stop >/dev/null 2>&1; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check src tests workflow_scripts bench scripts
	$(BIN)/snakemake --lint --configfile config/demo.yaml
	$(BIN)/lint-imports

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done
