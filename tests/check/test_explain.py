"""The race that decides: a counterexample names the pair of steps it turns on.

check/explain.py tries the races of a failing run, latest first, and names
every one whose swap (the default choices after it) reverses the pair and
passes.  What it claims is checked here by running each again: the schedule
it names passes, and runs the pair the other way round.  And what it names is
measured against the mutant table: for each mutant, one step of a named pair
runs the function the mutant broke: the function
is on the step's stack at its point, or ran within the step's segment (the
code the task runs on, alone, until its next point; check/stepcalls.py).
MISSES lists the mutants where neither holds, and why; those whose bug needs
no race are held to saying so, and so are those whose function's steps race
with nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from types import CodeType, FrameType

import pytest

from pagemap.check import CounterexampleFound, explore
from pagemap.check.explain import Race, deciding_races, fails_in_default_order, step_numbers
from pagemap.check.explore import explore_model
from pagemap.check.hb import HappensBefore
from pagemap.check.mutants import MUTANTS, Mutant
from pagemap.check.path import decode_schedule
from pagemap.check.recorder import where
from pagemap.check.replay import replay
from pagemap.check.report import Timeline, render_html
from pagemap.check.runner import run_schedule
from pagemap.check.scenarios import lookup
from pagemap.check.stepcalls import StepCalls
from pagemap.check.strategies import FollowChooser
from pagemap.check.trace import Trace
from pagemap.oracles import LIVENESS
from pagemap.sync.sim import EventLog


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


def _explained(mutant: Mutant) -> tuple[Trace, list[Race]]:
    """The mutant's counterexample and the races explain names in it (run with
    the mutant applied)."""
    model = lookup(mutant.scenario).model(mutant.params)
    trace = explore_model(model, "dpor", bound=mutant.bound, budget=mutant.budget).trace
    assert trace is not None, mutant.name
    return trace, deciding_races(model, trace.schedule, trace.max_steps)


def _claim_holds(mutant: Mutant) -> tuple[list[Race], str]:
    """Find the mutant's counterexample, explain it, and check the claim of
    every race named: its swapped schedule passes, with the pair reversed."""
    with mutant.applied():
        model = lookup(mutant.scenario).model(mutant.params)
        trace, races = _explained(mutant)
        first = run_schedule(model, FollowChooser(trace.schedule), trace.max_steps, record=True)
        assert first.log is not None
        at = {n: e for e, n in step_numbers(first.log).items()}
        for race in races:
            swapped = run_schedule(
                model,
                FollowChooser(decode_schedule(race.schedule)),
                trace.max_steps,
                record=True,
                sites=lambda f: where(f)[0],
            )
            assert swapped.violation is None, f"{mutant.name}: the swapped schedule fails too"
            assert swapped.log is not None
            i, j = at[race.first], at[race.second]
            assert i < j and first.log.tids[i] != first.log.tids[j]
    return races, trace.oracle


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_every_named_race_is_one_whose_swap_passes(mutant: Mutant) -> None:
    races, oracle = _claim_holds(mutant)
    if not races:
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


def test_every_race_whose_swap_passes_is_named_and_marked() -> None:
    mutant = next(m for m in MUTANTS if m.name == "lookup-keeps-removal")
    with mutant.applied():
        model = lookup(mutant.scenario).model(mutant.params)
        trace = explore_model(model, "dpor", bound=mutant.bound, budget=mutant.budget).trace
        assert trace is not None
        races = deciding_races(model, trace.schedule, trace.max_steps)
        result = replay(model, trace, explain=True)
    from pagemap.check.counterexample import as_text, timeline_of
    from pagemap.check.report.text import ALSO_MARK

    assert len(races) > 1  # the free against the put, and the lookup against the removal
    timeline = timeline_of(trace, result)
    assert timeline.racing_steps == [races[0].first, races[0].second]
    also = sorted({n for r in races[1:] for n in (r.first, r.second)})
    assert timeline.also_racing_steps == also
    assert f"{len(races) - 1} more races decide it too" in timeline.race
    for r in races[1:]:
        assert f"step {r.first} (" in timeline.race and f"schedule {r.schedule}" in timeline.race
    rows = [re.match(r"\s*(\d+)\s+(\S+)\s", line) for line in as_text(timeline, 200).splitlines()]
    marked = [int(m[1]) for m in rows if m is not None and ALSO_MARK in m[2]]
    assert marked == also
    page = render_html(timeline)
    tagged = re.findall(r'<tr id="step-(\d+)" class="[^"]*\balso-racing\b', page)
    assert [int(n) for n in tagged] == also
    assert page.count('class="race-arrow from"') == page.count('class="race-arrow to"') == 1
    assert page.count("<li>step ") == len(races) - 1  # the others, an item each
    again = Timeline.from_json(timeline.to_json())
    assert again.also_racing_steps == also and again.race == timeline.race


def test_a_bug_no_single_race_decides_says_so() -> None:
    mutant = next(m for m in MUTANTS if m.name == "munmap-drops-dirty")
    with mutant.applied():
        model = lookup(mutant.scenario).model(mutant.params)
        trace = explore_model(model, "dpor", bound=2, budget=mutant.budget).trace
        assert trace is not None and trace.oracle != LIVENESS
        result = replay(model, trace, explain=True)
    assert result.race.startswith("no one race decides it")
    assert not any(r.racing for r in result.rows)


# The mutants where no named race has a step under the function they broke, and
# why.  Each is a strict xfail: a change to explain.py that points one of them
# at its bug fails the test until the entry goes.
_EVERY_ORDER = (
    "no one race decides it: it fails in the default order too, and no single "
    "swap of its counterexample's races makes it pass"
)
_UNRACED = (
    "no step that runs the mutated function (at its point or within its segment) "
    "races with another task's step in the counterexample (a lock or program order "
    "orders them, or the bug is a step left out): the race whose swap passes is "
    "between other steps"
)
_SWAP_FAILS = (
    "the mutated function's steps race in the counterexample, but no swap of "
    "one of those races passes: the race whose swap passes is elsewhere"
)
MISSES = {
    "eio-leaves-page": _EVERY_ORDER,
    "writeback-error-frees": _EVERY_ORDER,
    "pins-ignored": _EVERY_ORDER,
    "munmap-drops-dirty": _EVERY_ORDER,
    "settle-drops-dirty": _EVERY_ORDER,
    "fsync-skips-mappings": _EVERY_ORDER,
    "store-lost-after-fault": _EVERY_ORDER + " (it has no race at all)",
    "host-write-eio-swallowed": _EVERY_ORDER,
    "fork-no-wrprotect": _EVERY_ORDER,
    "fork-unregistered": _EVERY_ORDER,
    "pin-write-clean": _EVERY_ORDER,
    "proc-no-shootdown": _EVERY_ORDER + " (it has no race at all)",
    "unlink-keeps-link": _EVERY_ORDER + " (a step left out: it has no race)",
    "writepage-skips-holes": _EVERY_ORDER + " (a step left out: it has no race)",
    "reuse-shared": _UNRACED,
    "private-second-copy": _UNRACED,
    "truncate-keeps-copies": _UNRACED,
    "ext2-frees-open-file": _UNRACED,
    "unlock-page-no-wakeup": _UNRACED,
    "kept-victim-lost": _UNRACED,
    "batched-pending-not-flushed": _UNRACED,
    "invalidate-read-ignores-writer": _UNRACED,
    "mkclean-skips-pte": _UNRACED,
    "truncate-frees-before-flush": _UNRACED,
    "drop-held-unmarked": _UNRACED,
    "radix-insert-overwrites": _SWAP_FAILS,
    "merge-unregisters-first": _SWAP_FAILS,
    "follow-any-read-only": _SWAP_FAILS,
}


def _mutated_code(mutant: Mutant) -> set[CodeType]:
    return {getattr(fn, "__func__", fn).__code__ for fn in mutant.patches.values()}


def _under(code: set[CodeType]) -> Callable[[FrameType], str]:
    """A site naming whether a step was taken under a function of `code` (it,
    or what it called, took the step)."""

    def site(frame: FrameType | None) -> str:
        while frame is not None:
            if frame.f_code in code:
                return "under"
            frame = frame.f_back
        return ""

    return site


def _replayed_under_mutated(mutant: Mutant) -> tuple[EventLog, list[Race]]:
    """The mutant's counterexample replayed, each step's site marked "under"
    when the mutated function is on its stack at its point, or "ran" when it
    ran within the step's segment (entered after its point, before the task's
    next one); and the races named for it."""
    code = _mutated_code(mutant)
    calls = StepCalls()
    with mutant.applied():
        trace, races = _explained(mutant)
        model = lookup(mutant.scenario).model(mutant.params)
        run = run_schedule(
            model,
            FollowChooser(trace.schedule),
            trace.max_steps,
            record=True,
            sites=_under(code),
            observe=calls.install,
        )
    log = run.log
    assert log is not None and log.sites is not None
    for e, ran in calls.ran.items():
        if not log.sites[e] and code & ran.keys():
            log.sites[e] = "ran"
    return log, races


def _racing_pair_under_mutated(mutant: Mutant) -> bool:
    log, races = _replayed_under_mutated(mutant)
    assert log.sites is not None
    at = {n: e for e, n in step_numbers(log).items()}
    return any(log.sites[at[r.first]] or log.sites[at[r.second]] for r in races)


@pytest.mark.parametrize(
    "mutant",
    [
        pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=MISSES[m.name]))
        if m.name in MISSES
        else m
        for m in MUTANTS
    ],
    ids=lambda m: m.name,
)
def test_a_named_race_has_a_step_of_the_mutated_function(mutant: Mutant) -> None:
    assert _racing_pair_under_mutated(mutant), f"{mutant.name}: {MISSES.get(mutant.name, '')}"


def test_every_miss_is_a_mutant() -> None:
    assert set(MISSES) <= {m.name for m in MUTANTS}


@pytest.mark.parametrize(
    "mutant",
    [m for m in MUTANTS if MISSES.get(m.name, "").startswith(_EVERY_ORDER)],
    ids=lambda m: m.name,
)
def test_a_bug_that_needs_no_race_is_said_to(mutant: Mutant) -> None:
    """What MISSES says of these holds: no race is named, the default order
    (no preemption) fails too, and the explanation says both."""
    with mutant.applied():
        model = lookup(mutant.scenario).model(mutant.params)
        trace, races = _explained(mutant)
        assert not races
        assert fails_in_default_order(model, trace.max_steps)
        result = replay(model, trace, explain=True)
    if trace.oracle != LIVENESS:  # a livelock is explained by no pair at all
        assert result.race.startswith("no one race decides it: it fails in the default order too")


@pytest.mark.parametrize(
    "mutant", [m for m in MUTANTS if MISSES.get(m.name) == _UNRACED], ids=lambda m: m.name
)
def test_a_mutated_function_said_to_race_with_nothing_does_not(mutant: Mutant) -> None:
    """What MISSES says of these holds: the mutated function runs in some step
    of the counterexample (at its point or within its segment), and no step
    that runs it is one of a race's pair."""
    log, _ = _replayed_under_mutated(mutant)
    assert log.sites is not None
    running = {e for e, site in enumerate(log.sites) if site}
    assert running
    assert not any(i in running or j in running for i, j in HappensBefore(log).races())
