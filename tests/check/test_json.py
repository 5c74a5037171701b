"""`--json` on check and replay: one document on stdout, valid against the JSON
Schema shipped in the package, snake_case keys, a schema version."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pagemap.check.mutants import MUTANTS
from pagemap.check.schema import SchemaError, validate
from pagemap.cli import main

SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


def keys(doc: Any, skip: tuple[str, ...] = ()) -> set[str]:
    """Every key of every object in `doc`, less the contents of fields in `skip`
    (whose keys are names of things, such as a state's entries)."""
    found: set[str] = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            found.add(k)
            if k not in skip:
                found |= keys(v, skip)
    elif isinstance(doc, list):
        for v in doc:
            found |= keys(v, skip)
    return found


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    rc = main(argv)
    out = capsys.readouterr()
    return rc, json.loads(out.out), out.err


def test_check_json_that_holds(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, doc, err = run_json(
        [
            "check",
            "load-remove",
            "eio-load",
            "--strategy",
            "pct",
            "--budget",
            "20",
            "--json",
            "--traces",
            str(tmp_path),
        ],
        capsys,
    )
    validate(doc, "check", "check --json")
    assert rc == 0 and doc["exit_code"] == 0 and doc["ok"] is True
    assert doc["schema"] == 1 and doc["verdict"] == "holds"
    assert [s["scenario"] for s in doc["scenarios"]] == ["load-remove", "eio-load"]
    assert all(s["schedules"] == 20 for s in doc["scenarios"])
    assert doc["counterexamples"] == []
    assert all(SNAKE.match(k) for k in keys(doc, ("params", "earlier_phases")))
    # The schema can fail: another version, or a key it does not know.
    with pytest.raises(SchemaError, match="schema"):
        validate({**doc, "schema": 2}, "check", "check --json")
    with pytest.raises(SchemaError, match="scenarios/0"):
        bad = {**doc["scenarios"][0], "steps per second": 1}
        validate({**doc, "scenarios": [bad]}, "check", "check --json")
    # People's output went to stderr, the verdict line last.
    assert err.strip().splitlines()[-1].startswith("OK: every oracle holds")


def test_check_and_replay_json_of_a_counterexample(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mutant = next(m for m in MUTANTS if m.name == "lookup-keeps-removal")
    with mutant.applied():
        rc, doc, _ = run_json(
            ["check", mutant.scenario, "--json", "--traces", str(tmp_path / "t")], capsys
        )
        validate(doc, "check", "check --json")
        assert rc == 1 and doc["verdict"] == "violation" and doc["exit_code"] == 1
        (found,) = doc["counterexamples"]
        assert Path(found["trace"]).is_file()
        assert found["replay_command"] == f"pagemap replay {found['trace']}"
        rc, rep, _ = run_json(["replay", found["trace"], "--json"], capsys)
    validate(rep, "replay", "replay --json")
    assert rc == 1 and rep["verdict"] == "violation" and rep["exit_code"] == 1
    assert rep["violation"]["oracle"] == found["oracle"] == rep["recorded"]["oracle"]
    timeline = rep["timeline"]
    assert len(timeline["rows"]) == rep["steps"] == found["steps"]
    assert any(r["failing"] for r in timeline["rows"])
    assert all(r["state"] for r in timeline["rows"])  # the machine after every step
    assert all(SNAKE.match(k) for k in keys(rep, ("params", "state", "initial")))
    # Against the real kernel the schedule no longer fails: exit 0, verdict holds.
    rc, again, _ = run_json(["replay", found["trace"], "--json"], capsys)
    validate(again, "replay", "replay --json")
    assert rc == again["exit_code"] and again["verdict"] in ("holds", "no_longer_fits")


def test_a_stopped_check_says_what_it_explored(capsys: pytest.CaptureFixture[str]) -> None:
    """What the engine that runs the units calls when Ctrl-C or SIGTERM cut the run
    short: the summary so far, one line, the JSON document, and the signal's code."""
    from pagemap.check.command import _console, conclude
    from pagemap.check.runner import Summary
    from pagemap.cli import build_parser

    args = build_parser().parse_args(["check", "--json"])
    part = Summary("load-remove", {"loaders": 2}, "pct", 0, None, schedules=40, steps=900)
    assert conclude(_console(args), args, {}, [part], 1.5, stopped=143) == 143
    out = capsys.readouterr()
    doc = json.loads(out.out)
    validate(doc, "check", "check --json")
    assert doc["verdict"] == "interrupted" and doc["exit_code"] == 143 and not doc["ok"]
    assert doc["scenarios"][0]["schedules"] == 40
    assert out.err.strip().splitlines()[-1] == (
        "STOPPED by SIGTERM: 40 schedules of 1 scenario explored in 1.5 s, no violation "
        "among them; the rest was not explored"
    )
