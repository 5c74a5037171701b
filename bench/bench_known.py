"""The known-bug zoo by strategy: which one finds which published bug fastest.

For every row of check/scenarios/known/ with its fix off, each strategy runs
until the first violation (or BUDGET schedules): DPOR and DFS with the
default bound of two preemptions (deterministic: one run), PCT and random
choices (seeded: the median over SEEDS seeds).  Each figure is the schedules
a strategy needed, against DFS's on the same scenario (the baseline does the
same work: schedules of one scenario, to its first violation); the seconds
of every strategy are measured in the same rounds, strategy after strategy,
and reported as the median of those rounds.

`python -m bench known` prints the figures; `table()` gives the Markdown
table the README quotes.
"""

from __future__ import annotations

import statistics
import time

from bench.harness import Report
from pagemap.check.explore import explore_model
from pagemap.check.scenarios import lookup
from pagemap.check.scenarios.known import BUGS
from pagemap.check.strategies import DEFAULT_BOUND

BUDGET = 20_000
SEEDS = 5
STRATEGIES = ("dpor", "dfs", "pct", "random")


def first_violation(scenario: str, strategy: str, seed: int) -> tuple[int | None, float]:
    """(schedules to the first violation or None, seconds) for one run."""
    model = lookup(scenario).model({"fix": 0})
    t0 = time.perf_counter()
    summary = explore_model(
        model, strategy, seed=seed, budget=BUDGET, bound=DEFAULT_BOUND, shrink=False
    )
    seconds = time.perf_counter() - t0
    return (summary.schedules if summary.trace is not None else None), seconds


def measure(scenario: str) -> dict[str, tuple[float | None, float]]:
    """Strategy -> (median schedules to the bug, or None if some run missed
    it; median seconds), over SEEDS rounds, strategies interleaved."""
    counts: dict[str, list[int | None]] = {s: [] for s in STRATEGIES}
    seconds: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    for seed in range(SEEDS):
        for strategy in STRATEGIES:
            n, dt = first_violation(scenario, strategy, seed)
            counts[strategy].append(n)
            seconds[strategy].append(dt)
    result: dict[str, tuple[float | None, float]] = {}
    for s in STRATEGIES:
        found = [n for n in counts[s] if n is not None]
        median = statistics.median(found) if len(found) == len(counts[s]) else None
        result[s] = (median, statistics.median(seconds[s]))
    return result


def table(results: dict[str, dict[str, tuple[float | None, float]]]) -> str:
    """Markdown: per bug, schedules (seconds) to the first violation per strategy."""
    head = "| bug | commit | " + " | ".join(STRATEGIES) + " | fastest |"
    lines = [head, "|" + "---|" * (len(STRATEGIES) + 3)]
    for bug in BUGS:
        row = results[bug.scenario]
        cells = []
        for s in STRATEGIES:
            n, dt = row[s]
            cells.append(f"not in {BUDGET:,}" if n is None else f"{n:,.0f} ({dt:.2f} s)")
        fastest = ", ".join(_fastest(row)) or "none"
        cells = [f"`{bug.scenario}`", bug.commit, *cells, fastest]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fastest(row: dict[str, tuple[float | None, float]]) -> list[str]:
    """The strategies that found the bug in the least time, within 10% or
    5 ms of the best (a tie is a tie, not the first name in the list)."""
    timed = {s: dt for s, (n, dt) in row.items() if n is not None}
    if not timed:
        return []
    best = min(timed.values())
    return [s for s, dt in timed.items() if dt <= best * 1.1 + 0.005]


def run(report: Report) -> None:
    results = {bug.scenario: measure(bug.scenario) for bug in BUGS}
    for bug in BUGS:
        row = results[bug.scenario]
        dfs = row["dfs"][0]
        for s in STRATEGIES:
            n, dt = row[s]
            tag = "" if n is not None else f" (NOT FOUND in {BUDGET:,})"
            report.add(
                f"zoo {bug.scenario} fix off: {s} schedules to the bug{tag} (vs DFS, bound 2)",
                float(n if n is not None else BUDGET),
                "schedules",
                baseline=dfs,
            )
            report.add(
                f"zoo {bug.scenario} fix off: {s} seconds to the bug, median of {SEEDS} "
                "interleaved rounds (vs DFS)",
                dt,
                "s",
                baseline=row["dfs"][1],
            )
    print(table(results))
