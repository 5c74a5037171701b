# Every target creates .venv on first use; a fresh machine needs only python3.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench check soak clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pagemap run

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n 2

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

# Every scenario: the portfolio (PCT, then DPOR) with up to 3 preemptions, to the end.
check: $(STAMP)
	$(BIN)/pagemap check --preemptions 3

# Long explorations: PCT and random schedules by the ten thousand, and long runs
# of the main job under both executors.  Minutes, not part of `make test`.
soak: $(STAMP)
	$(BIN)/pagemap check --strategy pct --budget 20000 --jobs 2
	$(BIN)/pagemap check --strategy random --budget 20000 --jobs 2
	$(BIN)/pagemap check --strategy dpor --preemptions 4 --time 120
	$(BIN)/pagemap run --ops 200000
	$(BIN)/pagemap run --executor sim --ops 100000 --seed 7

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
