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

.PHONY: setup run test test-fast bench mutate lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	@if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || [ ! -d /usr/share/wordnet ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist wordnet-base wordnet-sense-index >/dev/null; \
	  else echo "Need Debian packages dataset-fashion-mnist wordnet-base wordnet-sense-index: run 'sudo apt-get install dataset-fashion-mnist wordnet-base wordnet-sense-index'" >&2; exit 1; fi; \
	fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

run: setup
	$(VENV)/bin/snakemake --profile profiles/default --cores $(CORES)

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

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
