"""Cutting DFS and DPOR into subtrees loses nothing, whatever the split size:
on generated programs with locks (those of test_dpor_soundness.py), split
DFS runs exactly the schedules DFS runs, bounded or not, and split DPOR
reaches exactly the final states DFS reaches, bounded or not, in no more
schedules than DFS.  (Split DPOR may run more schedules than DPOR unsplit:
subtrees share no sleep sets and no source sets; bench/bench_fanout.py
measures how many more.)
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagemap.check.explore import explore_model
from pagemap.check.fanout import SerialEngine, Unit, explore
from pagemap.check.runner import DEFAULT_MAX_STEPS
from tests.check.test_dpor_soundness import Op, build_model, programs

EXAMPLES = int(os.environ.get("DPOR_EXAMPLES", "60"))


def split_finals(
    program: list[list[list[Op]]], strategy: str, bound: int | None, split: int
) -> tuple[set[Any], int, int]:
    """Final states, schedules, and units of the split exploration."""
    finals: set[Any] = set()
    model = build_model(program, finals)
    unit = Unit("generated", (), strategy, 0, bound, 3, DEFAULT_MAX_STEPS, 0, 100_000, split=split)
    done = explore([unit], SerialEngine({"generated": model}))
    (summary,) = done.summaries
    assert summary.trace is None, summary.trace
    assert summary.exhaustive
    return finals, summary.schedules, done.status.units


def whole_finals(
    program: list[list[list[Op]]], strategy: str, bound: int | None
) -> tuple[set[Any], int]:
    finals: set[Any] = set()
    model = build_model(program, finals)
    summary = explore_model(model, strategy, budget=100_000, bound=bound, shrink=False)
    assert summary.exhaustive
    return finals, summary.schedules


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(programs(), st.sampled_from([None, 0, 1, 2]), st.integers(1, 4))
def test_split_search_reaches_what_the_whole_search_reaches(
    program: list[list[list[Op]]], bound: int | None, split: int
) -> None:
    want, dfs_schedules = whole_finals(program, "dfs", bound)
    got, schedules, units = split_finals(program, "dfs", bound, split)
    assert got == want
    assert schedules == dfs_schedules  # DFS has nothing to share: not one schedule more
    if schedules > split:
        assert units > 1
    got, schedules, units = split_finals(program, "dpor", bound, split)
    assert got == want
    assert schedules <= dfs_schedules
