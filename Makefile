# The two commands: `make demo` and `make test`. Both install first (idempotent: seconds once done).
# Into an existing environment (e.g. one with a CUDA torch): make install PYTHON=/path/to/env/bin/python
VENV ?= .venv
USER_PYTHON := $(PYTHON)
PY := $(or $(USER_PYTHON),$(VENV)/bin/python)

.PHONY: install test test-heavy test-fast data demo clean

install:
	@VENV=$(VENV) PYTHON=$(USER_PYTHON) bash tools/install.sh

# One pytest-xdist worker per core here (TEST_JOBS=auto elsewhere); --timeout turns a hang into a failure.
# `make test`: everything but the few tests marked heavy (minutes of both cores each), which `make test-heavy`
# runs; CI (.ci/run) runs both.
TEST_JOBS ?= 2
test: install
	$(PY) -m pytest tests -q -ra --durations=15 -n $(TEST_JOBS) --timeout=1200 -m "not heavy"

test-heavy: install
	$(PY) -m pytest tests -q -ra --durations=5 -n $(TEST_JOBS) --timeout=1500 -m heavy

test-fast: install
	$(PY) -m pytest tests -q -m "not slow and not heavy"

data: install
	$(PY) tools/make_mini_data.py --out data/mini

demo: install data
	PYTHON=$(PY) bash tools/demo.sh

clean:
	rm -rf work_dirs data/mini
