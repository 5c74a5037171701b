"""The pytest plugin: a failing model under pytest is found, stored under .pagemap/,
replayed first on the next run and dropped once it passes; its traceback names the
test file; PAGEMAP_* and the `pagemap` marker set what explore() does."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pagemap.check import CounterexampleFound, explore
from pagemap.check.database import Database, current_test
from pagemap.check.explore import explore_model
from pagemap.check.model import model
from pagemap.check.runner import Summary
from pagemap.machine import Machine
from pagemap.sync.atomic import AtomicWord

MODEL = """
import os
from pagemap.check import explore


class Counter:
    def __init__(self, machine):
        with open(os.environ["SETUPS"], "a") as f:  # counts the schedules run
            f.write("x")
        self.word = machine.executor.atomic(0, "counter")
        self.lock = machine.executor.spinlock("lock")


def bump(c):
    {body}


def both_counted(c):
    return c.word.value == 2


def test_lost_update():
    explore(Counter, bump, bump, check=both_counted)


def test_with_the_fixture(pagemap_explore):
    pagemap_explore(Counter, bump, bump, check=lambda c: c.word.value == 2)
"""
ROOT = Path(__file__).resolve().parents[2]  # the project: where `tests` is a package
RACY = "v = c.word.load()\n    c.word.store(v + 1)"
FIXED = "with c.lock:\n        c.word.store(c.word.load() + 1)"


def pytest_run(project: Path, body: str) -> tuple[int, str, int]:
    """Run pytest on the project's test file; (exit code, output, schedules run)."""
    (project / "test_model.py").write_text(MODEL.format(body=body))
    setups = project / "setups.txt"
    setups.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAGEMAP_", "PYTEST_"))}
    env["SETUPS"] = str(setups)
    # The output is counted and matched below: one width and no short summary, so a
    # wide terminal, or CI=true (which stops pytest truncating it), cannot repeat a
    # message on the summary line.
    env["COLUMNS"] = "100"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--tb=short", "-q", "-rN"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr, len(setups.read_text())


def stored(project: Path) -> dict[str, list[Path]]:
    """Test id -> its stored traces."""
    found: dict[str, list[Path]] = {}
    for test in (project / ".pagemap" / "examples").glob("*/test"):
        found[test.read_text().strip()] = sorted(test.parent.glob("*.json"))
    return found


