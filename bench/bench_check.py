"""The checker: how much DPOR prunes, how fast it runs, how soon it finds bugs.

Every figure is a ratio against a baseline doing the same work in the same
process, interleaved with the subject, the best of several rounds:

- per scenario: schedules to cover it to the end with DPOR, against DFS at
  the same preemption bound (2); and the geometric mean of the ratios;
- per mutant: schedules and seconds to the first violation, DPOR against DFS
  (both with the mutant's bound);
- the checker's steps/s on store-remove and write-remove (DPOR, random),
  against the bare SimExecutor running schedules of the same length (two
  tasks doing atomic adds on a fresh executor per schedule, no Machine, no
  oracle), and against a bare greenlet loop taking the same steps (an empty
  call each) with the same greenlet switches per schedule;
- schedules/s on store-remove (DPOR and random), printed with the machine;
- the whole default `pagemap check` (PCT over every scenario, then DPOR <= 2
  to the end), against DFS <= 2 to the end over every scenario (what
  `pagemap check` did before DPOR); and `make check` (the portfolio with
  DPOR <= 3 to the end) against the same baseline;
- per mutant: seconds from the start of the default `pagemap check` (every
  scenario, in the portfolio's order) to its first violation, against the
  same default run of the real kernel to the end (goal: every mutant within
  5 s).
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from typing import Any

import greenlet

from bench.harness import Report
from pagemap.check.command import plan
from pagemap.check.explore import explore_model
from pagemap.check.fanout import run_serial
from pagemap.check.mutants import MUTANTS
from pagemap.check.runner import DEFAULT_MAX_STEPS
from pagemap.check.scenarios import lookup, registry
from pagemap.sync.sim import SeededRandom, SimExecutor

ROUNDS = 3


def _args(strategy: str | None, bound: int | None) -> argparse.Namespace:
    return argparse.Namespace(
        strategy=strategy,
        preemptions=bound,
        budget=None,
        time=None,
        seed=0,
        depth=3,
        jobs=1,
        max_steps=DEFAULT_MAX_STEPS,
    )


def _whole_check(strategy: str | None, bound: int | None) -> tuple[float, int]:
    """Seconds and schedules of `pagemap check` over every scenario but the
    ext2 ones (DFS cannot finish those; the portfolio's time for them is in
    the per-scenario figures)."""
    models = {n: s.model() for n, s in registry().items() if not n.startswith("ext2-")}
    units = plan(_args(strategy, bound), models)
    t0 = time.perf_counter()
    results = run_serial(units)
    seconds = time.perf_counter() - t0
    assert all(s.trace is None for s in results), "the real kernel failed a scenario"
    return seconds, sum(s.schedules for s in results)


# DFS to the end of the larger ext2 scenarios runs to hundreds of thousands of
# schedules; past this many the DFS baseline stops, and the figure says so.
DFS_CAP = 20_000


def coverage_figures(report: Report) -> None:
    ratios = []
    for name, scenario in registry().items():
        model = scenario.model()
        dpor = explore_model(model, "dpor", bound=2, shrink=False)
        dfs = explore_model(model, "dfs", bound=2, budget=DFS_CAP, shrink=False)
        assert dpor.exhaustive
        done = "" if dfs.exhaustive else f" (DFS unfinished at {DFS_CAP}: a bound on the ratio)"
        ratios.append(dpor.schedules / dfs.schedules)
        report.add(
            f"cover {name} to the end, <=2 preemptions: DPOR schedules (vs DFS){done}",
            dpor.schedules,
            "schedules",
            baseline=dfs.schedules,
        )
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    report.add(
        "cover every scenario: DPOR / DFS schedules, geometric mean (an unfinished DFS "
        "counts at its cap, which favours DFS)",
        geo,
        "ratio",
    )


def mutant_figures(report: Report) -> None:
    for mutant in MUTANTS:
        model = lookup(mutant.scenario).model(mutant.params)
        got = {}
        with mutant.applied():
            for strategy in ("dfs", "dpor"):
                t0 = time.perf_counter()
                s = explore_model(model, strategy, bound=mutant.bound, budget=DFS_CAP, shrink=False)
                got[strategy] = (s.schedules, time.perf_counter() - t0, s.trace is not None)
        tag = "" if got["dpor"][2] else " (NOT FOUND)"
        report.add(
            f"mutant {mutant.name}: DPOR schedules to violation{tag} (vs DFS)",
            got["dpor"][0],
            "schedules",
            baseline=got["dfs"][0],
        )
        report.add(
            f"mutant {mutant.name}: DPOR seconds to violation{tag} (vs DFS)",
            got["dpor"][1],
            "s",
            baseline=got["dfs"][1],
        )


def bare_steps_per_second(steps: int, schedules: int) -> float:
    """Fresh SimExecutors running two tasks of steps/2 atomic adds each."""

    def once() -> None:
        sched = SimExecutor(SeededRandom(1))
        word = sched.atomic(0, "w")

        def task() -> None:
            for _ in range(steps // 2):
                word.fetch_add(1)

        sched.spawn(task, (), 0, None)
        sched.spawn(task, (), 1, None)
        sched.run()

    t0 = time.perf_counter()
    for _ in range(schedules):
        once()
    return steps * schedules / (time.perf_counter() - t0)


def switches_per_schedule(model: Any, strategy: str, budget: int | None) -> float:
    """Greenlet switches per schedule of the exploration (counted once, untimed)."""
    count = 0

    def trace(event: str, args: object) -> None:
        nonlocal count
        if event in ("switch", "throw"):
            count += 1

    old = greenlet.settrace(trace)
    try:
        s = explore_model(model, strategy, budget=budget, bound=2, shrink=False, watchdog=None)
    finally:
        greenlet.settrace(old)
    return count / s.schedules


def bare_greenlet_steps_per_second(steps: int, switches: float, schedules: int) -> float:
    """A plain greenlet loop: per schedule a fresh greenlet, `steps` empty
    calls (the least a scheduling point can cost), and `switches` switches
    (round trips to the fresh greenlet) spread among them."""
    trips = max(1, round(switches / 2))
    every = max(1, steps // trips)

    def step() -> None:
        pass

    def once() -> None:
        main = greenlet.getcurrent()

        def bounce() -> None:
            while True:
                main.switch()

        other = greenlet.greenlet(bounce)
        done = 0
        for i in range(steps):
            step()
            if i % every == 0 and done < trips:
                other.switch()
                done += 1
        other.throw(greenlet.GreenletExit)  # a task's end: its greenlet dies

    t0 = time.perf_counter()
    for _ in range(schedules):
        once()
    return steps * schedules / (time.perf_counter() - t0)


def speed_figures(report: Report) -> None:
    for name in ("store-remove", "write-remove"):
        model = lookup(name).model()
        for strategy, budget in (("dpor", None), ("random", 2000)):
            best_checker = best_bare = best_loop = 0.0
            best_schedules = 0.0
            switches = switches_per_schedule(model, strategy, budget)
            for _ in range(ROUNDS):
                s = explore_model(
                    model, strategy, budget=budget, bound=2, shrink=False, watchdog=None
                )
                length = max(2, round(s.steps / s.schedules))
                bare = bare_steps_per_second(length, s.schedules)
                loop = bare_greenlet_steps_per_second(length, switches, s.schedules)
                best_checker = max(best_checker, s.steps_per_second)
                best_loop = max(best_loop, loop)
                best_schedules = max(best_schedules, s.schedules_per_second)
                best_bare = max(best_bare, bare)
            report.add(
                f"check {name} {strategy}: steps/s (vs bare SimExecutor, same schedule length)",
                best_checker,
                "steps/s",
                baseline=best_bare,
            )
            report.add(
                f"check {name} {strategy}: steps/s (vs a bare greenlet loop, same steps and "
                f"{switches:.0f} switches per schedule)",
                best_checker,
                "steps/s",
                baseline=best_loop,
            )
            report.add(
                f"check {name} {strategy}: schedules/s ({platform.machine()}, "
                f"{platform.python_version()})",
                best_schedules,
                "schedules/s",
            )


def whole_check_figures(report: Report) -> None:
    best: dict[str, float] = {}
    count: dict[str, int] = {}
    for _ in range(ROUNDS - 1):
        for key, strategy, bound in (
            ("dfs2", "dfs", 2),
            ("default", None, None),
            ("make check", None, 3),
        ):
            seconds, schedules = _whole_check(strategy, bound)
            best[key] = min(best.get(key, math.inf), seconds)
            count[key] = schedules
    report.add(
        f"pagemap check, default, every scenario but ext2 ({count['default']} schedules): "
        f"seconds (vs DFS <=2 to the end, {count['dfs2']} schedules)",
        best["default"],
        "s",
        baseline=best["dfs2"],
    )
    report.add(
        f"make check: DPOR <=3 to the end, every scenario but ext2 ({count['make check']} "
        "schedules): seconds (vs DFS <=2 to the end)",
        best["make check"],
        "s",
        baseline=best["dfs2"],
    )


def first_violation_figures(report: Report) -> None:
    models = {n: s.model() for n, s in registry().items()}
    units = plan(_args(None, None), models)
    t0 = time.perf_counter()
    run_serial(units)
    whole = time.perf_counter() - t0
    for mutant in MUTANTS:
        with mutant.applied():
            t0 = time.perf_counter()
            results = run_serial(units)
            seconds = time.perf_counter() - t0
        found = any(s.trace is not None for s in results)
        tag = "" if found else " (NOT FOUND)"
        report.add(
            f"mutant {mutant.name}: seconds from `pagemap check` to its violation{tag} "
            "(vs the default run of the real kernel)",
            seconds,
            "s",
            baseline=whole,
        )


def run(report: Report) -> None:
    coverage_figures(report)
    mutant_figures(report)
    speed_figures(report)
    whole_check_figures(report)
    first_violation_figures(report)
