# cpt-scaling: `make demo` and `make test` work from a fresh clone (they create .venv when missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BASE := $(VENV)/.installed-base
STAMP := $(VENV)/.installed
# CPU torch: the pinned +cpu build. PyPI has no +cpu builds, so a plain pip fails fast there (never pulling the
# multi-GB CUDA build) and the PyTorch CPU index serves it; a machine whose pip is set up with a local wheel
# directory takes it from there. GPU users install their CUDA torch and `pip install -e .[gpu]` instead (README).
TORCH_VERSION := 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install demo demo-quick demo-decide demo-record test lint bench clean-results

# `make demo` needs the package alone; `make test` (and lint, the recorders) adds the dev, reports and exams extras.
$(BASE): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	$(BIN)/pip install -q "torch==$(TORCH_VERSION)+cpu" \
		|| $(BIN)/pip install -q "torch==$(TORCH_VERSION)" --index-url $(TORCH_INDEX)
	DS_BUILD_OPS=0 $(BIN)/pip install -q -e .
	touch $(BASE)

$(STAMP): $(BASE)
	DS_BUILD_OPS=0 $(BIN)/pip install -q -e ".[dev,reports,exams]"
	touch $(STAMP)

install: $(STAMP)

demo: $(BASE)
	$(BIN)/snakemake --profile profiles/local --configfile config/demo.yaml

# The whole chain on a smaller sweep (one domain, two sizes: 30 jobs, a few minutes), into results/quick/.
demo-quick: $(BASE)
	$(BIN)/snakemake --profile profiles/local --configfile config/demo_quick.yaml

# The decision target on the demo (config/demo_decide.yaml over config/demo.yaml): "which legal ratio for the largest
# model?", answered in rounds of proposed runs; after `make demo` only the rounds' runs train (README: Ask for a
# decision).
demo-decide: $(BASE)
	$(BIN)/snakemake --profile profiles/local --configfile config/demo.yaml config/demo_decide.yaml -- \
		results/decisions/usage2_legal.json results/figures/decision_usage2_legal.pdf

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

bench: $(BASE)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done