def test_a_failing_model_is_stored_replayed_first_and_dropped_once_fixed(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    # 1. Found by exploring, stored by test id; the traceback ends in the test file.
    rc, out, explored = pytest_run(project, RACY)
    assert rc == 1 and "2 failed" in out, out
    source = (project / "test_model.py").read_text().splitlines()
    line = source.index("    explore(Counter, bump, bump, check=both_counted)") + 1
    assert f"test_model.py:{line}: in test_lost_update" in out
    fixture = source.index(
        "    pagemap_explore(Counter, bump, bump, check=lambda c: c.word.value == 2)"
    )
    assert f"test_model.py:{fixture + 1}: in test_with_the_fixture" in out
    assert not re.search(r"pagemap/check/(model|pytest_plugin)\.py:\d+", out), out
    assert "CounterexampleFound: check: the check returned False" in out
    assert "replay it: pytest test_model.py::test_lost_update" in out
    # test_lost_update's functions have import paths, so pagemap replay works too.
    db = stored(project)
    assert set(db) == {"test_model.py::test_lost_update", "test_model.py::test_with_the_fixture"}
    assert all(len(traces) == 1 for traces in db.values())
    (lost,) = db["test_model.py::test_lost_update"]
    how = f"or: pagemap replay {lost} --model-path ."
    assert how in out
    # It works from the root of the project, in a process of its own.
    by_hand = subprocess.run(
        [sys.executable, "-m", "pagemap", *shlex.split(how)[2:]],
        cwd=project,
        env=os.environ | {"SETUPS": str(project / "setups.txt"), "COLUMNS": "100"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert by_hand.returncode == 1, by_hand.stderr
    assert "VIOLATION check: the check returned False" in by_hand.stdout
    assert explored > 4  # exploring ran many schedules
    # 2. The next run replays each stored schedule before exploring: one schedule each.
    rc, out, replayed = pytest_run(project, RACY)
    assert rc == 1 and "2 failed" in out
    assert out.count("fails again (replayed before exploring") == 2
    assert replayed == 2
    assert stored(project) == db  # still stored
    # 3. Fixed: the stored schedules pass, are dropped, and the exploration runs.
    rc, out, explored = pytest_run(project, FIXED)
    assert rc == 0 and "2 passed" in out, out
    assert stored(project) == {}
    assert explored > 2


class Counter:
    def __init__(self, machine: Machine) -> None:
        self.word: AtomicWord = machine.executor.atomic(0, "counter")
        self.lock = machine.executor.spinlock("lock")


def locked_bump(c: Counter) -> None:
    with c.lock:
        c.word.store(c.word.load() + 1)


def racy_bump(c: Counter) -> None:
    v = c.word.load()
    c.word.store(v + 1)


def both(c: Counter) -> bool:
    return c.word.value == 2


def test_the_environment_sets_what_the_caller_leaves_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(ROOT)  # where the replay line is run from
    monkeypatch.setenv("PAGEMAP_STRATEGY", "pct")
    monkeypatch.setenv("PAGEMAP_BUDGET", "7")
    monkeypatch.setenv("PAGEMAP_SEED", "3")
    summary = explore(Counter, locked_bump, locked_bump, check=both)
    assert (summary.strategy, summary.schedules, summary.seed) == ("pct", 7, 3)
    assert summary.bound is None  # no preemption bound for PCT by default
    # The caller's own arguments win.
    summary = explore(Counter, locked_bump, locked_bump, check=both, strategy="dfs", seed=0)
    assert summary.strategy == "dfs" and summary.exhaustive and summary.bound == 2
    # No preemption: the lost update cannot happen; with none, DFS finds it.
    monkeypatch.delenv("PAGEMAP_BUDGET")
    monkeypatch.setenv("PAGEMAP_STRATEGY", "dfs")
    monkeypatch.setenv("PAGEMAP_PREEMPTIONS", "0")
    assert explore(Counter, racy_bump, racy_bump, check=both).exhaustive
    monkeypatch.setenv("PAGEMAP_PREEMPTIONS", "none")
    monkeypatch.setenv("PAGEMAP_TRACE_DIR", str(tmp_path / "traces"))
    with pytest.raises(CounterexampleFound) as info:
        explore(Counter, racy_bump, racy_bump, check=both)
    assert info.value.summary.bound is None
    (trace,) = (tmp_path / "traces").glob("*.json")
    assert info.value.replay_lines == [f"replay it: pagemap replay {trace} --model-path ."]


def test_a_stored_schedule_runs_on_the_tests_own_functions_whatever_the_file_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PAGEMAP_DATABASE", str(tmp_path))
    m = model(Counter, racy_bump, racy_bump, check=both)
    found = explore_model(m).trace
    assert found is not None
    # A database checked into a repository, its file crafted to name the shell.
    found.model = {"name": "m", "setup": "os:system", "tasks": ["os:system"], "check": None}
    db = Database.for_current_test()
    assert db is not None
    db.save(m, found)
    shell: list[object] = []
    monkeypatch.setattr(os, "system", lambda *a: shell.append(a))
    with pytest.raises(CounterexampleFound, match="fails again") as info:
        explore(Counter, racy_bump, racy_bump, check=both)
    assert shell == []
    # Stored again naming the test's own functions, which its replay line can load.
    stored = json.loads(db.path(m).read_text())["model"]
    assert stored["setup"] == f"{__name__}:Counter" and "os:system" not in str(stored)
    assert info.value.replay_lines[-1] == f"or: pagemap replay {db.path(m)} --model-path ."


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("PAGEMAP_BUDGET", "lots", "PAGEMAP_BUDGET=lots: expected a whole number of at least 1"),
        ("PAGEMAP_STRATEGY", "bfs", "PAGEMAP_STRATEGY=bfs: expected one of dpor, dfs, pct"),
        ("PAGEMAP_PREEMPTIONS", "-1", "PAGEMAP_PREEMPTIONS=-1: expected a whole number from 0"),
        ("PAGEMAP_SEED", "x", "PAGEMAP_SEED=x: expected a whole number of at least 0"),
    ],
)
def test_a_bad_variable_is_named(
    name: str, value: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=re.escape(says)):
        explore(Counter, locked_bump, check=both)


@pytest.mark.pagemap(strategy="random", budget=9, seed=5)
def test_the_marker_sets_the_fixtures_defaults(
    pagemap_explore: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAGEMAP_BUDGET", "2")  # the marker is more specific
    run = pagemap_explore
    assert callable(run)
    summary = run(Counter, locked_bump, locked_bump, check=both)
    assert isinstance(summary, Summary)
    assert (summary.strategy, summary.schedules, summary.seed) == ("random", 9, 5)
    assert run(Counter, locked_bump, locked_bump, check=both, budget=3).schedules == 3


def test_the_database_is_keyed_by_the_running_test(tmp_path: Path) -> None:
    env = {"PAGEMAP_DATABASE": str(tmp_path), "PYTEST_CURRENT_TEST": "t.py::test_x[1] (call)"}
    assert current_test(env) == "t.py::test_x[1]"
    db = Database.for_current_test(env)
    assert db is not None and db.test == "t.py::test_x[1]"
    assert Database.for_current_test({**env, "PAGEMAP_DATABASE": "off"}) is None
    assert Database.for_current_test({"PAGEMAP_DATABASE": str(tmp_path)}) is None
    # This very session runs with the database off (pyproject's pagemap_database).
    assert os.environ.get("PAGEMAP_DATABASE") == "off"
