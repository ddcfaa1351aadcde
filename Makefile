# Guantong: every target bootstraps .venv from nothing (Python >= 3.11).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PG_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: all venv test test-pg lint types bench bench-province soak demo ci clean

all: test

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "error: Python >= 3.11 is required (set PYTHON=...)" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

test-pg: $(STAMP)
	GUANTONG_TEST_PG_URL=$(PG_URL) GUANTONG_TEST_PG_REQUIRED=1 $(BIN)/python -m pytest -m pg -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks

bench-province: $(STAMP)
	$(BIN)/python -m benchmarks.province --stations 1000,10000
	@if [ -n "$$GUANTONG_TEST_PG_URL" ]; then \
		$(BIN)/python -m benchmarks.province --stations 1000,10000 --province-db "$$GUANTONG_TEST_PG_URL"; \
	fi

soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak --iterations 100
	@if [ -n "$$GUANTONG_TEST_PG_URL" ]; then \
		$(BIN)/python -m benchmarks.soak --iterations 100 --db "$$GUANTONG_TEST_PG_URL"; \
	fi

demo: $(STAMP)
	$(BIN)/guantong demo

ci: $(STAMP)
	.ci/run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
