"""The known-bug zoo by strategy: which one finds which published bug fastest.

For every row of check/scenarios/known/ with its fix off, each strategy runs
until the first violation (or BUDGET schedules), each with the CLI's default
preemption bound: DPOR and DFS at most two preemptions (deterministic: the
same count every round), PCT and random choices none (seeded: the median
over SEEDS seeds).  Each figure is the schedules
a strategy needed, against DFS's on the same scenario (the baseline does the
same work: schedules of one scenario, to its first violation); the seconds
of every strategy are measured in the same rounds (one a seed), strategy
after strategy, the order reversed every other round, and reported as the
median of those rounds, against DFS's median, the ratio the median of the
per-round ratios (the harness's rule).

`python -m bench known` prints the figures; `table()` gives the Markdown
table the README quotes.
"""

from __future__ import annotations

import statistics
import time

from bench.harness import Report, Rounds
from pagemap.check.explore import explore_model
from pagemap.check.scenarios import lookup
from pagemap.check.scenarios.known import BUGS
from pagemap.check.strategies import DEFAULT_BOUND, EXHAUSTIVE

BUDGET = 2_000
SEEDS = 3
STRATEGIES = ("dpor", "dfs", "pct", "random")


def first_violation(scenario: str, strategy: str, seed: int) -> tuple[int | None, float]:
    """(schedules to the first violation or None, seconds) for one run."""
    model = lookup(scenario).model({"fix": 0})
    # The CLI's default bound: DEFAULT_BOUND for dpor and dfs, none for pct and random.
    bound = DEFAULT_BOUND if strategy in EXHAUSTIVE else None
    t0 = time.perf_counter()
    summary = explore_model(model, strategy, seed=seed, budget=BUDGET, bound=bound, shrink=False)
    seconds = time.perf_counter() - t0
    return (summary.schedules if summary.trace is not None else None), seconds


Row = dict[str, tuple[float | None, float, float]]


def measure(scenario: str) -> Row:
    """Strategy -> (median schedules to the bug, or None if some run missed
    it; median seconds; median per-round ratio of its seconds to DFS's),
    over SEEDS rounds, strategies interleaved."""
    counts: dict[str, list[int | None]] = {s: [] for s in STRATEGIES}
    seconds = Rounds()
    for seed in range(SEEDS):
        for strategy in STRATEGIES if seed % 2 == 0 else reversed(STRATEGIES):
            n, dt = first_violation(scenario, strategy, seed)
            counts[strategy].append(n)
            seconds.add(strategy, dt)
    result: Row = {}
    for s in STRATEGIES:
        found = [n for n in counts[s] if n is not None]
        median = statistics.median(found) if len(found) == len(counts[s]) else None
        result[s] = (median, seconds.median(s), seconds.ratio(s, "dfs"))
    return result


def table(results: dict[str, Row]) -> str:
    """Markdown: per bug, schedules (seconds) to the first violation per strategy."""
    head = "| bug | commit | " + " | ".join(STRATEGIES) + " | fastest |"
    lines = [head, "|" + "---|" * (len(STRATEGIES) + 3)]
    for bug in BUGS:
        row = results[bug.scenario]
        cells = []
        for s in STRATEGIES:
            n, dt, _ = row[s]
            cells.append(f"not in {BUDGET:,}" if n is None else f"{n:,.0f} ({dt:.2f} s)")
        fastest = ", ".join(_fastest(row)) or "none"
        cells = [f"`{bug.scenario}`", bug.commit, *cells, fastest]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fastest(row: Row) -> list[str]:
    """The strategies that found the bug in the least time, within 10% or
    5 ms of the best (a tie is a tie, not the first name in the list)."""
    timed = {s: dt for s, (n, dt, _) in row.items() if n is not None}
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
            n, dt, ratio = row[s]
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
                ratio=ratio,
            )
    print(table(results))
