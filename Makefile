# Every target creates .venv on first use; a fresh machine needs only python3.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: run test lint typecheck unit chromium bench check soak clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,cluster]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pagemap run

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# The browser test drives the system's Chromium through Playwright; Playwright's own
# browser download is never used.  As root on Debian we install the package; elsewhere
# one line says what to install, and the browser test fails with the same line.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium (Debian package) for the browser test"; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "the browser test needs Chromium: install it as root (Debian: apt-get install chromium)"; \
	fi

# loadgroup keeps the browser tests on one worker, so they share one browser launch.
unit: $(STAMP) chromium
	$(BIN)/pytest -n 2 --dist loadgroup

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,cluster,bench]'
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
