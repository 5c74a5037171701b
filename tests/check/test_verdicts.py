"""A verdict is never dropped: a failure on the last schedule explored is reported,
by every strategy and every engine, and every end-of-run check runs.

The model: three tasks each take two tickets from one counter (fetch_add),
and each remembers the tickets it got, so every interleaving ends in a final
state of its own.  A passing exploration first records the final states in
the order their checks ran; the test then explores again with a check that
fails on the last one only, and the exploration must report it, after as
many schedules as the passing one ran (nothing after it, nothing skipped).

Worker processes and Dask workers build the model from import paths
(check/fanout/unit.py ModelRef), so the failing check is named by one:
`tests.check.test_verdicts:fail_on_<tickets>` (this module's `__getattr__`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pagemap import PG_UPTODATE
from pagemap.check.context import RunContext
from pagemap.check.explore import explore_model
from pagemap.check.fanout import ModelRef, SerialEngine, Unit, explore
from pagemap.check.fanout.local import LocalEngine
from pagemap.check.model import FunctionModel
from pagemap.check.runner import Summary
from pagemap.check.scenarios import registry
from pagemap.kernel.page import Page
from pagemap.kernel.pagemap import PageMap
from pagemap.machine import Machine
from pagemap.sync.atomic import AtomicWord

HERE = __name__
TASKS = 3
Final = tuple[int, ...]


class NoDisk:
    """Page-map operations that fill pages with zeros and write nowhere."""

    def readpage(self, pm: PageMap, page: Page) -> None:
        page.flags.fetch_or(PG_UPTODATE)

    def writepage(self, pm: PageMap, page: Page) -> None:
        pass


class Tickets:
    def __init__(self, machine: Machine) -> None:
        self.counter: AtomicWord = machine.executor.atomic(0, "counter")
        self.got: list[list[int]] = [[] for _ in range(TASKS)]
        self.pm = machine.page_map(NoDisk())


def setup(machine: Machine) -> Tickets:
    return Tickets(machine)


def _take(t: Tickets, me: int) -> None:
    for _ in range(2):
        t.got[me].append(t.counter.fetch_add(1))


def t0(t: Tickets) -> None:
    _take(t, 0)


def t1(t: Tickets) -> None:
    _take(t, 1)


def t2(t: Tickets) -> None:
    _take(t, 2)


def final(t: Tickets) -> Final:
    return tuple(n for got in t.got for n in got)


RAN: list[Final] = []  # final states, in the order `record` saw them (this process only)


def record(t: Tickets) -> bool:
    RAN.append(final(t))
    return True


def fail_on(target: Final) -> Callable[[Tickets], bool]:
    def check(t: Tickets) -> bool:
        return final(t) != target

    return check


def leak_on(target: Final) -> Callable[[Tickets], bool]:
    """A check that passes, but on `target` leaves a page referenced: only the
    accounting check the model adds after it (check/model.py) can see that."""

    def check(t: Tickets) -> bool:
        if final(t) == target:
            t.pm.load_page(0)  # a slot reference nobody puts
        return True

    return check


def __getattr__(name: str) -> Any:
    """`fail_on_<tickets>` (tickets joined by "_"): fail_on(tickets), by import path."""
    if name.startswith("fail_on_"):
        return fail_on(tuple(int(n) for n in name[len("fail_on_") :].split("_")))
    raise AttributeError(name)


def model(check: Callable[[Tickets], object]) -> FunctionModel[Tickets]:
    return FunctionModel("tickets", setup, (t0, t1, t2), check, cores=TASKS)


# Strategies and bounds; random and PCT run BUDGET schedules at most.
CASES = [
    ("dfs", None),
    ("dfs", 1),
    ("dfs", 2),
    ("dpor", None),
    ("dpor", 1),
    ("dpor", 2),
    ("pct", None),
    ("random", None),
]
BUDGET = 60


def passing(strategy: str, bound: int | None, budget: int | None) -> tuple[Summary, list[Final]]:
    ran: list[Final] = []

    def check(t: Tickets) -> bool:
        ran.append(final(t))
        return True

    s = explore_model(model(check), strategy, budget=budget, bound=bound, shrink=False)
    assert s.trace is None
    # DPOR cuts some schedules short (redundant): those end with no verdict.
    # PCT runs the model once more before its first schedule, to learn the
    # length of a schedule (runner.pct_length): one check more, first.
    extra = 1 if strategy == "pct" else 0
    assert len(ran) == s.schedules - s.redundant + extra
    return s, ran[extra:]


def last_unique(ran: list[Final]) -> int:
    """The largest n such that schedule n-1's final state is seen by no schedule before it."""
    for n in range(len(ran), 0, -1):
        if ran[n - 1] not in ran[: n - 1]:
            return n
    raise AssertionError("no schedule has a final state of its own")


@pytest.mark.parametrize(("strategy", "bound"), CASES)
def test_a_failure_on_the_last_schedule_is_reported(strategy: str, bound: int | None) -> None:
    exhaustive = strategy in ("dfs", "dpor")
    s, ran = passing(strategy, bound, None if exhaustive else BUDGET)
    if exhaustive:
        # Every schedule ran its check (none was cut short after the last
        # one), and the last one's final state is its own.
        n = s.schedules
        assert ran.count(ran[-1]) == 1
        target = ran[-1]
        budget = None
    else:
        # Schedule i depends only on (seed, i): the first n schedules are the
        # same with a budget of n; the last of them must end in a state of its own.
        n = last_unique(ran)
        assert n > 1
        target = ran[n - 1]
        budget = n
    got = explore_model(model(fail_on(target)), strategy, budget=budget, bound=bound, shrink=False)
    assert got.trace is not None, f"{strategy}: the failure on the last schedule was dropped"
    assert got.trace.oracle == "check"
    assert got.schedules == n and not got.exhaustive
    if not exhaustive:
        assert got.trace.schedule_index == n - 1


