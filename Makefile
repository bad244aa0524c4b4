# mtfcdd: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision releases that install from this machine's disk (x86_64, Python 3.11)
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install demo compare label-sweep real-data bench-real real-levers lint format browser test test-fast docs docs-serve bench bench-serve bench-avx2 bench-avx512 clean

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_ -]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY) ## create .venv and install mtfcdd (editable) with its test, lint, docs and bench extras; torch pinned to the on-disk release
	$(PY) -m pip install $(TORCH_PIN)
	$(PY) -m pip install -e '.[test,lint,docs,bench]' $(TORCH_PIN)

demo: install ## train the embedded demo on a synthetic Real-IAD set (CPU, a few minutes), then print where results went
	$(PY) -m mtfcdd.train experiment=demo

# MultiTypeFCDD and PatchCore trained in one sweep, the combination (PatchCore's "whether", the type channels'
# "which") evaluated from their checkpoints into the sweep folder, then one report over the three
compare: install ## MultiTypeFCDD vs PatchCore vs their combination on the demo set (about 25 min on 2 CPU cores), one report
	$(PY) -m mtfcdd.train -m model=mtfcdd,patchcore experiment=demo
	sweep=$$(ls -d logs/train/demo/multiruns/*/ | sort | tail -n 1); \
	$(PY) -m mtfcdd.evaluate ckpt_path=$$(ls $${sweep}*_mtfcdd_*/checkpoints/last.ckpt) \
		detector_ckpt=$$(ls $${sweep}*_patchcore_*/checkpoints/last.ckpt) hydra.run.dir=$${sweep}2_combined && \
	$(PY) -m mtfcdd.report $$sweep

# the demo set in the per-type layout (data=folder), MultiTypeFCDD at 5, 10, 20 and all labelled defect images per
# type, and PatchCore (no labels) written into the same sweep folder, then one report with the labels plot
LABEL_COUNTS ?= 5,10,20,null
label-sweep: install ## MultiTypeFCDD against labelled images per type, PatchCore as reference (~16 min, 2 cores)
	$(PY) -m mtfcdd.data.synthetic --out data/synthetic-types-demo-s0 --preset demo --layout types
	sweep=logs/train/label_sweep/multiruns/$$(date +%Y-%m-%d_%H-%M-%S); \
	$(PY) -m mtfcdd.train -m experiment=label_sweep data.train_defects_per_type=$(LABEL_COUNTS) hydra.sweep.dir=$$sweep && \
	$(PY) -m mtfcdd.train -m experiment=label_sweep model=patchcore hydra.sweep.dir=$$sweep && \
	$(PY) -m mtfcdd.report $$sweep

# ELPV's mono solar cells (PyPI elpv-dataset, CC BY-NC-SA 4.0: downloaded at run time, never committed) in the
# per-type layout under data/elpv-mono; the poly cells are never written
real-data: install ## the real-image set: ELPV's mono solar cells into data/elpv-mono (downloads elpv-dataset)
	$(PY) -m pip install 'elpv-dataset==1.0.0.post1'
	$(PY) experiments/bench_real.py --prepare-only

bench-real: real-data ## MultiTypeFCDD (data=folder defaults) vs PatchCore, a linear probe and a fine-tuned classifier on ELPV (~25 min)
	$(PY) experiments/bench_real.py

# the data=folder recipe's levers, one changed per job, on the same cells; then one report (docs/real-images.md)
LEVERS ?= base,concat,dihedral,size288,stage2,head256,mean_score,epochs20,all_train
real-levers: real-data ## each lever of the data=folder recipe on ELPV's mono cells, one multirun and its report (~35 min)
	sweep=logs/train/real_images/multiruns/$$(date +%Y-%m-%d_%H-%M-%S); \
	$(PY) -m mtfcdd.train -m experiment=real_images lever=$(LEVERS) hydra.sweep.dir=$$sweep && \
	$(PY) -m mtfcdd.report $$sweep

lint: install ## ruff: formatting and lint rules (pyproject.toml) over the tree; what the pre-commit hooks run
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: install ## ruff: format the tree and apply the safe lint fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Debian's Chromium and its driver (tests/test_serve_page.py drives the inspection page through them); a no-op when
# both are installed. APT_GET: `sudo apt-get` where make does not run as root
APT_GET ?= apt-get
browser: ## install headless Chromium and chromedriver (Debian packages) for the browser tests
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then echo "chromium and chromedriver: installed"; \
	else $(APT_GET) update && $(APT_GET) install -y chromium chromium-driver; fi

test: install browser ## run the whole test suite, slow tests included
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install browser ## run the tests not marked slow
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

docs: install ## the documentation site into site/ (mkdocs build --strict: a broken link or an uncommented config key fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: install ## serve the documentation site at http://127.0.0.1:8001 (8000 is the model server's), rebuilt on every change
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve -a 127.0.0.1:8001

# the newest checkpoint of `make demo`, when there is one: the benchmark then judges every engine on its test set
DEMO_CKPT = $(firstword $(shell ls -t logs/train/demo/runs/*/checkpoints/last.ckpt 2>/dev/null))

bench: install ## inference benchmark (Table 6 style): on the demo checkpoint when `make demo` made one
	$(PY) -m mtfcdd.benchmark $(if $(DEMO_CKPT),ckpt_path=$(DEMO_CKPT),)

# 1, 4, 16, 64 concurrent clients on loopback, predict's images/s beside it, 10,000 requests for memory (~6 min)
bench-serve: install ## python -m mtfcdd.serve under load (experiments/bench_serve.py) on the demo checkpoint
	$(PY) experiments/bench_serve.py $(if $(DEMO_CKPT),--ckpt $(DEMO_CKPT),)

build/cpuid_mask.so: experiments/cpuid_mask/cpuid_mask.c
	mkdir -p build && gcc -O2 -Wall -shared -fPIC -o $@ $< -ldl

# an older CPU's kernels on this one (needs cpuid_fault in /proc/cpuinfo): AVX2 only, or AVX-512 without VNNI
bench-avx2 bench-avx512: bench-%: install build/cpuid_mask.so ## `make bench` with later instruction sets hidden from CPUID
	CPUID_MASK=$* LD_PRELOAD=$(CURDIR)/build/cpuid_mask.so $(PY) -m mtfcdd.benchmark \
		$(if $(DEMO_CKPT),ckpt_path=$(DEMO_CKPT),)

clean: ## remove the venv, caches, logs, generated data and the built docs
	rm -rf $(VENV) .pytest_cache build *.egg-info logs outputs data/synthetic-* wandb site
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
