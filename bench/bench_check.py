"""The checker's speed, and how fast it catches each mutant.

- steps/s per strategy on two scenarios (write-remove, store-remove), as a
  ratio to the bare SimExecutor stepping two tasks with no checker at all;
- schedules/s per strategy, as a ratio to the random strategy's;
- per mutant and strategy: schedules and seconds to the first violation
  (DFS with two preemptions, random, PCT depth 3);
- the page-map mutants driven by frontrun (bench/frontrun_check.py) where it
  can express them, as ratios to our figure for the same kind of search
  (frontrun's DPOR against our DFS, its random against ours).  frontrun's
  budget is 500 executions; a mutant it misses within that shows the budget.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.mutants import MUTANTS

from bench.harness import Report, best_time
from pagemap.check.runner import explore_model
from pagemap.check.scenarios import lookup
from pagemap.sync.executor import RandomStrategy, SimExecutor

SCENARIOS = ("write-remove", "store-remove")
BUDGETS = {"random": 400, "pct": 400, "dfs": 2000}
MUTANT_BUDGET = 5000
FRONTRUN_BUDGET = 500
ROOT = Path(__file__).resolve().parent.parent


def bare_steps_per_second(n: int = 50_000) -> float:
    """Two tasks doing atomic adds under the plain SimExecutor: no hook, no checker."""

    def once() -> None:
        sched = SimExecutor(RandomStrategy(1))
        word = sched.atomic(0, "w")

        def task() -> None:
            for _ in range(n // 2):
                word.fetch_add(1)

        sched.spawn(task, (), 0, None)
        sched.spawn(task, (), 1, None)
        sched.run()

    return n / best_time(once, repeat=3)


def strategy_figures(report: Report, bare: float) -> None:
    for name in SCENARIOS:
        model = lookup(name).model()
        per_second: dict[str, float] = {}
        for strategy, budget in BUDGETS.items():
            bound = 2 if strategy == "dfs" else None
            summary = explore_model(model, strategy, seed=1, budget=budget, bound=bound)
            per_second[strategy] = summary.schedules_per_second
            report.add(
                f"check {name} {strategy}: steps/s (vs bare SimExecutor)",
                summary.steps_per_second,
                "steps/s",
                baseline=bare,
            )
            report.add(
                f"check {name} {strategy}: schedules/s (vs random)",
                summary.schedules_per_second,
                "schedules/s",
                baseline=per_second["random"],
            )


def mutant_figures(report: Report) -> dict[tuple[str, str], tuple[int, float]]:
    ours: dict[tuple[str, str], tuple[int, float]] = {}
    for mutant in MUTANTS:
        model = lookup(mutant.scenario).model(mutant.params)
        for strategy in ("dfs", "random", "pct"):
            bound = mutant.bound if strategy == "dfs" else None
            with mutant.applied():
                t0 = time.perf_counter()
                s = explore_model(
                    model, strategy, seed=0, budget=MUTANT_BUDGET, bound=bound, shrink=False
                )
                seconds = time.perf_counter() - t0
            found = s.trace is not None
            schedules = s.trace.schedule_index + 1 if s.trace is not None else s.schedules
            ours[(mutant.name, strategy)] = (schedules, seconds)
            tag = "" if found else f" (not found in {MUTANT_BUDGET})"
            report.add(
                f"mutant {mutant.name} {strategy}: schedules to violation{tag}",
                schedules,
                "schedules",
            )
            report.add(
                f"mutant {mutant.name} {strategy}: seconds to violation{tag}",
                seconds,
                "s",
            )
    return ours


def frontrun_figures(report: Report, ours: dict[tuple[str, str], tuple[int, float]]) -> None:
    launcher = shutil.which("frontrun", path=str(Path(sys.executable).parent)) or shutil.which(
        "frontrun"
    )
    if launcher is None:
        print("bench_check: frontrun is not installed (pip install -e '.[bench]'); skipped")
        return
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [launcher, sys.executable, "-m", "bench.frontrun_check", str(FRONTRUN_BUDGET)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    mine = {"dpor": "dfs", "random": "random"}
    for line in proc.stdout.splitlines():
        if not line.startswith("{"):
            continue
        row = json.loads(line)
        ref = ours.get((row["mutant"], mine[row["strategy"]]))
        tag = "" if row["found"] else f" (not found in {FRONTRUN_BUDGET})"
        label = f"frontrun {row['strategy']} {row['mutant']}"
        report.add(
            f"{label}: schedules to violation{tag} (vs ours)",
            row["schedules"],
            "schedules",
            baseline=ref[0] if ref else None,
        )
        report.add(
            f"{label}: seconds to violation{tag} (vs ours)",
            row["seconds"],
            "s",
            baseline=ref[1] if ref else None,
        )
    if proc.returncode:
        print(f"bench_check: frontrun driver exited {proc.returncode}: {proc.stderr[-500:]}")


def run(report: Report) -> None:
    bare = bare_steps_per_second()
    report.add("bare SimExecutor: steps/s (two tasks, no checker)", bare, "steps/s")
    strategy_figures(report, bare)
    ours = mutant_figures(report)
    frontrun_figures(report, ours)
