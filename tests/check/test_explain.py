"""The race that decides: a counterexample names the pair of steps it turns on.

check/explain.py tries the races of a failing run, data before locks, latest
first, and keeps the first whose swap reverses the pair and passes.  What it
claims is checked here by running it again: the schedule it names passes,
and runs the pair the other way round.
"""

from __future__ import annotations

import json

import pytest

from pagemap.check import CounterexampleFound, explore
from pagemap.check.explain import Race, deciding_race, step_numbers
from pagemap.check.mutants import MUTANTS, Mutant
from pagemap.check.path import decode_schedule
from pagemap.check.recorder import where
from pagemap.check.replay import replay
from pagemap.check.report import Timeline, render_html
from pagemap.check.runner import explore_model, run_schedule
from pagemap.check.scenarios import lookup
from pagemap.check.strategies import FollowChooser
from pagemap.oracles import LIVENESS


class Counter:
    def __init__(self, machine: object) -> None:
        self.word = machine.executor.atomic(0, "counter")  # type: ignore[attr-defined]


def bump(c: Counter) -> None:
    v = c.word.load()
    c.word.store(v + 1)


def test_the_lost_update_names_the_load_and_the_store_it_missed() -> None:
    with pytest.raises(CounterexampleFound) as info:
        explore(Counter, bump, bump, check=lambda c: c.word.value == 2, strategy="dfs")
    message = " ".join(str(info.value).split())  # wrapped to the terminal's width
    assert "↯ step 1 (bump#0: load counter" in message
    assert "raced step 3 (bump#1: store counter" in message
    assert "with 3 before 1 no oracle fails" in message


def _claim_holds(mutant: Mutant) -> tuple[Race | None, str]:
    """Find the mutant's counterexample, explain it, and check the claim."""
    with mutant.applied():
        model = lookup(mutant.scenario).model(mutant.params)
        found = explore_model(model, "dpor", bound=mutant.bound, budget=mutant.budget)
        trace = found.trace
        assert trace is not None, mutant.name
        race = deciding_race(model, trace.schedule, trace.max_steps)
        if race is None:
            return None, trace.oracle
        first = run_schedule(model, FollowChooser(trace.schedule), trace.max_steps, record=True)
        swapped = run_schedule(
            model,
            FollowChooser(decode_schedule(race.schedule)),
            trace.max_steps,
            record=True,
            sites=lambda f: where(f)[0],
        )
    assert swapped.violation is None, f"{mutant.name}: the swapped schedule fails too"
    assert first.log is not None and swapped.log is not None
    at = {n: e for e, n in step_numbers(first.log).items()}
    i, j = at[race.first], at[race.second]
    assert i < j and first.log.tids[i] != first.log.tids[j]
    return race, trace.oracle


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_every_named_race_is_one_whose_swap_passes(mutant: Mutant) -> None:
    race, oracle = _claim_holds(mutant)
    if race is None:
        # Either nothing decides it (the bug fails in every order) or a livelock.
        assert oracle is not None


def test_the_pair_is_marked_in_every_view() -> None:
    mutant = next(m for m in MUTANTS if m.name == "dirty-cleared-late")
    with mutant.applied():
        model = lookup(mutant.scenario).model(mutant.params)
        trace = explore_model(model, "dpor", bound=2, budget=mutant.budget).trace
        assert trace is not None
        result = replay(model, trace, states=True, explain=True)
    from pagemap.check.counterexample import as_text, timeline_of

    timeline = timeline_of(trace, result)
    racing = [r for r in timeline.rows if r.racing]
    assert len(racing) == 2 and racing[0].task != racing[1].task
    # The writer sets PG_DIRTY; writeback clears it late, in the mutated function.
    assert {r.operation for r in racing} == {"fetch_or", "fetch_and"}
    assert any("_writeback_page_clears_late" in r.location for r in racing)
    assert timeline.race.startswith(f"step {racing[0].step} (")
    text = " ".join(as_text(timeline, 120).split())
    assert "↯ racing: the pair of steps the violation turns on" in text
    page = render_html(timeline)
    assert page.count('class="step racing') == 2 and 'class="race"' in page
    again = Timeline.from_json(timeline.to_json())
    assert again.race == timeline.race and again.racing_steps == timeline.racing_steps
    assert json.loads(timeline.to_json())["race"] == timeline.race


def test_a_bug_no_single_race_decides_says_so() -> None:
    mutant = next(m for m in MUTANTS if m.name == "munmap-drops-dirty")
    with mutant.applied():
        model = lookup(mutant.scenario).model(mutant.params)
        trace = explore_model(model, "dpor", bound=2, budget=mutant.budget).trace
        assert trace is not None and trace.oracle != LIVENESS
        result = replay(model, trace, explain=True)
    assert result.race.startswith("no one race decides it")
    assert not any(r.racing for r in result.rows)
