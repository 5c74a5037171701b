# Every target creates .venv on first use; a fresh machine needs only python3.
# `make run` installs only what running needs (RUN_STAMP); the other targets add
# the tools of the dev extra (STAMP).
PY        ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
STAMP     := $(VENV)/.installed

.PHONY: run test lint typecheck unit docs chromium bench check soak run-soak ext2-soak e2fsprogs clean

$(RUN_STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet -e '.[dev,cluster]'
	touch $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/pagemap run

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# The reference site (mkdocs.yml), into build/site/.  `make test` builds it too,
# in tests/test_docs.py, which fails on any warning as this does.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

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
unit: $(STAMP) chromium e2fsprogs
	$(BIN)/pytest -n 2 --dist loadgroup

# The ext2 tests judge images with e2fsprogs (mke2fs, e2fsck, debugfs), which
# live in /sbin or /usr/sbin.  Installed here when missing and we are root;
# otherwise one line says what to install (and those tests then fail).
E2FSPROGS := mke2fs e2fsck debugfs
e2fsprogs:
	@missing=; for t in $(E2FSPROGS); do \
	  command -v $$t >/dev/null 2>&1 || [ -x /sbin/$$t ] || [ -x /usr/sbin/$$t ] || missing=1; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y e2fsprogs || { apt-get update && apt-get install -y e2fsprogs; }; \
	  else \
	    echo "make: the ext2 tests need e2fsprogs (mke2fs, e2fsck, debugfs): sudo apt-get install e2fsprogs"; \
	  fi; \
	fi

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,cluster,bench]'
	$(BIN)/python -m bench

# Every scenario: the portfolio (PCT, then DPOR) with up to 3 preemptions, to the end.
check: $(RUN_STAMP)
	$(BIN)/pagemap check --preemptions 3

# Long explorations: DFS and DPOR judged by the brute-force reference on 1000
# generated programs, PCT and random schedules by the ten thousand, every lock of
# the kernel not taken (the lock mutants), and long runs
# of the main job under both executors.  Minutes, not part of `make test`.
soak: $(STAMP)
	REFERENCE_EXAMPLES=1000 $(BIN)/pytest tests/check/test_reference.py
	$(BIN)/pagemap check --strategy pct --budget 20000 --jobs 2
	$(BIN)/pagemap check --strategy random --budget 20000 --jobs 2
	$(BIN)/pagemap check --strategy dpor --preemptions 4 --time 120
	$(BIN)/pagemap check --validate --strategy random --budget 500 --jobs 2
	$(BIN)/pagemap check --validate --strategy dpor --preemptions 1 --budget 2000 --jobs 2
	PAGEMAP_SOAK=1 $(BIN)/pytest -n 2 tests/check/test_dpor_equivalence.py
	$(BIN)/pagemap check --mutants --auto --jobs 2
	PAGEMAP_SOAK=1 $(BIN)/pytest tests/kernel/test_linux_diff_mremap.py
	PAGEMAP_SOAK=1 $(BIN)/pytest tests/kernel/test_linux_fork_diff.py
	$(BIN)/pagemap run --ops 200000
	$(BIN)/pagemap run --executor sim --ops 100000 --seed 7

# The main job on files of any size: `pagemap run` over 100 random file sizes from
# 1 byte to 1 GiB (log-uniform; the two ends always), each under both executors
# with 200 operations; every run must end OK.  Minutes, not part of `make test`.
run-soak: $(RUN_STAMP)
	$(BIN)/python -m tests.workload.soak --runs 100 --ops 200

# The ext2 driver at length: the hypothesis state machine against a host
# directory with many more examples, the fault soak over 500 images (host
# faults and frame exhaustion; `make test` runs 50), and the ext2 scenarios
# under PCT and random schedules by the thousand.  Minutes, not part of
# `make test`.
ext2-soak: $(STAMP) e2fsprogs
	PAGEMAP_EXT2_EXAMPLES=500 $(BIN)/pytest -n 2 tests/kernel/fs/ext2/test_stateful.py
	PAGEMAP_EXT2_SOAK=500 $(BIN)/pytest -n 2 tests/kernel/fs/ext2/test_soak.py
	$(BIN)/pagemap check ext2-store-remove ext2-append-truncate --strategy pct --budget 5000 --jobs 2
	$(BIN)/pagemap check ext2-store-remove ext2-append-truncate --strategy random --budget 5000 --jobs 2

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
