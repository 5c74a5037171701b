"""The checker itself: strategies, oracles, traces, shrinking, explore()."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pagemap.check import CounterexampleFound, Trace, explore, model, replay_model
from pagemap.check.explore import explore_model
from pagemap.check.mutants import MUTANTS
from pagemap.check.runner import run_schedule
from pagemap.check.scenarios import lookup, registry
from pagemap.check.shrink import shrink_trace
from pagemap.check.strategies import (
    FollowChooser,
    Nondeterminism,
    PCTExplorer,
    RandomExplorer,
    Search,
)
from pagemap.check.trace import TraceError
from pagemap.machine import Machine
from pagemap.oracles import LIVENESS
from pagemap.sync.atomic import AtomicWord

# -- a tiny model: two tasks, two atomic steps each ---------------------------------


class Counter:
    def __init__(self, machine: Machine) -> None:
        self.word: AtomicWord = machine.executor.atomic(0, "counter")


def bump(c: Counter) -> None:
    v = c.word.load()
    c.word.store(v + 1)


def atomic_bump(c: Counter) -> None:
    c.word.fetch_add(1)


def both_counted(c: Counter) -> bool:
    return c.word.value == 2


def test_explore_finds_the_lost_update_and_shrinks_it(tmp_path: Path) -> None:
    with pytest.raises(CounterexampleFound) as info:
        explore(
            Counter,
            bump,
            bump,
            check=both_counted,
            strategy="random",
            budget=500,
            seed=3,
            trace_dir=tmp_path,
        )
    trace = info.value.trace
    assert trace.oracle == "check"
    assert trace.preemptions == 1  # the least any lost update needs
    assert "counterexample" in str(info.value) and "store" in str(info.value)
    saved = list(tmp_path.glob("*.json"))
    assert len(saved) == 1
    again = replay_model(Counter, bump, bump, check=both_counted, trace=Trace.load(saved[0]))
    assert again.violation is not None and again.violation.oracle == "check"
    assert again.followed and not again.diverged
    # Each row is a step; the lost update reads as: both load 0, both store 1.
    assert [r.operation for r in again.rows] == ["load", "load", "store", "store"]
    assert sum(r.preempted for r in again.rows) == 1


def test_explore_defaults_to_dpor_and_proves_a_correct_model() -> None:
    summary = explore(Counter, atomic_bump, atomic_bump, check=both_counted)
    assert summary.strategy == "dpor" and summary.bound == 2
    assert summary.trace is None
    assert summary.exhaustive
    # Two fetch_adds of one word: two orders, two traces.
    assert summary.distinct == 2


@pytest.mark.parametrize("strategy", ["dpor", "dfs", "random", "pct"])
def test_every_strategy_finds_the_lost_update(strategy: str) -> None:
    budget = None if strategy in ("dpor", "dfs") else 500
    with pytest.raises(CounterexampleFound):
        explore(Counter, bump, bump, check=both_counted, strategy=strategy, budget=budget)


class LoggedCounter(Counter):
    def __init__(self, machine: Machine) -> None:
        super().__init__(machine)
        self.machine = machine
        self.log: list[int] = []


def logged_bump(c: LoggedCounter) -> None:
    me = c.machine.current_core()
    v = c.word.load()
    c.log.append(me)  # no scheduling point between an operation and its entry
    c.word.store(v + 1)
    c.log.append(me)


def _orders(strategy: str, bound: int | None) -> tuple[set[tuple[int, ...]], int, bool, int]:
    """The distinct orders of operations a strategy ran, and its summary."""
    counters: list[LoggedCounter] = []

    def setup(machine: Machine) -> LoggedCounter:
        counters.append(LoggedCounter(machine))
        return counters[-1]

    summary = explore_model(
        model(setup, logged_bump, logged_bump), strategy, budget=10_000, bound=bound
    )
    assert summary.trace is None
    orders = {tuple(c.log) for c in counters if len(c.log) == 4}
    return orders, summary.schedules, summary.exhaustive, summary.distinct


def test_dfs_enumerates_every_interleaving_and_says_so() -> None:
    orders, schedules, exhaustive, _ = _orders("dfs", None)
    assert exhaustive
    # Four operations, two per task: C(4, 2) = 6 orders of the operations.
    assert len(orders) == 6
    assert schedules >= len(orders)


def test_dpor_runs_one_schedule_per_trace() -> None:
    """The two loads commute, so the six orders are four traces."""
    orders, schedules, exhaustive, distinct = _orders("dpor", None)
    _, dfs_schedules, _, _ = _orders("dfs", None)
    assert exhaustive
    assert distinct == 4 == len(orders)
    assert schedules < dfs_schedules


def test_the_preemption_bound_limits_the_space() -> None:
    none, n0, ex0, _ = _orders("dfs", 0)
    one, n1, ex1, _ = _orders("dfs", 1)
    every, n_all, _, _ = _orders("dfs", None)
    assert ex0 and ex1
    assert n0 == 2  # which task starts; then each runs to its end
    assert n0 < n1 < n_all
    assert none < one < every


def test_random_and_pct_are_reproducible_from_their_seed() -> None:
    model = lookup("write-remove").model()

    def schedules(name: str, seed: int) -> list[list[int]]:
        out = []
        explorer = RandomExplorer(seed) if name == "random" else PCTExplorer(seed, 3, 60)
        for i in range(5):
            chooser = explorer.chooser(i)
            out.append(run_schedule(model, chooser).path.choices)
        return out

    for name in ("random", "pct"):
        assert schedules(name, 7) == schedules(name, 7)
        assert schedules(name, 7) != schedules(name, 8)


def test_a_split_exploration_runs_the_same_schedules_as_a_serial_one() -> None:
    model = lookup("load-remove").model()
    whole = explore_model(model, "random", seed=5, budget=40)
    halves = [explore_model(model, "random", seed=5, budget=20, first=f) for f in (0, 20)]
    assert whole.steps == sum(h.steps for h in halves)


@pytest.mark.parametrize("strategy", ["dfs", "dpor"])
def test_a_model_that_is_not_deterministic_is_refused(strategy: str) -> None:
    calls = [0]

    def setup(machine: Machine) -> Counter:
        calls[0] += 1
        c = Counter(machine)
        if calls[0] % 2:
            machine.spawn(bump, c)  # a third task, every other run
        return c

    with pytest.raises(Nondeterminism):
        explore(setup, bump, bump, strategy=strategy)


def test_a_model_with_no_choice_is_one_schedule() -> None:
    summary = explore(Counter, atomic_bump, check=lambda c: c.word.value == 1, strategy="dfs")
    assert summary.schedules == 1 and summary.exhaustive
    search = Search(False, None)
    chooser = search.chooser(0)
    assert chooser is not None and not search.exhausted


# -- liveness -------------------------------------------------------------------------


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


@pytest.mark.parametrize("strategy", ["dfs", "dpor"])
def test_a_deadlock_is_a_violation(strategy: str) -> None:
    with pytest.raises(CounterexampleFound) as info:
        explore(TwoLocks, ab, ba, strategy=strategy, preemptions=1)
    assert info.value.trace.oracle == LIVENESS
    assert "deadlock" in info.value.trace.message


def spin_forever(c: Counter) -> None:
    while True:
        c.word.load()


def test_a_step_budget_overrun_is_a_violation_and_shows_one_turn() -> None:
    with pytest.raises(CounterexampleFound) as info:
        explore(Counter, spin_forever, strategy="random", budget=1, max_steps=500)
    trace = info.value.trace
    assert trace.oracle == LIVENESS
    assert "step budget" in trace.message
    assert trace.max_steps == 500
    assert trace.livelock == {"prefix": 0, "period": 1}
    # The table shows the loop once, not 500 times.
    # (Columns are padded to the widest cell: match across the padding.)
    assert len(re.findall(r"\bload\s+counter\b", str(info.value))) == 1


# -- traces ------------------------------------------------------------------------------


def test_shrinking_cuts_preemptions_and_keeps_the_oracle() -> None:
    mutant = next(m for m in MUTANTS if m.name == "dirty-cleared-late")
    model = lookup(mutant.scenario).model()
    with mutant.applied():
        found = explore_model(model, "random", seed=1, budget=2000, shrink=False)
        assert found.trace is not None
        small = shrink_trace(model, found.trace, 20_000)
        assert small.oracle == found.trace.oracle
        assert small.preemptions <= 2 < found.trace.preemptions
        assert small.shrunk_from == {
            "steps": found.trace.steps,
            "preemptions": found.trace.preemptions,
        }
        follow = FollowChooser(small.schedule)
        out = run_schedule(model, follow)
        assert out.violation is not None and out.violation.oracle == small.oracle
        assert follow.followed


def test_a_trace_that_cannot_shrink_says_nothing_of_shrinking() -> None:
    with pytest.raises(CounterexampleFound) as info:
        explore(Counter, bump, bump, check=both_counted, strategy="dfs")
    assert info.value.trace.shrunk_from == {}


def _trace() -> Trace:
    return Trace(
        model={"scenario": "load-race"},
        params={"loaders": 2},
        cores=2,
        memory=8 * 4096,
        max_steps=1000,
        strategy="dfs",
        seed=0,
        schedule_index=3,
        preemption_bound=2,
        schedule=[0, 0, 0, 1, 0],
        steps=10,
        preemptions=1,
        oracle="x",
        message="y",
    )


def test_trace_json_round_trip_and_bad_files(tmp_path: Path) -> None:
    trace = _trace()
    path = trace.save(tmp_path)
    assert Trace.load(path) == trace
    raw = json.loads(path.read_text())
    assert raw["schedule"] == "0*3.1.0"
    assert raw["schema"] == 2 and raw["max_steps"] == 1000
    # A second save never overwrites the first.
    assert trace.save(tmp_path) != path
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TraceError, match="not JSON"):
        Trace.load(bad)
    bad.write_text('{"schema": 2, "model": {"scenario": "x"}}')
    with pytest.raises(TraceError, match="required"):
        Trace.load(bad)
    bad.write_text(json.dumps(raw | {"schema": 99}))
    with pytest.raises(TraceError, match="schema 99"):
        Trace.load(bad)
    bad.write_text(json.dumps(raw | {"seed": [1]}))
    with pytest.raises(TraceError, match="seed"):
        Trace.load(bad)
    bad.write_text(json.dumps(raw | {"params": {"loaders": 10**30}}))
    with pytest.raises(TraceError, match="params/loaders"):
        Trace.load(bad)


def test_scenarios_reject_unknown_parameters() -> None:
    with pytest.raises(ValueError, match="no parameter"):
        lookup("load-race").model({"nope": 1})
    with pytest.raises(ValueError, match="unknown scenario"):
        lookup("nope")
    assert len(registry()) >= 8
