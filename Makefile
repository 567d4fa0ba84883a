# Two commands on a fresh machine (python3 >= 3.10 and make, nothing else):
#   make demo   build a bloated process and bring it under target, with the measured report
#   make test   run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test smoke lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10) and "hivemem needs Python >= 3.10")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m hivemem demo

# Xvfb, headless Chromium and Graphviz are installed with apt-get when missing and possible (root,
# online); otherwise the tests that need them skip and say why.
test: $(STAMP)
	-./scripts/ensure-xvfb.sh
	-./scripts/ensure-chromium.sh
	-./scripts/ensure-graphviz.sh
	$(BIN)/python -m pytest

# pytest benchmarks/ (fresh interpreters per scenario and baseline), then docs/benchmarks.md from the JSON.
bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks/ -q; status=$$?; $(BIN)/python scripts/gen_benchmarks_md.py && exit $$status

# Every other CPython >= 3.10 found on PATH or under pyenv: a quick run of the fast tests.
smoke:
	./scripts/smoke.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .venv-* build dist .pytest_cache .mypy_cache .ruff_cache
