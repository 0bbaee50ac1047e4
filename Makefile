# Set-up needs only Python 3.11+ and make. Every target is idempotent.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint format demo dev bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[pipeline,dev]'
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/audit-pipeline demo

# make dev PORT=3001 when 3000 is taken
PORT ?= 3000
dev: $(STAMP)
	$(BIN)/audit-pipeline dev --port $(PORT)

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[pipeline,dev,bench]'
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