class DroppedVerdict(AssertionError):
    pass


# PCT runs the schedule that never preempts to learn its length
# (runner.pct_length), every oracle included: a failure there is reported
# like any other, never dropped (it once was: PCT reached that schedule again
# only at schedule 13).
def test_pct_reports_a_failure_of_the_run_that_learns_its_length() -> None:
    # DFS's first schedule is the one that never preempts, the one PCT runs first.
    _, ran = passing("dfs", None, 1)
    (target,) = ran
    got = explore_model(model(fail_on(target)), "pct", budget=5, shrink=False)
    if got.trace is None:
        raise DroppedVerdict(f"the failure of {target} was seen and not reported")


@pytest.mark.parametrize(("strategy", "bound"), CASES)
def test_the_model_check_runs_on_every_schedule_run_to_its_end(
    strategy: str, bound: int | None
) -> None:
    # passing() asserts that the check ran once per schedule run to its end.
    s, ran = passing(strategy, bound, None if strategy in ("dfs", "dpor") else BUDGET)
    assert s.schedules > 1 and len(set(ran)) > 1


@pytest.mark.parametrize("strategy", ["dfs", "dpor"])
def test_the_accounting_check_runs_after_the_model_check_on_the_last_schedule(
    strategy: str,
) -> None:
    s, ran = passing(strategy, 2, None)
    got = explore_model(model(leak_on(ran[-1])), strategy, bound=2, shrink=False)
    assert got.trace is not None and got.trace.oracle == "accounting", got.trace
    assert got.schedules == s.schedules


def test_every_end_check_of_every_scenario_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each check a scenario registers is wrapped to count its calls; one
    # passing schedule of each scenario must call every one of them once.
    calls: list[list[int]] = []
    at_end = RunContext.at_end

    def counting(self: RunContext, check: Callable[[], list[Any]]) -> None:
        mine = [0]
        calls.append(mine)

        def counted() -> list[Any]:
            mine[0] += 1
            return check()

        at_end(self, counted)

    monkeypatch.setattr(RunContext, "at_end", counting)
    for name, scenario in sorted(registry().items()):
        calls.clear()
        s = explore_model(scenario.model(), "dfs", budget=1, shrink=False)
        assert s.trace is None, f"{name}: {s.trace}"
        assert calls, f"{name} registers no end check"
        assert all(c == [1] for c in calls), f"{name}: end checks ran {calls} times"


# -- engines -----------------------------------------------------------------------


def ref(check: str) -> ModelRef:
    return ModelRef(
        "tickets", f"{HERE}:setup", tuple(f"{HERE}:t{i}" for i in range(TASKS)), check, TASKS
    )


def plan(check: str, strategy: str, budget: int | None) -> list[Unit]:
    bound = 2 if strategy in ("dfs", "dpor") else None
    split = 3 if strategy in ("dfs", "dpor") else None
    return [
        Unit(
            "tickets",
            (),
            strategy,
            0,
            bound,
            3,
            20_000,
            0,
            budget,
            split=split,
            functions=ref(check),
        )
    ]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    import distributed

    local: Any = distributed.LocalCluster  # untyped
    with local(
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    ) as c:
        yield c


ENGINE_CASES = ["dfs", "dpor", "pct", "random"]


@pytest.mark.xdist_group("dask")
@pytest.mark.parametrize("strategy", ENGINE_CASES)
def test_every_engine_reports_a_failure_on_the_last_schedule(strategy: str, cluster: Any) -> None:
    from pagemap.check.fanout.cluster import DaskEngine

    # The order the serial engine runs the schedules in, units split and all.
    RAN.clear()
    budget = None if strategy in ("dfs", "dpor") else BUDGET
    (s,) = explore(plan(f"{HERE}:record", strategy, budget), SerialEngine()).summaries
    extra = 1 if strategy == "pct" else 0  # PCT's run to learn the length (see passing)
    assert s.trace is None and len(RAN) == s.schedules - s.redundant + extra
    ran = RAN[extra:]
    if budget is None:
        n, target = s.schedules, ran[-1]
        assert ran.count(target) == 1
    else:
        n = last_unique(ran)
        target, budget = ran[n - 1], n
    name = f"{HERE}:fail_on_" + "_".join(str(v) for v in target)
    failing = plan(name, strategy, budget)
    answers = []
    for engine in (SerialEngine(), LocalEngine(2), DaskEngine(cluster.scheduler_address)):
        (got,) = explore(failing, engine).summaries
        assert got.trace is not None, f"{engine.name}: the failure on the last schedule was dropped"
        assert got.trace.oracle == "check"
        answers.append((got.schedules, got.trace.schedule))
    # The serial engine ran every schedule up to the failing one, the last; the
    # others report the same (the ledger's fixed order).
    assert answers[0][0] == n
    assert answers[1] == answers[0] and answers[2] == answers[0]
