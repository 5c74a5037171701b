"""DPOR's cost per step as the tasks grow, from 2 to 16 (issue: flat within 1.5x).

The program keeps the length of a schedule fixed whatever the number of
tasks: N tasks share TOTAL bumps of one counter and TOTAL stores to words
of their own (each task TOTAL / N of each), so a run of 2 tasks and a run of
16 take the same number of steps and differ only in how many tasks the
happens-before clocks, the races and the enabled sets carry.  Each side is
bounded DPOR (1 preemption) over the same budget of schedules, stopped
there, so the two do the same number of runs of the same length; the
figure is seconds per step with N tasks, its baseline the same with 2, in
paired rounds (the harness's median of per-round ratios).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench.harness import Report, interleave
from pagemap.check.model import explore

TOTAL = 32  # bumps of the shared counter, and own stores, over all the tasks
BUDGET = 60  # schedules a side: fewer than 2 tasks' whole space (64), so every side stops at it
ROUNDS = 15
TASKS = (4, 8, 16)


class Words:
    def __init__(self, machine: Any, n: int) -> None:
        ex = machine.executor
        self.shared = ex.atomic(0, "shared")
        self.own = [ex.atomic(0, f"own{i}") for i in range(n)]


def program(n: int) -> tuple[Callable[[Any], Words], list[Callable[[Words], None]]]:
    def setup(machine: Any) -> Words:
        return Words(machine, n)

    def task_of(i: int) -> Callable[[Words], None]:
        def task(w: Words) -> None:
            for k in range(TOTAL // n):
                w.shared.store(w.shared.load() + 1)
                w.own[i].store(k)

        task.__name__ = f"task{i}"
        return task

    return setup, [task_of(i) for i in range(n)]


def seconds_per_step(n: int) -> Callable[[], float]:
    setup, tasks = program(n)

    def once() -> float:
        t0 = time.perf_counter()
        summary = explore(
            setup, *tasks, strategy="dpor", budget=BUDGET, preemptions=1, cores=2, shrink=False
        )
        assert summary.schedules == BUDGET, (n, summary.schedules)
        return (time.perf_counter() - t0) / summary.steps

    return once


def run(report: Report) -> None:
    candidates = {f"{n} tasks": seconds_per_step(n) for n in (2, *TASKS)}
    rounds = interleave(candidates, ROUNDS, progress="DPOR by tasks")
    for n in TASKS:
        p = rounds.paired(f"{n} tasks", "2 tasks")
        report.add_time(
            f"DPOR (<= 1 preemption, {BUDGET} schedules of {3 * TOTAL} steps) cost per step, "
            f"{n} tasks against 2 (goal: within 1.5x at 16)",
            p,
            "us",
            scale=1e6,
        )
