# The two commands of the README:
#   make demo   sets up the environment and runs the whole pipeline on the sample corpus
#   make test   sets up the environment and runs the test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Where ../shared/data exists (this workplace, CI), the demo reads that corpus in place. Elsewhere the variable
# is empty and the demo downloads the pinned sample (`roomclf sample-data`: a few batches of all 7 classes,
# every file checked against its SHA-256) into $ROOMCLF_HOME/sample. Set it to an existing corpus to use that.
ROOMCLF_SAMPLE_SOURCE ?= $(if $(wildcard ../shared/data/labels.csv),../shared/data,)
export ROOMCLF_SAMPLE_SOURCE

.PHONY: demo test test-fast setup browser bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "needs $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade-strategy only-if-needed -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium for the browser tests (a browser download does not work offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { (apt-get update -q && apt-get install -y -q chromium) >/dev/null || echo "chromium not installed: browser tests will skip"; }

demo: $(STAMP)
	$(BIN)/roomclf demo

# Two pytest workers, each taking whole test files (their module fixtures: servers, clusters, trained models,
# are built once): run one file at a time, the suite leaves a core idle while a test waits on its servers and
# subprocesses. Files go out in collection order, the longest first (tests/conftest.py, LONG_FILES).
test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

# The quick lane while working: no end-to-end (slow) or browser tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser"

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

# Caches only: var/ holds the label store and the MLflow store (labels and models are work, not cache).
clean:
	rm -rf .pytest_cache build *.egg-info var/embeddings var/thumbs
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +
