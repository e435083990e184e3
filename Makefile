# beam_seg — `make demo` and `make test` each set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHARED ?= $(abspath ../shared)
export BEAM_SEG_MODEL_DIR ?= $(SHARED)/models
export BEAM_SEG_SHARED ?= $(SHARED)
DEMO_OUT ?= demo-out

.PHONY: install browser test test-fast demo lint bench bench-quality clean

# The stamp depends on setup.py, so `make install` is a no-op until the dependencies change.
$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel
	$(PY) -m pip install --quiet -e '.[dev]'
	# `. .venv/bin/activate` also points beam-seg at the offline model mirror (the README's examples)
	grep -q BEAM_SEG_MODEL_DIR $(VENV)/bin/activate || \
	    echo 'export BEAM_SEG_MODEL_DIR="$${BEAM_SEG_MODEL_DIR:-$(SHARED)/models}"' >> $(VENV)/bin/activate
	touch $@

# Headless Chromium for the report's browser test (tests/commands/test_report_browser.py), from Debian.
# As root it is apt-installed; otherwise through sudo -n when allowed, else a warning (the
# test then fails saying what to do). BEAM_SEG_CHROMIUM may point at any other Chromium.
browser:
	@if command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null \
	    || [ -n "$$BEAM_SEG_CHROMIUM" ]; then :; \
	elif [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then \
	    SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	        --no-install-recommends chromium-headless-shell fonts-liberation >/dev/null; \
	else echo "warning: no Chromium; install chromium-headless-shell for the report's browser test"; \
	fi

install: $(VENV)/.installed browser

# Everything, in two passes: the tests on $(TEST_WORKERS) workers (pytest-xdist; a module's
# tests stay on one worker), then the `serial` ones alone, so that their wall-clock bounds are
# not measured against a neighbour's load.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not serial" tests
	$(PY) -m pytest -q -m serial tests

# The fast tier: steps, wiring (TestPipeline + a fake model), options and analytics; no real
# model. In the same two passes as `make test`: on the workers, then the `serial` ones alone.
test-fast: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not real_model and not serial" tests
	$(PY) -m pytest -q -m "serial and not real_model" tests

lint: install
	$(VENV)/bin/ruff check beam_seg pipelines tests benchmarks examples

demo: install
	$(VENV)/bin/beam-seg segment $(SHARED)/data/videos/udacity_solidWhiteRight.mp4 \
	    $(SHARED)/data/images/dashcam/ --output $(DEMO_OUT)
	@echo
	@echo "Look at: $(DEMO_OUT)/videos/ (segmented video), $(DEMO_OUT)/overlays/, $(DEMO_OUT)/labels/,"
	@echo "         $(DEMO_OUT)/coverage/ (Parquet; try: $(VENV)/bin/beam-seg report $(DEMO_OUT))"

bench: install
	$(PY) benchmarks/bench.py --out bench-out
	$(PY) benchmarks/quantize_b0.py
	$(PY) benchmarks/bench_models.py --out bench-out

bench-quality: install
	$(PY) benchmarks/quality.py --out bench-out

clean:
	rm -rf $(DEMO_OUT) bench-out .pytest_cache
