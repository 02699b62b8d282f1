# msid: `make demo` and `make test` set everything up themselves (a pip venv in .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.msid-installed
# the bde environment (ALFABET on TensorFlow) lives apart from torch; its `msid-bde` command is
# linked into $(BIN), which goes first on PATH for the workflow
BDE_VENV ?= .venv-bde
BDE_STAMP := $(BDE_VENV)/.msid-installed
export PATH := $(abspath $(BIN)):$(PATH)
CORES ?= 2
# `make models PROFILE=profiles/slurm`: training jobs on the cluster's GPU partition
PROFILE ?= profiles/local
export MPLBACKEND := Agg

.PHONY: setup bde-env browser demo test test-fast bench benchmark docs models lint report clean

## setup: both venvs, built side by side (two pip installs at once save most of a minute); the
## editable installs of msid come last, one at a time, as they write into this source tree
setup:
	@$(MAKE) --no-print-directory -j2 $(STAMP) $(BDE_DEPS)
	@$(MAKE) --no-print-directory $(BDE_STAMP)

$(STAMP): pyproject.toml requirements/main.txt requirements/torch.txt requirements/dev.txt \
		requirements/llm.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/main.txt -r requirements/torch.txt \
		-r requirements/dev.txt -r requirements/llm.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@# numba compiles pynndescent's functions on matchms' first import (~20 s) and caches
	@# them: once here, not in each of the first parallel jobs of a run
	$(BIN)/python -c "import matchms"
	touch $@

## bde-env: the ALFABET venv (alfabet 0.1.0 + nfp 0.1.4 ship their weights; --no-deps, then
## TensorFlow + tf-keras; run with TF_USE_LEGACY_KERAS=1, which msid-bde sets)
bde-env: $(BDE_STAMP)

BDE_DEPS := $(BDE_VENV)/.deps-installed
$(BDE_DEPS): requirements/bde.txt
	test -x $(BDE_VENV)/bin/python || $(PYTHON) -m venv $(BDE_VENV)
	$(BDE_VENV)/bin/python -m pip install -q --upgrade pip
	$(BDE_VENV)/bin/python -m pip install -q --no-deps alfabet==0.1.0 nfp==0.1.4
	$(BDE_VENV)/bin/python -m pip install -q -r requirements/bde.txt
	touch $@

$(BDE_STAMP): $(BDE_DEPS) $(STAMP) pyproject.toml
	$(BDE_VENV)/bin/python -m pip install -q --no-deps -e .
	ln -sf $(abspath $(BDE_VENV))/bin/msid-bde $(BIN)/msid-bde
	touch $@

## demo: the demo DAG on the shipped runs and library (local profile, 2 cores)
demo: setup
	$(BIN)/snakemake all --profile profiles/local --cores $(CORES) --configfile config/demo.yaml
	@echo "Reports: results/runs/*/report.html   Leaderboard: results/leaderboard/leaderboard.md"

## browser: Chromium + chromedriver for the GUI's browser test (Debian packages; as root, or
## with sudo; elsewhere that one test is skipped and says so)
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium chromium-driver; \
		elif command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then \
			sudo apt-get update -q && sudo apt-get install -y -q chromium chromium-driver; \
		else echo "browser: no chromium (install chromium + chromium-driver); the GUI browser test is skipped"; fi; fi

## test: the whole test suite, end-to-end DAG run included
test: setup browser
	$(BIN)/python -m pytest tests --durations=20

## test-fast: unit and workflow tests only (no end-to-end DAG, no Slurm cluster)
test-fast: setup
	$(BIN)/python -m pytest -m "not e2e and not slurm" tests

## bench: throughput numbers (preprocessing, candidate index, library search vs FlashEntropySearch)
bench: setup
	$(BIN)/msid bench --jobs $(CORES) --out results/bench.json

## models: train every model family (retrieval, de novo + GLMR, NEIMS, LLM4MS, PepTRM), then ship them
models: setup
	$(BIN)/snakemake models --profile $(PROFILE) --cores $(CORES)
	mkdir -p resources/models
	cp results/models/*.safetensors results/models/*.json results/models/*.train_structures.txt resources/models/

## benchmark: the leaderboard on 2,000 test-fold queries, every method (config/benchmark.yaml)
benchmark: setup
	$(BIN)/snakemake all --profile profiles/local --cores $(CORES) --configfile config/benchmark.yaml
	@echo "Leaderboard: results/paper/leaderboard/leaderboard.md (the demo's stays in results/leaderboard/)"
	@echo "Then: make docs (copies it into docs/; tests/test_docs.py checks the README against it)"

## docs: copy the last `make benchmark` run's tables and figures into docs/, which the README quotes
PAPER := results/paper
docs:
	@test -f $(PAPER)/leaderboard/leaderboard.md || { echo "docs: no $(PAPER)/leaderboard: run make benchmark first"; exit 1; }
	cp $(PAPER)/leaderboard/*.md $(PAPER)/leaderboard/*.csv $(PAPER)/leaderboard/*.tex \
		$(PAPER)/leaderboard/*.png $(PAPER)/leaderboard/*.json docs/leaderboard/
	cp $(PAPER)/benchmark/fdr_curve.png $(PAPER)/benchmark/fdr_curve.tsv docs/
	@echo "docs/ updated: state the commit in docs/leaderboard/README.md, then make the README's tables agree (pytest tests/test_docs.py)"

## report: Snakemake's own self-contained HTML report of the last demo run
report: setup
	$(BIN)/snakemake --configfile config/demo.yaml --report results/snakemake_report.html

lint: setup
	$(BIN)/ruff check workflow tests
	$(BIN)/snakefmt --check workflow
	$(BIN)/snakemake --lint --cores 1

clean:
	rm -rf results logs benchmarks .snakemake
