"""The mutation suite: each broken kernel is caught within its stated budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagemap.check.explore import explore_model
from pagemap.check.mutants import EQUIVALENT_MUTANTS, MUTANTS, Mutant
from pagemap.check.runner import run_schedule
from pagemap.check.scenarios import lookup, registry
from pagemap.check.strategies import FollowChooser
from pagemap.cli import main


def test_there_are_enough_mutants() -> None:
    assert len(MUTANTS) >= 8
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant_is_caught_within_its_budget(mutant: Mutant) -> None:
    model = lookup(mutant.scenario).model(mutant.params)
    with mutant.applied():
        summary = explore_model(model, "dpor", budget=mutant.budget, bound=mutant.bound)
        trace = summary.trace
        assert trace is not None, f"{mutant.name} ({mutant.broken}) survived {summary.schedules}"
        # Caught by an oracle, not by a mutant that no longer fits the kernel.
        assert not any(e in trace.message for e in ("TypeError", "AttributeError", "NameError"))
        # The shrunk counterexample still reproduces, step for step.
        follow = FollowChooser(trace.schedule)
        again = run_schedule(model, follow)
        assert again.violation is not None and again.violation.oracle == trace.oracle
        assert follow.followed
    # Without the mutation the same schedule is harmless.
    assert run_schedule(model, FollowChooser(trace.schedule)).violation is None


@pytest.mark.parametrize("mutant", EQUIVALENT_MUTANTS, ids=lambda m: m.name)
def test_equivalent_mutant_is_proved_harmless(mutant: Mutant) -> None:
    """The design leaves these mutations no window (pagemap/check/mutants/ says
    why); the search covers the scenario's whole space and finds nothing."""
    model = lookup(mutant.scenario).model(mutant.params)
    with mutant.applied():
        summary = explore_model(model, "dpor", budget=mutant.budget, bound=mutant.bound)
    assert summary.trace is None
    assert summary.exhaustive


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_the_default_pagemap_check_finds_the_mutant(
    mutant: Mutant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["check", mutant.scenario, "--traces", str(tmp_path)]
    argv += [f"-p{k}={v}" for k, v in mutant.params.items()]
    with mutant.applied():
        assert main(argv) == 1
    assert "replay it: pagemap replay" in capsys.readouterr().out


def test_pagemap_check_mutants_reports_each_mutants_killer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["check", "--mutants", "--mutant", "pins-ignored", "--mutant", "no-shootdown"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for column in ("mutant", "killed by", "schedules", "seconds"):
        assert column in out
    # Only locked-remove maps MAP_LOCKED regions; a lost shootdown shows in more
    # than one scenario, and the fixed order of the exploration picks the first.
    rows = {r[0]: r for r in _rows(out)}
    assert rows["pins-ignored"][2] == "locked-remove (memory safety)"
    killer, oracle = rows["no-shootdown"][2].split(" ", 1)
    assert killer in registry() and oracle == "(memory safety)"
    assert "every mutant is killed (2)" in out


def _rows(out: str) -> list[list[str]]:
    lines = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines()]
    return [r for r in lines if len(r) == 5]


def test_a_mutant_no_scenario_kills_survives_and_fails_the_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # load-race has no MAP_LOCKED region: nothing there can see pins ignored.
    assert main(["check", "load-race", "--mutants", "--mutant", "pins-ignored"]) == 1
    out = capsys.readouterr().out
    assert "SURVIVES" in out and "1 of 1 mutant survives:" in out
