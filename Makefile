# lcstudy — what learned image codecs cost to run. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Local mirror of the public data (tests and CI: LCSTUDY_MIRROR=../shared)
LCSTUDY_MIRROR ?=
export LCSTUDY_MIRROR

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[book,test]' 2>&1 \
	  | grep -v "^WARNING: Location" || true
	@$(PY) -c "import lcstudy, compressai, torch, ptflops" || (echo "setup failed: see pip output above" >&2; exit 1)
	@touch $@

.PHONY: setup
setup: $(STAMP) ## create .venv and install the pinned dependencies (quick when nothing changed)

.PHONY: test
test: $(STAMP) ## run the test suite (sets up first if needed)
	$(PY) -m pytest -q $(PYTEST_ARGS)

.PHONY: bench-overhead
bench-overhead: $(STAMP) ## instrumented vs plain compress()+decompress() time per codec (target ≤ 1.01)
	$(PY) -m lcstudy.bench overhead $(if $(LCSTUDY_MIRROR),--images $(LCSTUDY_MIRROR)/data/kodak,)

.PHONY: clean
clean: ## remove build outputs (keeps .venv, data and results)
	rm -rf book/_build .pytest_cache
