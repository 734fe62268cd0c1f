# The two commands that do everything on a fresh machine (README):
#   make run    set up, then run the offline default study
#   make test   set up, then run the tests (what CI runs)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: setup run report test test-fast test-slurm bench mutate lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	@if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || [ ! -d /usr/share/wordnet ] || [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist wordnet-base wordnet-sense-index chromium >/dev/null; \
	  else echo "Need Debian packages dataset-fashion-mnist wordnet-base wordnet-sense-index chromium: run 'sudo apt-get install dataset-fashion-mnist wordnet-base wordnet-sense-index chromium'" >&2; exit 1; fi; \
	fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

run: setup
	$(VENV)/bin/snakemake --profile profiles/default --cores $(CORES)

# Every table and figure of the paper with its caption in one HTML file (docs/report.md); runs what is missing first.
report: run
	$(VENV)/bin/snakemake --profile profiles/default --cores $(CORES) --report report.html
	@echo "open report.html in a browser"

test: setup
	$(PY) -m pytest -q -p no:cacheprovider -m "not slurm"

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# The SLURM profile against a real single-node Slurm started by the test (docs/cluster.md; needs root).
test-slurm: setup
	@if ! command -v slurmctld >/dev/null && [ ! -x /usr/sbin/slurmctld ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; \
	  else echo "Need Debian packages slurm-wlm munge and root: 'sudo make test-slurm'" >&2; exit 1; fi; \
	fi
	$(PY) -m pytest -q -p no:cacheprovider -m slurm -rA tests/test_slurm.py

bench: setup
	$(PY) benchmarks/run_all.py

mutate: setup
	$(PY) tools/mutate.py $(MODULES)

lint: setup
	$(VENV)/bin/ruff check src tests workflow/scripts benchmarks tools
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules
	$(VENV)/bin/snakemake --lint --cores 1

clean:
	rm -rf results logs benchmarks/default benchmarks/tiny .snakemake
