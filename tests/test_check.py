"""The checker itself: strategies, coverage, oracles, traces, shrinking, explore()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pagemap.check import CounterexampleFound, Trace, explore, model, replay_model
from pagemap.check.oracle import LIVENESS
from pagemap.check.runner import explore_model, run_schedule
from pagemap.check.scenarios import lookup, registry
from pagemap.check.shrink import shrink_trace
from pagemap.check.strategy import (
    Chooser,
    Coverage,
    DFSPolicy,
    FollowStrategy,
    Nondeterminism,
    PCTPolicy,
    RandomPolicy,
)
from pagemap.machine import Machine
from pagemap.sync.atomic import AtomicWord
from tests.mutants import MUTANTS

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
    assert not again.diverged
    # Each row is a step; the lost update reads as: both load 0, both store 1.
    assert [r.operation for r in again.rows] == ["load", "load", "store", "store"]


def test_explore_passes_a_correct_model_and_covers_its_space() -> None:
    summary = explore(Counter, atomic_bump, atomic_bump, check=both_counted, strategy="dfs")
    assert summary.trace is None
    assert summary.exhaustive
    summary = explore(
        Counter, atomic_bump, atomic_bump, check=both_counted, strategy="random", budget=2000
    )
    assert summary.exhaustive  # a small space: random runs into its last corner too


@pytest.mark.parametrize("strategy", ["random", "pct", "dfs"])
def test_every_strategy_finds_the_lost_update(strategy: str) -> None:
    with pytest.raises(CounterexampleFound):
        explore(Counter, bump, bump, check=both_counted, strategy=strategy, budget=500)


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


def _orders(strategy: str, bound: int | None) -> tuple[set[tuple[int, ...]], int, bool]:
    """The distinct orders of operations a strategy ran, and its summary."""
    counters: list[LoggedCounter] = []

    def setup(machine: Machine) -> LoggedCounter:
        counters.append(LoggedCounter(machine))
        return counters[-1]

    summary = explore_model(
        model(setup, logged_bump, logged_bump), strategy, budget=10_000, bound=bound
    )
    assert summary.trace is None
    return {tuple(c.log) for c in counters}, summary.schedules, summary.exhaustive


def test_dfs_enumerates_every_interleaving_and_says_so() -> None:
    orders, schedules, exhaustive = _orders("dfs", None)
    assert exhaustive
    # Four operations, two per task: C(4, 2) = 6 orders of the operations.
    assert len(orders) == 6
    assert schedules >= len(orders)


def test_the_preemption_bound_limits_the_space() -> None:
    none, n0, ex0 = _orders("dfs", 0)
    one, n1, ex1 = _orders("dfs", 1)
    every, n_all, _ = _orders("dfs", None)
    assert ex0 and ex1
    assert n0 == 2  # which task starts; then each runs to its end
    assert n0 < n1 < n_all
    assert none < one < every


def test_random_and_pct_are_reproducible_from_their_seed() -> None:
    model = lookup("write-remove").model()

    def schedules(policy_name: str, seed: int) -> list[list[int]]:
        out = []
        for i in range(5):
            policy = RandomPolicy(seed) if policy_name == "random" else PCTPolicy(seed, 3, 60)
            policy.begin(i)
            out.append(run_schedule(model, Chooser(policy, None, None)).schedule)
        return out

    for name in ("random", "pct"):
        assert schedules(name, 7) == schedules(name, 7)
        assert schedules(name, 7) != schedules(name, 8)


def test_a_split_exploration_runs_the_same_schedules_as_a_serial_one() -> None:
    model = lookup("load-remove").model()
    whole = explore_model(model, "random", seed=5, budget=40)
    halves = [explore_model(model, "random", seed=5, budget=20, first=f) for f in (0, 20)]
    assert whole.steps == sum(h.steps for h in halves)


def test_coverage_collapses_complete_subtrees() -> None:
    cov = Coverage()
    runs = [[(2, 0), (2, 0)], [(2, 0), (2, 1)], [(2, 1)]]
    new = []
    for run in runs:
        cov.begin()
        for n, i in run:
            cov.step(n, i)
        new.append(cov.end())
    assert new == [True, True, True]
    assert cov.complete
    cov.begin()
    cov.step(2, 0)
    assert cov.end() is False  # a repeat


def test_a_model_that_is_not_deterministic_is_refused() -> None:
    calls = [0]

    def setup(machine: Machine) -> Counter:
        calls[0] += 1
        c = Counter(machine)
        if calls[0] % 2:
            machine.spawn(bump, c)  # a third task, every other run
        return c

    with pytest.raises(Nondeterminism):
        explore(setup, bump, bump, strategy="dfs")


def test_dfs_policy_replays_its_stack() -> None:
    policy = DFSPolicy()
    assert not policy.exhausted
    policy.begin(0)
    policy.end()
    assert policy.exhausted  # no choice at all: one schedule is the whole space


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


def test_a_deadlock_is_a_violation() -> None:
    with pytest.raises(CounterexampleFound) as info:
        explore(TwoLocks, ab, ba, strategy="dfs", preemptions=1)
    assert info.value.trace.oracle == LIVENESS
    assert "deadlock" in info.value.trace.message


def spin_forever(c: Counter) -> None:
    while True:
        c.word.load()


def test_a_step_budget_overrun_is_a_violation() -> None:
    with pytest.raises(CounterexampleFound) as info:
        explore(Counter, spin_forever, strategy="random", budget=1, max_steps=500)
    assert info.value.trace.oracle == LIVENESS
    assert "step budget" in info.value.trace.message


# -- traces ------------------------------------------------------------------------------


def test_shrinking_cuts_preemptions_and_keeps_the_oracle() -> None:
    mutant = next(m for m in MUTANTS if m.name == "free-after-reuse")
    model = lookup(mutant.scenario).model()
    with mutant.applied():
        found = explore_model(model, "random", seed=1, budget=2000, shrink=False)
        assert found.trace is not None
        small = shrink_trace(model, found.trace, 20_000)
        assert small.oracle == found.trace.oracle
        assert small.preemptions <= 2 < found.trace.preemptions
        assert small.original == {
            "steps": found.trace.steps,
            "preemptions": found.trace.preemptions,
        }
        follow = FollowStrategy(small.schedule)
        out = run_schedule(model, follow)
        assert out.violation is not None and out.violation.oracle == small.oracle
        assert not follow.diverged


def test_trace_json_round_trip_and_bad_files(tmp_path: Path) -> None:
    trace = Trace("load-race", {"loaders": 2}, "dfs", 0, 3, 2, [0, 1, 0], 10, 1, "x", "y")
    path = trace.save(tmp_path)
    assert Trace.load(path) == trace
    raw = json.loads(path.read_text())
    assert set(raw) >= {"scenario", "params", "strategy", "seed", "schedule"}
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        Trace.load(bad)
    bad.write_text('{"scenario": "x"}')
    with pytest.raises(ValueError, match="lacks"):
        Trace.load(bad)


def test_scenarios_reject_unknown_parameters() -> None:
    with pytest.raises(ValueError, match="no parameter"):
        lookup("load-race").model({"nope": 1})
    with pytest.raises(ValueError, match="unknown scenario"):
        lookup("nope")
    assert len(registry()) >= 8
