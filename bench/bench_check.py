"""The checker: how much DPOR prunes, how fast it runs, how soon it finds bugs.

Every figure is a ratio against a baseline doing the same work in the same
process; timed ones in paired rounds, interleaved with the subject (the
harness's rule: each side the median of its rounds, the ratio the median of
the per-round ratios):

- per scenario (the registry's first COVER_SCENARIOS): schedules to cover it
  to the end with DPOR, against DFS at the same preemption bound (2); and the
  geometric mean of the ratios;
- per mutant (the first MUTANT_FIGURES): schedules and seconds to the first
  violation, DPOR against DFS (both with the mutant's bound);
- the checker's steps/s on store-remove and write-remove (DPOR at most 2
  preemptions; random choices with the CLI's default bound, none), against
  the bare SimExecutor running schedules of the same length with the same
  greenlet switches per schedule (two tasks doing atomic adds on a fresh
  executor per schedule, no Machine, no oracle; a strategy of its own
  switches task every k-th step, k set so that the switches, counted with
  greenlet.settrace on both sides, match), and against a bare greenlet loop
  taking the same steps (an empty call each) with the same switches;
- schedules/s on store-remove (DPOR and random), printed with the machine;
- the default `pagemap check` (PCT, then DPOR <= 2 to the end) over the
  registry's first WHOLE_SCENARIOS scenarios, against DFS <= 2 to the end
  over the same (what `pagemap check` did before DPOR);
- per mutant (the same): seconds from the start of the default `pagemap check` (every
  scenario, in the portfolio's order) to its first violation, the median of
  its rounds, with no baseline (goal: every mutant within 5 s);
- the page-map mutants frontrun can express: schedules and seconds to the
  first violation under frontrun's DPOR against pagemap check's DPOR, both
  at most two preemptions, on the same program and invariant
  (bench/frontrun_check.py, run under frontrun's launcher).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import greenlet

from bench.harness import Report, Rounds, interleave
from pagemap.check.command import plan
from pagemap.check.explore import explore_model
from pagemap.check.fanout import run_serial
from pagemap.check.mutants import MUTANTS
from pagemap.check.runner import DEFAULT_MAX_STEPS
from pagemap.check.scenarios import lookup, registry
from pagemap.sync.core import Strategy, Task
from pagemap.sync.sim import SimExecutor

ROUNDS = 3
REPO = Path(__file__).resolve().parent.parent
FRONTRUN_BUDGET = 500
# frontrun takes up to 80 s a round on a mutant it misses within the budget:
# one paired round, each side once (its schedules are the same every round).
FRONTRUN_ROUNDS = 1


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


# The whole check's figures run the registry's first scenarios (the page
# map's own): over all of them (some 50), three paired rounds of DFS to the
# end would take `make bench` past its half hour.
WHOLE_SCENARIOS = 6


def _whole_check(strategy: str | None, bound: int | None) -> tuple[float, int]:
    """Seconds and schedules of `pagemap check` over the first WHOLE_SCENARIOS
    scenarios."""
    models = {n: s.model() for n, s in list(registry().items())[:WHOLE_SCENARIOS]}
    units = plan(_args(strategy, bound), models)
    t0 = time.perf_counter()
    results = run_serial(units)
    seconds = time.perf_counter() - t0
    assert all(s.trace is None for s in results), "the real kernel failed a scenario"
    return seconds, sum(s.schedules for s in results)


# DFS to the end of the larger scenarios runs to hundreds of thousands of
# schedules; past this many the DFS baseline stops, and the figure says so
# (at 20,000 the coverage figures alone took ten minutes on two busy cores).
DFS_CAP = 5_000


# Coverage runs DPOR and DFS to the end of the registry's first COVER_SCENARIOS
# scenarios (the page map's own, then the mappings'): over all of them (some
# 80, the ext2 ones a minute each) it alone would take `make bench` past its
# half hour on two cores.
COVER_SCENARIOS = 12
# The mutant figures take the first MUTANT_FIGURES mutants (the page map's and
# the first mappings' ones, on the scenarios above): three paired rounds of
# all of them (some 60, several on ext2) would take most of an hour.
MUTANT_FIGURES = 15


def coverage_figures(report: Report) -> None:
    ratios = []
    for name, scenario in list(registry().items())[:COVER_SCENARIOS]:
        model = scenario.model()
        t0 = time.perf_counter()
        dpor = explore_model(model, "dpor", bound=2, shrink=False)
        dfs = explore_model(model, "dfs", bound=2, budget=DFS_CAP, shrink=False)
        print(
            f"  cover {name}: DPOR {dpor.schedules}, DFS {dfs.schedules} schedules "
            f"({time.perf_counter() - t0:.1f}s)",
            flush=True,
        )
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
        f"cover the first {COVER_SCENARIOS} scenarios: DPOR / DFS schedules, geometric mean "
        "(an unfinished DFS counts at its cap, which favours DFS)",
        geo,
        "ratio",
    )


def mutant_rounds(mutant: Any) -> tuple[Rounds, dict[str, tuple[int, bool]]]:
    """Seconds of DPOR and DFS to the mutant's first violation, in paired
    rounds; and each one's (schedules, found)."""
    model = lookup(mutant.scenario).model(mutant.params)
    got: dict[str, tuple[int, bool]] = {}

    def timed(strategy: str) -> Callable[[], float]:
        def once() -> float:
            t0 = time.perf_counter()
            s = explore_model(model, strategy, bound=mutant.bound, budget=DFS_CAP, shrink=False)
            got[strategy] = (s.schedules, s.trace is not None)
            return time.perf_counter() - t0

        return once

    with mutant.applied():
        seconds = interleave({"dpor": timed("dpor"), "dfs": timed("dfs")}, ROUNDS)
    return seconds, got


