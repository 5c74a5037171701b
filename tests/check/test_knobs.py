"""A PAGEMAP_* variable that does not parse, under pytest: one line that names it,
its value and what it takes, never a traceback through check/knobs.py that
prints the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = """
import os
from pagemap.check import explore


class Counter:
    def __init__(self, machine):
        self.word = machine.executor.atomic(0, "counter")


def bump(c):
    c.word.store(c.word.load() + 1)


def test_explores():
    explore(Counter, bump, check=lambda c: c.word.value == 1)


def test_sets_its_own(monkeypatch):
    monkeypatch.setenv("PAGEMAP_STRATEGY", "bogus")
    explore(Counter, bump, check=lambda c: c.word.value == 1)
"""
SAYS = "PAGEMAP_STRATEGY=bogus: expected one of dpor, dfs, pct, random"


def run_pytest(project: Path, *args: str, **env: str) -> tuple[int, str]:
    (project / "test_model.py").write_text(TESTS)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PAGEMAP_", "PYTEST_"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=project,
        env={**clean, "PAGEMAP_DATABASE": "off", "COLUMNS": "100", **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_a_bad_variable_for_the_session_is_one_line_and_exit_2(tmp_path: Path) -> None:
    rc, out = run_pytest(tmp_path, PAGEMAP_STRATEGY="bogus")
    lines = [line for line in out.splitlines() if line.strip()]
    assert rc == 2, out
    assert len(lines) == 1 and SAYS in lines[0], out


def test_a_bad_variable_set_in_a_test_fails_it_at_its_line_without_the_environment(
    tmp_path: Path,
) -> None:
    rc, out = run_pytest(tmp_path, "-k", "sets_its_own", SECRET="do-not-print")
    assert rc == 1, out
    assert f"E   ValueError: {SAYS}" in out or f"E       ValueError: {SAYS}" in out, out
    assert "knobs.py" not in out and "environ(" not in out and "do-not-print" not in out, out
