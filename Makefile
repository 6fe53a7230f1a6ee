# lcstudy — what learned image codecs cost to run. `make help` lists the targets.
#
#   make book                       set up, fetch data, run every codec × device, build the HTML
#   make book PROFILE=quick         the same in minutes (2 cropped images)
#   make book EXECUTOR=slurm        every run a SLURM job on a node of its own
#   make run CODEC=ARC QUALITY=5 THREADS=1   rerun one notebook with new parameters
#   make test                       set up if needed, run the tests
SHELL := /bin/bash
.DEFAULT_GOAL := help
# timing runs never overlap on one machine: make runs them one after another, and every run also
# holds a machine-wide lock (two separate `make` invocations queue behind each other)
.NOTPARALLEL:

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PIPE   := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m lcstudy.pipeline
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

PROFILE ?= standard
DEVICES ?=
EXECUTOR ?= local
NODES ?= 1,4,16
LCSTUDY_MIRROR ?=
export LCSTUDY_MIRROR
RESULTS_DIR ?= $(if $(filter quick,$(PROFILE)),results-quick,results)
REFERENCE ?= data/reference
# codecs a user keeps in the study (a TOML file; see README "Profile your own codec")
CODECS_FILE ?=
ifneq ($(CODECS_FILE),)
export LCSTUDY_CODECS := $(abspath $(CODECS_FILE))
endif
# the book's source folder (tests build a copy elsewhere) and where its HTML goes
BOOK ?= book
export LCSTUDY_BOOK := $(abspath $(BOOK))
BOOK_OUT ?= $(BOOK)/_build
export LCSTUDY_BOOK_OUT := $(abspath $(BOOK_OUT))
# chapter notebooks executed at once (default: one per CPU, at most 4; 1 = one after another)
CHAPTER_JOBS ?=
ifneq ($(CHAPTER_JOBS),)
export LCSTUDY_CHAPTER_JOBS := $(CHAPTER_JOBS)
endif
NOWAIT ?=
ifneq ($(NOWAIT),)
export LCSTUDY_NOWAIT := 1
endif
# SLURM settings (EXECUTOR=slurm): partitions per device, account, QOS, extra sbatch options, waiting
SLURM_PARTITION ?=
SLURM_GPU_PARTITION ?=
SLURM_ACCOUNT ?=
SLURM_QOS ?=
SLURM_OPTS ?=
SLURM_WAIT ?= 1
export SLURM_PARTITION SLURM_GPU_PARTITION SLURM_ACCOUNT SLURM_QOS SLURM_OPTS

# every notebook parameter can be set as the make variable of its upper-case name: the list that
# `python -m lcstudy.pipeline params learned` prints, less RESULTS_DIR and PROFILE (tests/test_request.py checks it)
NB_PARAMS := CODEC QUALITY DEVICE THREADS IMAGES LIMIT CROP RESIZE SIZES REPEATS MIN_REPEATS MAX_REPEATS BUDGET TARGET \
             WARMUP WEIGHTS SEED KERNELS MACS CODEC_ARGS BACKEND FINGERPRINTS
lower = $(shell echo $(1) | tr A-Z a-z)
RUN_PARAMS := $(foreach v,$(NB_PARAMS),$(if $(value $(v)),$(call lower,$(v))='$($(v))'))
# for `make runs`/`make book`: what applies to every planned run (not the codec or its quality)
PLAN_PARAMS := $(foreach v,$(filter-out CODEC QUALITY DEVICE CODEC_ARGS SIZES BACKEND,$(NB_PARAMS)),$(if $(value $(v)),$(call lower,$(v))='$($(v))'))
PLAN_ARGS = --profile $(PROFILE) --devices "$(DEVICES)" --results-dir $(RESULTS_DIR) $(if $(CODECS),--codecs "$(CODECS)") \
            $(if $(BACKENDS),--backends "$(BACKENDS)")