def mutant_figures(report: Report) -> None:
    for mutant in MUTANTS[:MUTANT_FIGURES]:
        seconds, got = mutant_rounds(mutant)
        tag = "" if got["dpor"][1] else " (NOT FOUND)"
        report.add(
            f"mutant {mutant.name}: DPOR schedules to violation{tag} (vs DFS)",
            got["dpor"][0],
            "schedules",
            baseline=got["dfs"][0],
        )
        report.add_time(
            f"mutant {mutant.name}: DPOR seconds to violation{tag} (vs DFS)",
            seconds.paired("dpor", "dfs"),
            "s",
        )


class SwitchEvery(Strategy):
    """Stay with the current task but at every `every`-th choice, where the
    other runnable task goes: a bare schedule's switches, set by hand."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.choices = 0

    def pick(self, runnable: Sequence[Task], current: Task | None, kind: str) -> Task:
        self.choices += 1
        if current is None or current not in runnable:
            return runnable[0]
        if self.choices % self.every:
            return current
        return next(t for t in runnable if t is not current)


def count_switches(fn: Callable[[], object]) -> int:
    """Greenlet switches (and throws) while fn runs."""
    count = 0

    def trace(event: str, args: object) -> None:
        nonlocal count
        if event in ("switch", "throw"):
            count += 1

    old = greenlet.settrace(trace)
    try:
        fn()
    finally:
        greenlet.settrace(old)
    return count


def bare_schedule(steps: int, every: int) -> None:
    """A fresh SimExecutor running two tasks of steps/2 atomic adds each,
    switching task every `every`-th choice."""
    sched = SimExecutor(SwitchEvery(every))
    word = sched.atomic(0, "w")

    def task() -> None:
        for _ in range(steps // 2):
            word.fetch_add(1)

    sched.spawn(task, (), 0, None)
    sched.spawn(task, (), 1, None)
    sched.run()


def bare_every(steps: int, switches: float) -> tuple[int, int]:
    """(every, switches per bare schedule): the `every` whose bare schedule
    of `steps` steps makes the number of switches nearest `switches`."""
    least = count_switches(lambda: bare_schedule(steps, steps + 1))  # no choice switches
    every = max(1, round(steps / max(1.0, switches - least)))
    best = (every, count_switches(lambda: bare_schedule(steps, every)))
    for _ in range(4):  # a step or two of k either way settles it
        every, made = best
        nxt = every + (1 if made > switches else -1)
        if nxt < 1:
            break
        got = count_switches(lambda: bare_schedule(steps, nxt))  # noqa: B023
        if abs(got - switches) >= abs(made - switches):
            break
        best = (nxt, got)
    return best


def switches_per_schedule(
    model: Any, strategy: str, budget: int | None, bound: int | None
) -> float:
    """Greenlet switches per schedule of the exploration (counted once, untimed)."""
    got: list[int] = []

    def explore() -> None:
        s = explore_model(model, strategy, budget=budget, bound=bound, shrink=False, watchdog=None)
        got.append(s.schedules)

    return count_switches(explore) / got[0]


def greenlet_loop(steps: int, switches: float) -> Callable[[], None]:
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

    return once


def speed_rounds(model: Any, strategy: str, budget: int | None, bound: int | None) -> Rounds:
    """Seconds per step of the checker ("checker", and its schedules/s), of
    the bare SimExecutor ("bare") and of the bare greenlet loop ("loop"),
    the same steps in schedules of the same length, in paired rounds; and
    the greenlet switches per schedule of each ("switches ...", counted once)."""
    got = Rounds()
    got.add("switches checker", switches_per_schedule(model, strategy, budget, bound))
    first = explore_model(model, strategy, budget=budget, bound=bound, shrink=False, watchdog=None)
    schedules = first.schedules
    length = max(2, round(first.steps / schedules))
    every, bare_switches = bare_every(length, got.median("switches checker"))
    loop = greenlet_loop(length, got.median("switches checker"))
    got.add("switches bare", bare_switches)
    got.add("switches loop", count_switches(loop))

    def checker() -> float:
        s = explore_model(model, strategy, budget=budget, bound=bound, shrink=False, watchdog=None)
        got.add("schedules/s", s.schedules_per_second)
        return 1 / s.steps_per_second

    def bare() -> float:
        t0 = time.perf_counter()
        for _ in range(schedules):
            bare_schedule(length, every)
        return (time.perf_counter() - t0) / (length * schedules)

    def plain() -> float:
        t0 = time.perf_counter()
        for _ in range(schedules):
            loop()
        return (time.perf_counter() - t0) / (length * schedules)

    candidates = {"checker": checker, "bare": bare, "loop": plain}
    return interleave(candidates, ROUNDS, into=got, progress=f"steps/s, {strategy}")


def speed_figures(report: Report) -> None:
    for name in ("store-remove", "write-remove"):
        model = lookup(name).model()
        # The CLI's default bounds: 2 for DPOR, none for random.
        for strategy, budget, bound in (("dpor", None, 2), ("random", 2000, None)):
            got = speed_rounds(model, strategy, budget, bound)
            ours = got.median("switches checker")
            said = f"{strategy} <={bound}" if bound is not None else f"{strategy}, no bound"
            report.add_rate(
                f"check {name} {said}: steps/s (vs bare SimExecutor, same schedule length; "
                f"switches per schedule {ours:.0f} / {got.median('switches bare'):.0f})",
                got.paired("checker", "bare"),
                "steps/s",
            )
            report.add_rate(
                f"check {name} {said}: steps/s (vs a bare greenlet loop, same steps; "
                f"switches per schedule {ours:.0f} / {got.median('switches loop'):.0f})",
                got.paired("checker", "loop"),
                "steps/s",
            )
            report.add(
                f"check {name} {said}: schedules/s ({platform.machine()}, "
                f"{platform.python_version()})",
                got.median("schedules/s"),
                "schedules/s",
            )


WHOLE_ROUNDS = 3


def whole_check_figures(report: Report) -> None:
    count: dict[str, int] = {}

    def timed(key: str, strategy: str | None, bound: int | None) -> Callable[[], float]:
        def once() -> float:
            seconds, count[key] = _whole_check(strategy, bound)
            return seconds

        return once

    got = interleave(
        {"dfs2": timed("dfs2", "dfs", 2), "default": timed("default", None, None)},
        WHOLE_ROUNDS,
        progress="whole pagemap check",
    )
    names = ", ".join(list(registry())[:WHOLE_SCENARIOS])
    report.add_time(
        f"pagemap check, default, over {names} ({count['default']} schedules): "
        f"seconds (vs DFS <=2 to the end, {count['dfs2']} schedules)",
        got.paired("default", "dfs2"),
        "s",
    )


def first_violation_figures(report: Report) -> None:
    """Seconds from the start of the default `pagemap check` over every
    scenario to each mutant's violation, the median of WHOLE_ROUNDS rounds
    (no baseline: the goal is 5 s; the real kernel's whole run, which would
    be one, takes minutes a round)."""
    models = {n: s.model() for n, s in registry().items()}
    units = plan(_args(None, None), models)
    found: dict[str, bool] = {}

    def mutated(mutant: Any) -> Callable[[], float]:
        def once() -> float:
            with mutant.applied():
                t0 = time.perf_counter()
                results = run_serial(units)
                seconds = time.perf_counter() - t0
            found[mutant.name] = any(s.trace is not None for s in results)
            return seconds

        return once

    candidates = {m.name: mutated(m) for m in MUTANTS[:MUTANT_FIGURES]}
    got = interleave(candidates, WHOLE_ROUNDS, progress="mutants from pagemap check")
    for mutant in MUTANTS[:MUTANT_FIGURES]:
        tag = "" if found[mutant.name] else " (NOT FOUND)"
        report.add(
            f"mutant {mutant.name}: seconds from `pagemap check` (every scenario) to its "
            f"violation{tag}, median of {WHOLE_ROUNDS} rounds (goal: within 5 s)",
            got.median(mutant.name),
            "s",
        )


def frontrun_figures(report: Report) -> None:
    """frontrun's DPOR against ours on the same program (bench/frontrun_check.py)."""
    launcher = shutil.which("frontrun") or str(Path(sys.executable).with_name("frontrun"))
    if not os.path.exists(launcher):
        print("  frontrun is not installed (pip install -e '.[bench]'): its figures are left out")
        return
    print(f"  frontrun against pagemap check, {FRONTRUN_ROUNDS} paired round a mutant", flush=True)
    out = subprocess.run(
        [
            launcher,
            sys.executable,
            "-m",
            "bench.frontrun_check",
            str(FRONTRUN_BUDGET),
            str(FRONTRUN_ROUNDS),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in out.splitlines():
        row = json.loads(line)
        fr, ours = row["frontrun"], row["ours"]
        what = f"mutant {row['mutant']}, the same program and invariant on both sides"
        tag = "" if fr["found"] else f" (NOT FOUND in {FRONTRUN_BUDGET})"
        report.add(
            f"{what}: frontrun DPOR <=2 schedules to violation{tag} (vs pagemap check DPOR "
            f"<=2{'' if ours['found'] else ', NOT FOUND'})",
            fr["schedules"],
            "schedules",
            baseline=ours["schedules"],
        )
        report.add(
            f"{what}: frontrun DPOR <=2 seconds to violation{tag} (vs pagemap check DPOR <=2; "
            f"{FRONTRUN_ROUNDS} paired round)",
            fr["seconds"],
            "s",
            baseline=ours["seconds"],
            ratio=row["ratio"],
        )


def run(report: Report) -> None:
    print(f"  coverage: DPOR against DFS, the first {COVER_SCENARIOS} scenarios", flush=True)
    coverage_figures(report)
    print(f"  mutants: DPOR against DFS, the first {MUTANT_FIGURES}", flush=True)
    mutant_figures(report)
    speed_figures(report)
    whole_check_figures(report)
    first_violation_figures(report)
    frontrun_figures(report)
