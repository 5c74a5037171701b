"""Traces stand alone: every kind replays from the command line to its verdict
(a model of your own from its --model-path), and a trace that no longer fits the
code says so and exits 3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pagemap.check import CounterexampleFound, explore
from pagemap.check.explore import explore_model
from pagemap.check.model import FunctionModel
from pagemap.check.mutants import MUTANTS
from pagemap.check.scenarios import lookup
from pagemap.cli import main
from pagemap.machine import Machine
from pagemap.sync.atomic import AtomicWord


class Counter:
    def __init__(self, machine: Machine) -> None:
        self.word: AtomicWord = machine.executor.atomic(0, "counter")


def bump(c: Counter) -> None:
    v = c.word.load()
    c.word.store(v + 1)


def both_counted(c: Counter) -> bool:
    return c.word.value == 2


class TwoLocks:
    def __init__(self, machine: Machine) -> None:
        self.a = machine.executor.spinlock("a")
        self.b = machine.executor.spinlock("b")


def ab(s: TwoLocks) -> None:
    with s.a, s.b:
        pass


def ba(s: TwoLocks) -> None:
    with s.b, s.a:
        pass


def spin(c: Counter) -> None:
    while True:
        c.word.fetch_add(1)


def _explored(tmp: Path, *args: object, **kw: object) -> Path:
    with pytest.raises(CounterexampleFound):
        explore(*args, trace_dir=tmp, **kw)  # type: ignore[arg-type]
    (path,) = tmp.glob("*.json")
    return path


ROOT = Path(__file__).resolve().parents[2]  # where `tests` is found: the models' --model-path


def _replay(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["replay", str(path), "--model-path", str(ROOT)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_a_models_data_violation_replays_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _explored(tmp_path, Counter, bump, bump, check=both_counted)
    model = json.loads(path.read_text())["model"]
    assert model["setup"] == "tests.check.test_replay_cli:Counter"
    rc, out, _ = _replay(path, capsys)
    assert rc == 1
    assert "VIOLATION check" in out


def test_a_deadlock_replays_to_the_same_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _explored(tmp_path, TwoLocks, ab, ba, preemptions=1)
    rc, out, _ = _replay(path, capsys)
    assert rc == 1
    assert "deadlock" in out


def test_a_step_budget_violation_replays_under_the_budget_it_was_found_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _explored(tmp_path, Counter, spin, strategy="random", budget=1, max_steps=300)
    assert json.loads(path.read_text())["max_steps"] == 300
    rc, out, _ = _replay(path, capsys)
    assert rc == 1
    assert "step budget of 300" in out
    assert "livelock" in out  # one turn of the cycle, not 300 rows


def test_a_scenario_trace_replays_and_a_tampered_one_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mutant = next(m for m in MUTANTS if m.name == "lookup-keeps-removal")
    model = lookup(mutant.scenario).model()
    with mutant.applied():
        summary = explore_model(model)
        assert summary.trace is not None
        path = summary.trace.save(tmp_path)
        rc, out, _ = _replay(path, capsys)
        assert rc == 1 and "VIOLATION" in out
        raw = json.loads(path.read_text())
        # A schedule that names a task that cannot run where it says.
        raw["schedule"] = "7*3"
        bad = tmp_path / "tampered.json"
        bad.write_text(json.dumps(raw))
        rc, _, err = _replay(bad, capsys)
        assert rc == 3
        assert "no longer fits" in err and len(err.strip().splitlines()) == 1
        # Settings that the scenario no longer has.
        raw = json.loads(path.read_text()) | {"cores": 7}
        bad.write_text(json.dumps(raw))
        rc, _, err = _replay(bad, capsys)
        assert rc == 3 and "cores=7" in err


@pytest.mark.parametrize(
    "change, says",
    [
        ({"schema": 99}, "schema 99"),
        ({"seed": [1]}, "seed"),
        ({"params": {"pages": 10**30}}, "params/pages"),
        ({"model": {"scenario": "no-such"}}, "unknown scenario"),
        ({"params": {"pages": 0}}, "outside"),
        ({"schedule": "0*x"}, "schedule"),
    ],
)
def test_a_crafted_trace_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, object], says: str
) -> None:
    mutant = next(m for m in MUTANTS if m.name == "lookup-keeps-removal")
    with mutant.applied():
        summary = explore_model(lookup(mutant.scenario).model(), shrink=False)
    assert summary.trace is not None
    raw = json.loads(summary.trace.to_json()) | change
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(["replay", str(bad)]))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1


def test_a_model_without_an_import_path_says_how_to_replay_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _explored(tmp_path, Counter, bump, lambda c: bump(c), check=both_counted)
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(["replay", str(path)]))
    assert info.value.code == 2
    assert "replay_model" in capsys.readouterr().err


def looping(c: Counter) -> None:
    c.word.load()
    n = 0
    while True:  # no scheduling point in here: only the watchdog can end it
        n += 1


def test_the_watchdog_reports_a_task_that_never_reaches_a_point() -> None:
    model = FunctionModel("looping", Counter, (looping, bump), None, 2, 8 * 4096)
    summary = explore_model(model, "dfs", budget=1, watchdog=0.5, shrink=False)
    assert summary.trace is not None
    assert summary.trace.oracle == "liveness"
    assert "without reaching a scheduling point" in summary.trace.message
    assert "looping" in summary.trace.message  # the task's stack, where it loops


@pytest.mark.parametrize(
    "text, says",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"schema": 2, "cores": 3.0}', "required property"),
        ("\udcff", "not UTF-8"),
    ],
)
def test_a_file_that_cannot_be_a_trace_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, says: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(text.encode("utf-8", "surrogateescape"))
    assert main(["replay", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1


def test_a_float_where_a_trace_has_an_integer_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _explored(tmp_path, Counter, bump, bump, check=both_counted)
    raw = json.loads(path.read_text()) | {"cores": 2.0}
    bad = tmp_path / "float.json"
    bad.write_text(json.dumps(raw))
    assert main(["replay", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cores" in err and "integer" in err and len(err.splitlines()) == 1


def test_a_trace_naming_code_outside_the_model_path_is_refused_before_importing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _explored(tmp_path, Counter, bump, bump, check=both_counted)
    raw = json.loads(path.read_text())
    raw["model"]["setup"] = "subprocess:run"
    bad = tmp_path / "crafted.json"
    bad.write_text(json.dumps(raw))
    rc, _, err = _replay(bad, capsys)
    assert rc == 3  # more in test_replay_trust.py
    assert "subprocess:run" in err and "standard library" in err
    assert "--model-path DIR" in err and len(err.strip().splitlines()) == 1
