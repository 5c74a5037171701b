"""DFS and DPOR reach exactly the final states a brute-force reference reaches.

The reference (tests/check/reference.py) enumerates every interleaving with
its own replay and its own preemption count, sharing no code with the
strategies, so a mistake in what they share (the path record, the default
choice, the preemption count, the node stack) cannot hide there.  Programs
(tests/check/programs.py) use every primitive the kernel uses.  Bounds 0, 1,
2 and none; REFERENCE_EXAMPLES programs (200 by default, 1000 in `make soak`).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, seed, settings

from pagemap.check.explore import explore_model
from tests.check.programs import (
    FINDING_BOUND_1,
    RELAX_MISS,
    TIMED_BOUND_0,
    Final,
    Program,
    build_model,
    from_soundness_encoding,
    programs,
    show,
)
from tests.check.reference import BOUNDS, enumerate_schedules, reference_finals

EXAMPLES = int(os.environ.get("REFERENCE_EXAMPLES", "200"))


def explore_finals(program: Program, strategy: str, bound: int | None) -> set[Final]:
    finals: set[Any] = set()
    summary = explore_model(
        build_model(program, finals), strategy, budget=200_000, bound=bound, shrink=False
    )
    assert summary.trace is None, f"a generated program failed:\n{summary.trace}"
    assert summary.exhaustive
    return finals


def disagreements(program: Program, strategies: tuple[str, ...] = ("dfs", "dpor")) -> list[str]:
    """One line per (strategy, bound) whose final states differ from the reference's."""
    want = reference_finals(program)
    out = []
    for bound in BOUNDS:
        for strategy in strategies:
            got = explore_finals(program, strategy, bound)
            if got != want[bound]:
                out.append(
                    f"{strategy} at bound {bound}: {len(got)} final states, the reference "
                    f"{len(want[bound])}; missing {sorted(want[bound] - got)}, "
                    f"extra {sorted(got - want[bound])}"
                )
    return out


@seed(28)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(programs())
@example(FINDING_BOUND_1)
@example(RELAX_MISS)
@example(TIMED_BOUND_0)
def test_dfs_and_dpor_reach_what_the_reference_reaches(program: Program) -> None:
    problems = disagreements(program)
    assert not problems, show(program) + "\n" + "\n".join(problems)


# The bounded-DPOR miss of the findings (../shared/findings/dpor-bound-1.md,
# fixed in 8a6d473), each strategy and bound its own case.
@pytest.mark.parametrize("bound", BOUNDS)
@pytest.mark.parametrize("strategy", ["dfs", "dpor"])
def test_the_bounded_dpor_finding(strategy: str, bound: int | None) -> None:
    want = reference_finals(FINDING_BOUND_1)[bound]
    assert explore_finals(FINDING_BOUND_1, strategy, bound) == want


# Two more misses the reference found, each strategy and bound its own case:
# the race of a step a relax forced (backtrack.py `_before_forced`), and a
# choice made when every task had parked, which BPOR did not take for a
# context switch (backtrack.py `_switches`).
@pytest.mark.parametrize("bound", BOUNDS)
@pytest.mark.parametrize("strategy", ["dfs", "dpor"])
@pytest.mark.parametrize("program", [RELAX_MISS, TIMED_BOUND_0], ids=["relax", "timed"])
def test_the_misses_the_reference_found(program: Program, strategy: str, bound: int | None) -> None:
    want = reference_finals(program)[bound]
    assert explore_finals(program, strategy, bound) == want


def test_the_reference_is_what_the_findings_say() -> None:
    # The findings file's count for DFS at bound 1, reached by the reference on its own.
    assert len(reference_finals(FINDING_BOUND_1)[1]) == 10


@seed(2028)
@settings(max_examples=25, deadline=None, database=None)
@given(programs(max_points_2=9, max_points_3=6))
def test_pruning_at_a_bound_runs_exactly_the_schedules_within_it(program: Program) -> None:
    # The reference's own consistency: enumerating with a bound (pruning what
    # would pass it) gives the final states the unbounded enumeration has
    # within that bound, with fewer or as many schedules.
    every = enumerate_schedules(program, None)
    for bound in (0, 1, 2):
        pruned = enumerate_schedules(program, bound)
        assert pruned.finals(None) == every.finals(bound)
        assert pruned.schedules <= every.schedules


def test_the_soundness_encoding_is_read_as_written() -> None:
    # A block of two ops of the older generator runs under the spinlock.
    got = from_soundness_encoding([[[("load", 0, 0, 0)], [("store", 1, 2, 0), ("add", 2, 1, 0)]]])
    assert got == ((("", (("load", 0, 0, 0),)), ("spin", (("store", 1, 2, 0), ("add", 2, 1, 0)))),)