.PHONY: help
help: ## list the targets and variables
	@echo "lcstudy — targets:"
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'
	@echo "variables: PROFILE=quick|standard|paper (now $(PROFILE)), DEVICES='cpu cuda' (default: cpu + cuda if present),"
	@echo "  RESULTS_DIR (now $(RESULTS_DIR)), EXECUTOR=local|slurm, NODES=1,4,16 (make cost), CODECS='FP ARC' (a subset),"
	@echo "  BACKENDS=none|'onnxruntime compile' (the deployment runs planned; default: the profile's),"
	@echo "  CODECS_FILE=<toml> (your own codecs), LCSTUDY_MIRROR=<folder> (data from a local mirror), NOWAIT=1,"
	@echo "  CHAPTER_JOBS=N (chapter notebooks at once; default one per CPU, at most 4),"
	@echo "  SLURM_PARTITION SLURM_GPU_PARTITION SLURM_ACCOUNT SLURM_QOS SLURM_OPTS SLURM_WAIT=0|1,"
	@echo "  notebook parameters (make run; the rest also make runs/book): $(NB_PARAMS)"
	@echo "chapters, in book order: $$(python3 -c 'from lcstudy.chapters import CHAPTERS; print(" ".join(c.name for c in CHAPTERS))')"

# PYTHON: python3.11 or python3.12 (a name on PATH or a path). A pyenv shim that refuses a version pyenv has
# installed but not selected is resolved to that installation. `make setup PYTHON=…` replaces a .venv of
# another Python.
RESOLVE_PY = py="$(PYTHON)"; \
	if ! "$$py" -c '' 2>/dev/null && command -v pyenv >/dev/null; then \
	  v=$$(pyenv versions --bare 2>/dev/null | grep -E "^$${py\#python}(\.[0-9]+)*$$" | tail -1); \
	  [ -n "$$v" ] && py="$$(pyenv root)/versions/$$v/bin/$$(basename $$py)"; \
	fi; \
	want=$$("$$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) \
	  || { echo "error: PYTHON=$(PYTHON) does not run: install Python 3.11 or 3.12 and pass PYTHON=<its name or path>" >&2; exit 2; }; \
	case "$$want" in 3.11|3.12) ;; *) echo "error: PYTHON=$(PYTHON) is Python $$want; lcstudy needs 3.11 or 3.12 (CompressAI 1.2.8 ships wheels for those only): make setup PYTHON=python3.11" >&2; exit 2;; esac

.PHONY: python-check
python-check:
	@$(RESOLVE_PY); have=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	if [ -n "$$have" ] && [ "$$have" != "$$want" ] && [ "$(origin PYTHON)" != "file" ]; then \
	  echo "replacing $(VENV) (Python $$have) with one of Python $$want"; rm -rf $(VENV); fi

# SYSTEM_TORCH=1: a machine's own torch (a GPU box's CUDA build, in PYTHON's site-packages) is kept: the venv
# sees it (--system-site-packages) and the lock constrains everything else (numpy stays 1.26.4)
SYSTEM_TORCH ?=
CONSTRAINTS := $(if $(SYSTEM_TORCH),$(VENV)/constraints-system-torch.txt,requirements.lock)
# a .venv that never completed a setup (no stamp: a failed or interrupted one, perhaps of another Python) is
# made again, and removed if its setup fails, so that the next `make setup` always starts clean
$(STAMP): pyproject.toml requirements.lock
	@$(RESOLVE_PY); fresh=$$(test -e $@ || echo 1); if [ -n "$$fresh" ]; then rm -rf $(VENV); fi; \
	if ! test -x $(PY); then echo "setup: creating $(VENV) with Python $$want ($$py)"; \
	  "$$py" -m venv $(if $(SYSTEM_TORCH),--system-site-packages) $(VENV) || { rm -rf $(VENV); \
	  echo "setup failed: $$py could not make a venv; give a Python 3.11 or 3.12 as PYTHON=…" >&2; exit 1; }; fi
ifneq ($(SYSTEM_TORCH),)
	@$(PY) -c "import torch; print(f'keeping the system torch {torch.__version__} (CUDA {torch.version.cuda})')" \
	  || { rm -rf $(VENV); echo "error: SYSTEM_TORCH=1 but $(PYTHON) has no torch: install your CUDA torch there, or leave SYSTEM_TORCH out" >&2; exit 2; }
	@$(PY) -c "import torch; print(torch.__version__)" > $(VENV)/system-torch.txt
	@grep -viE '^(torch|torchvision|triton|nvidia-|cuda-)' requirements.lock > $(CONSTRAINTS)
endif
	@set -o pipefail; fresh=$$(test -e $@ || echo 1); \
	echo "setup: pip installs the pinned dependencies into $(VENV) (a few minutes the first time; torch is large)"; \
	{ $(PY) -m pip install --progress-bar off --disable-pip-version-check -c $(CONSTRAINTS) -e '.[book,test]' 2>&1 \
	  | grep --line-buffered -v "^WARNING: Location\|^Requirement already satisfied" \
	  && $(PY) -c "import lcstudy, compressai, torch, ptflops, papermill, jupytext"; } \
	|| { if [ -n "$$fresh" ]; then rm -rf $(VENV); echo "setup failed (see above): removed the unfinished $(VENV)," \
	  "so the next make setup starts clean; this project needs Python 3.11 or 3.12 (PYTHON=python3.11)" >&2; \
	  else echo "setup failed: see the pip output above" >&2; fi; exit 1; }
ifneq ($(SYSTEM_TORCH),)
	@test "$$($(PY) -c 'import torch; print(torch.__version__)')" = "$$(cat $(VENV)/system-torch.txt)" \
	  || { echo "error: the system torch was replaced in $(VENV): report it" >&2; exit 1; }
endif
	@touch $@

.PHONY: setup
setup: python-check $(STAMP) ## create .venv and install the pinned dependencies (quick when nothing changed)

.PHONY: data
data: $(STAMP) ## fetch Kodak and the reference data into data/ (LCSTUDY_MIRROR=<folder> copies instead)
	$(PY) -m lcstudy.pipeline.data --dest data

.PHONY: weights
weights: $(STAMP) ## fetch every pretrained checkpoint the profile needs into the torch hub cache
	$(PIPE) weights $(PLAN_ARGS)

.PHONY: runs
runs: $(STAMP) data ## execute every missing run of the profile (EXECUTOR=local|slurm); finished runs are kept
	$(PIPE) runs $(PLAN_ARGS) --executor $(EXECUTOR) --wait $(SLURM_WAIT) -- $(PLAN_PARAMS)

.PHONY: run
run: $(STAMP) ## rerun one notebook: make run CODEC=ARC QUALITY=5 DEVICE=cpu THREADS=1 … (honours PROFILE)
	$(PIPE) run --results-dir $(RESULTS_DIR) profile=$(PROFILE) $(RUN_PARAMS)

# make reproducibility: rerun a sample of the runs in RESULTS_DIR (CODECS='HP FP', LIMIT=N images each, SAMPLE=N runs,
# SPLIT=N interleaved chunks per run) in fresh processes under the lock, apart from the study's tables; print coverage
SAMPLE ?=
SPLIT ?= 2
.PHONY: reproducibility
reproducibility: $(STAMP) ## rerun measured runs in fresh processes: do their intervals cover the rerun? (CODECS, LIMIT, SAMPLE)
	$(PY) -m lcstudy.pipeline.reproducibility --results-dir $(RESULTS_DIR) $(if $(CODECS),--codecs "$(CODECS)") \
	  $(if $(LIMIT),--limit $(LIMIT)) $(if $(SAMPLE),--sample $(SAMPLE)) --split $(SPLIT)

.PHONY: decodability
# DECODE_LIMIT: images per run whose streams are decoded (all: every one fingerprinted, see FINGERPRINTS); empty:
# the profile's (quick 1, else 2)
DECODE_LIMIT ?=
DECODE_QUALITIES ?= lowest
decodability: $(STAMP) ## decode the stored bitstreams of RESULTS_DIR under each decoder here (DECODE_LIMIT, DECODE_QUALITIES)
	$(PIPE) decodability --results-dir $(RESULTS_DIR) --profile $(PROFILE) $(if $(DECODE_LIMIT),--limit $(DECODE_LIMIT)) \
	  --qualities $(DECODE_QUALITIES)

.PHONY: chapters
chapters: $(STAMP) ## execute the chapter notebooks over RESULTS_DIR
	$(PIPE) chapters --results-dir $(RESULTS_DIR) --reference $(REFERENCE)

# exit status 3 = incomplete: items whose every repeat was contended (after retries); what was measured is
# written. `make book` goes on to build with them named and exits 3 at the end; 1 = a failure.
.PHONY: book
book: $(STAMP) data ## everything: setup → data → runs → chapters → HTML (book/_build/html/index.html)
	@$(PIPE) runs $(PLAN_ARGS) --executor $(EXECUTOR) --wait $(SLURM_WAIT) --contended-ok -- $(PLAN_PARAMS)
	@$(PIPE) missing --quiet $(PLAN_ARGS) $(PLAN_PARAMS)
	@$(PIPE) decodability --results-dir $(RESULTS_DIR) --profile $(PROFILE) $(if $(DECODE_LIMIT),--limit $(DECODE_LIMIT)) \
	  --qualities $(DECODE_QUALITIES)
	@$(MAKE) --no-print-directory chapters html PROFILE=$(PROFILE)
	@$(PIPE) missing --status $(PLAN_ARGS) $(PLAN_PARAMS)

.PHONY: html
html: $(STAMP) ## build the HTML from what has been executed (no execution)
	$(PIPE) book --results-dir $(RESULTS_DIR)
	$(VENV)/bin/jupyter-book build -W -n --keep-going --path-output $(BOOK_OUT)/.. $(BOOK)
	@echo "book: $(abspath $(BOOK_OUT))/html/index.html"

.PHONY: check-html
check-html: ## load every page in headless Chromium; fail on any non-local request; screenshot three chapters
	$(PY) -m lcstudy.pipeline.checkhtml $(BOOK_OUT)/html

.PHONY: notebooks
notebooks: $(STAMP) ## the run notebooks as .ipynb in book/_generated/notebooks, for plain papermill
	$(PIPE) ipynb profile_codec $(BOOK)/_generated/notebooks/profile_codec.ipynb
	$(PIPE) ipynb profile_standard $(BOOK)/_generated/notebooks/profile_standard.ipynb

.PHONY: test
test: $(STAMP) ## run the test suite (sets up first if needed)
	$(PY) -m pytest -q --durations=15 $(PYTEST_ARGS)

.PHONY: bench-overhead
bench-overhead: $(STAMP) ## instrumented vs plain compress()+decompress() per codec (target ≤ 1.01)
	$(PY) -m lcstudy.pipeline.bench overhead --device $(or $(DEVICE),cpu) --images $(if $(LCSTUDY_MIRROR),$(LCSTUDY_MIRROR)/data/kodak,data/kodak)

.PHONY: device-wheels device-check
device-wheels: $(STAMP) ## download the Python 3.12 wheels a GPU machine without network lacks (.device/wheels)
	$(PY) -m lcstudy.pipeline.device_check wheels

device-check: ## on a GPU machine (no venv needed): install the carried wheels, CUDA tests, a CUDA study, one archive
	$(or $(DEVICE_PYTHON),python3) -m lcstudy.pipeline.device_check run $(if $(OUT),--out $(OUT))

.PHONY: bench-startup
bench-startup: $(STAMP) ## a run notebook's fixed cost in parts (kernel start, imports, codec load, run page)
	$(PY) -m lcstudy.pipeline.bench startup --images $(if $(LCSTUDY_MIRROR),$(LCSTUDY_MIRROR)/data/kodak,data/kodak)

.PHONY: cost
cost: $(STAMP) ## what the runs cost: per run and phase, codec-work share, projected total on NODES nodes
	$(PIPE) cost $(PLAN_ARGS) --nodes $(NODES) $(PLAN_PARAMS)

.PHONY: pause resume
pause: $(STAMP) ## make the timing run in progress wait between images (to use the machine meanwhile)
	$(PY) -m lcstudy.runs.lock pause

resume: $(STAMP) ## let a paused timing run go on
	$(PY) -m lcstudy.runs.lock resume

.PHONY: clean-stale
clean-stale: $(STAMP) ## move result folders of older result schemas to RESULTS_DIR/_stale
	$(PIPE) clean-stale --results-dir $(RESULTS_DIR)

.PHONY: clean
clean: ## remove build outputs (keeps .venv, data and results)
	rm -rf $(BOOK)/_build $(BOOK)/_generated $(BOOK)/runs $(BOOK)/*.ipynb $(BOOK)/_toc.yml $(BOOK)/runs_index.md \
	  $(BOOK)/data.md .pytest_cache
