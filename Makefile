# lcstudy — what learned image codecs cost to run. `make help` lists the targets.
#
#   make book                       set up, fetch data, run every codec × device, build the HTML
#   make book PROFILE=quick         the same in minutes (2 cropped images, 1 repeat)
#   make run CODEC=ARC QUALITY=5 THREADS=1   rerun one notebook with new parameters
#   make test                       set up if needed, run the tests
SHELL := /bin/bash
.DEFAULT_GOAL := help
# timing runs must never overlap on one machine: no parallel make here (the runs also
# take a machine-wide lock, so two separate `make` invocations queue as well)
.NOTPARALLEL:

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PIPE   := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m lcstudy.pipeline
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

PROFILE ?= standard
DEVICES ?=
LCSTUDY_MIRROR ?=
export LCSTUDY_MIRROR
RESULTS_DIR ?= $(if $(filter quick,$(PROFILE)),results-quick,results)
# the book's source folder (tests build a copy elsewhere) and where its HTML goes
BOOK ?= book
export LCSTUDY_BOOK := $(abspath $(BOOK))
BOOK_OUT ?= $(BOOK)/_build
NOWAIT ?=

# every notebook parameter can be set as the make variable of its upper-case name
NB_PARAMS := CODEC QUALITY DEVICE THREADS IMAGES LIMIT CROP REPEATS WARMUP WEIGHTS SEED RESIZE KERNELS MACS
RUN_OVERRIDES := $(foreach v,$(filter-out CODEC QUALITY DEVICE,$(NB_PARAMS)),$(if $($(v)),$(shell echo $(v) | tr A-Z a-z)=$($(v))))
ifneq ($(NOWAIT),)
export LCSTUDY_NOWAIT := 1
endif

.PHONY: help
help: ## list the targets and variables
	@echo "lcstudy — targets:"
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'
	@echo "variables: PROFILE=quick|standard|paper (now $(PROFILE)), DEVICES='cpu cuda' (default: cpu + cuda if present),"
	@echo "  LCSTUDY_MIRROR=<folder> (copy data from a local mirror), RESULTS_DIR (now $(RESULTS_DIR)), NOWAIT=1,"
	@echo "  notebook parameters for 'make run': $(NB_PARAMS) RESULTS_DIR"

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[book,test]' 2>&1 \
	  | grep -v "^WARNING: Location" || true
	@$(PY) -c "import lcstudy, compressai, torch, ptflops, papermill, jupytext" \
	  || (echo "setup failed: see the pip output above" >&2; exit 1)
	@touch $@

.PHONY: setup
setup: $(STAMP) ## create .venv and install the pinned dependencies (quick when nothing changed)

.PHONY: data
data: $(STAMP) ## fetch Kodak and the reference data into data/ (LCSTUDY_MIRROR=<folder> copies instead)
	$(PY) -m lcstudy.data --dest data

# ---- runs ---------------------------------------------------------------------------
PLAN := $(BOOK)/_generated/plan-$(PROFILE).mk
PROFILE_STAMP := $(BOOK)/runs/.profile-$(PROFILE)

ifeq ($(filter help setup test clean clean-runs data bench-overhead check-html pause resume,$(MAKECMDGOALS)),)
ifneq ($(MAKECMDGOALS),)
-include $(PLAN)
endif
endif

$(PLAN): lcstudy/config.py lcstudy/pipeline.py | $(STAMP)
	@mkdir -p $(dir $@)
	@$(PIPE) plan --profile $(PROFILE) --devices "$(DEVICES)" > $@.tmp && mv $@.tmp $@

$(PROFILE_STAMP):
	@mkdir -p $(dir $@)
	@rm -f $(BOOK)/runs/.profile-*
	@touch $@

.PHONY: runs
runs: $(STAMP) data $(PLAN) $(RUN_NOTEBOOKS) ## execute profile_codec once per codec × quality × device (finished runs are kept)
	@echo "runs done: $(words $(RUN_NOTEBOOKS)) notebooks for profile $(PROFILE)"

.PHONY: run
run: $(STAMP) ## rerun one notebook: make run CODEC=ARC QUALITY=5 DEVICE=cpu THREADS=1 …
	@test -n "$(CODEC)" || (echo "give CODEC=…, e.g. make run CODEC=ARC QUALITY=5" >&2; exit 2)
	$(PIPE) run codec=$(CODEC) quality=$(or $(QUALITY),1) device=$(or $(DEVICE),cpu) results_dir=$(RESULTS_DIR) \
	  $(RUN_OVERRIDES)

.PHONY: assessment
assessment: $(STAMP) ## execute the assessment, paper-comparison and RD-frontier notebooks over RESULTS_DIR
	$(PIPE) assessment --results-dir $(RESULTS_DIR)

.PHONY: book
book: runs ## everything: setup → data → runs → assessment → HTML (book/_build/html/index.html)
	@$(MAKE) --no-print-directory assessment PROFILE=$(PROFILE)
	@$(MAKE) --no-print-directory html PROFILE=$(PROFILE)

.PHONY: html
html: $(STAMP) ## build the HTML from what has been executed (no execution)
	$(PIPE) toc --results-dir $(RESULTS_DIR)
	$(VENV)/bin/jupyter-book build -W -n --keep-going --path-output $(BOOK_OUT)/.. $(BOOK)
	@echo "book: $(abspath $(BOOK_OUT))/html/index.html"

.PHONY: check-html
check-html: ## screenshot the assessment page in headless Chromium; fail on any non-local request
	$(PY) -m lcstudy.checkhtml $(BOOK_OUT)/html

.PHONY: test
test: $(STAMP) ## run the test suite (sets up first if needed)
	$(PY) -m pytest -q $(PYTEST_ARGS)

.PHONY: bench-overhead
bench-overhead: $(STAMP) ## instrumented vs plain compress()+decompress() per codec (target ≤ 1.01)
	$(PY) -m lcstudy.bench overhead --images $(if $(LCSTUDY_MIRROR),$(LCSTUDY_MIRROR)/data/kodak,data/kodak)

.PHONY: cost
cost: $(STAMP) ## what the runs cost: wall time per run notebook, share of it spent in codec work
	$(PIPE) cost --results-dir $(RESULTS_DIR)

.PHONY: pause resume
pause: $(STAMP) ## make the timing run in progress wait between images (to use the machine meanwhile)
	$(PY) -m lcstudy.lock pause

resume: $(STAMP) ## let a paused timing run go on
	$(PY) -m lcstudy.lock resume

.PHONY: clean-runs
clean-runs: ## forget executed run notebooks (results/ is kept: runs resume from it)
	rm -rf $(BOOK)/runs $(BOOK)/_generated/plan-*.mk

.PHONY: clean
clean: ## remove build outputs (keeps .venv, data and results)
	rm -rf $(BOOK)/_build $(BOOK)/_generated $(BOOK)/*.ipynb .pytest_cache
