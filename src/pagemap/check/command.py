"""`pagemap check` and `pagemap replay`.

check explores every named scenario (or those given) with one strategy and
prints a summary per scenario; on the first violation it shrinks the
counterexample, writes its JSON trace, prints the replay table, and exits 1.
replay re-runs a trace and prints one row per step.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pagemap.check.oracle import Violation
from pagemap.check.replay import replay
from pagemap.check.runner import DEFAULT_MAX_STEPS, Summary, explore_model
from pagemap.check.scenarios import lookup, registry
from pagemap.check.shrink import shrink_trace
from pagemap.check.strategies import EXHAUSTIVE, STRATEGIES
from pagemap.check.trace import Step, Trace

DEFAULT_BUDGET = 1000  # schedules per scenario for random and PCT
DFS_CAP = 200_000  # DFS runs to exhaustion, but never past this many schedules
BAD_INPUT = 2


def _param(text: str) -> tuple[str, int]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"a parameter is NAME=INTEGER, not {text!r}")
    try:
        return key, int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"parameter {key} needs an integer, not {value!r}"
        ) from None


def _nonneg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, not {n}")
    return n


def _positive(text: str) -> int:
    n = _nonneg(text)
    if n == 0:
        raise argparse.ArgumentTypeError("expected a number >= 1, not 0")
    return n


def _seconds(text: str) -> float:
    try:
        t = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if not t > 0 or math.isinf(t):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text}")
    return t


def register(sub: Any) -> None:
    check: argparse.ArgumentParser = sub.add_parser(
        "check",
        help="explore interleavings of the named scenarios and check every oracle",
        description="Explore the interleavings of each scenario (all of them by default) "
        "under the deterministic scheduler, checking memory safety at every step, coherence "
        "as loads return, and durability and accounting at the end.  Exit 0 if every oracle "
        "holds, 1 with a counterexample trace on a violation, 2 on bad arguments.",
    )
    check.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenario names")
    check.add_argument("--strategy", choices=STRATEGIES, default="dpor", help="default dpor")
    check.add_argument(
        "--budget",
        type=_positive,
        help=f"schedules per scenario (default {DEFAULT_BUDGET}; dfs: until exhausted)",
    )
    check.add_argument("--time", type=_seconds, help="seconds per scenario instead of a budget")
    check.add_argument(
        "--preemptions",
        type=_nonneg,
        help="preemption bound (default 2 for dfs, none for random and pct)",
    )
    check.add_argument("--seed", type=_nonneg, default=0, help="strategy seed (default 0)")
    check.add_argument("--depth", type=_positive, default=3, help="PCT bug depth (default 3)")
    check.add_argument("--jobs", type=_positive, default=1, help="worker processes (default 1)")
    check.add_argument(
        "--param",
        "-p",
        type=_param,
        action="append",
        default=[],
        metavar="NAME=N",
        help="set a scenario parameter (applies to every scenario named)",
    )
    check.add_argument(
        "--max-steps", type=_positive, default=DEFAULT_MAX_STEPS, help="step budget per schedule"
    )
    check.add_argument("--traces", default="traces", help="directory for counterexample traces")
    check.add_argument("--no-shrink", action="store_true", help="keep counterexamples unshrunk")
    check.add_argument("--list", action="store_true", help="list the scenarios and exit")
    check.set_defaults(func=run_check)

    rep: argparse.ArgumentParser = sub.add_parser(
        "replay",
        help="re-run a counterexample trace step by step",
        description="Re-run the schedule in TRACE and print one row per step: the core, "
        "task, operation, the slot word as refcount|removal|ppn, and PTE bits; then the "
        "failing oracle's message.  Exit 1 if the violation reproduces, 0 if it no longer does.",
    )
    rep.add_argument("trace", metavar="TRACE", help="a JSON trace written by pagemap check")
    rep.add_argument("--max-steps", type=_positive, default=DEFAULT_MAX_STEPS)
    rep.set_defaults(func=run_replay)


# -- check ------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """One exploration a worker can run on its own."""

    scenario: str
    params: dict[str, int]
    strategy: str
    seed: int
    bound: int | None
    depth: int
    max_steps: int
    first: int
    budget: int | None
    time_limit: float | None


def run_plan(plan: Plan, progress: Callable[[int], None] | None = None) -> Summary:
    model = lookup(plan.scenario).model(plan.params)
    return explore_model(
        model,
        plan.strategy,
        plan.seed,
        plan.budget,
        plan.time_limit,
        plan.bound,
        plan.depth,
        plan.max_steps,
        plan.first,
        progress,
        shrink=False,
    )


def _plans(args: argparse.Namespace, name: str, params: dict[str, int]) -> list[Plan]:
    bound = args.preemptions
    if bound is None and args.strategy in EXHAUSTIVE:
        bound = 2
    budget: int | None = args.budget
    if budget is None and args.time is None:
        budget = DFS_CAP if args.strategy in EXHAUSTIVE else DEFAULT_BUDGET

    def plan(first: int, count: int | None) -> Plan:
        return Plan(
            name,
            params,
            args.strategy,
            args.seed,
            bound,
            args.depth,
            args.max_steps,
            first,
            count,
            args.time,
        )

    # DFS is one search; random and PCT split by schedule number.
    if args.strategy in EXHAUSTIVE or args.jobs == 1:
        return [plan(0, budget)]
    if budget is None:
        return [plan(j * 10**9, None) for j in range(args.jobs)]
    size = max(1, -(-budget // (args.jobs * 4)))
    return [plan(f, min(size, budget - f)) for f in range(0, budget, size)]


def _merge(parts: list[Summary]) -> Summary:
    parts = sorted(parts, key=lambda s: (s.trace is None, s.trace.schedule_index if s.trace else 0))
    first = parts[0]
    out = Summary(first.scenario, first.params, first.strategy, first.seed, first.bound)
    for p in parts:
        out.schedules += p.schedules
        out.distinct += p.distinct
        out.steps += p.steps
        out.seconds = max(out.seconds, p.seconds)
        out.exhaustive = out.exhaustive or p.exhaustive
    out.trace = first.trace
    return out


def run_check(args: argparse.Namespace) -> int:
    console = _console()
    scenarios = registry()
    if args.list:
        for s in scenarios.values():
            params = " ".join(f"{k}={v}" for k, v in s.defaults.items())
            console.print(f"[bold]{s.name}[/bold]  {s.summary}  [dim]{params}[/dim]")
        return 0
    if args.budget is not None and args.time is not None:
        raise ValueError("give --budget or --time, not both")
    names = args.scenarios or list(scenarios)
    for name in names:
        lookup(name)  # unknown names: one line, exit 2
    overrides = dict(args.param)
    models = {
        n: scenarios[n].model(overrides if args.scenarios else _known(scenarios[n], overrides))
        for n in names
    }
    summaries: list[Summary] = []
    with _progress(console) as progress:
        bars = {n: progress.add_task(n, total=_total(args)) for n in names}
        if args.jobs == 1:
            for n in names:
                plan = _plans(args, n, models[n].params)[0]
                summary = run_plan(plan, functools.partial(progress.advance, bars[n]))
                _finish_bar(progress, bars[n], summary)
                summaries.append(summary)
                if summary.trace is not None:
                    break
        else:
            summaries = _run_parallel(args, names, models, progress, bars)
    _print_summary(console, summaries)
    failed = next((s for s in summaries if s.trace is not None), None)
    if failed is None:
        return 0
    assert failed.trace is not None
    return _report(console, args, models[failed.scenario], failed.trace)


def _known(scenario: Any, overrides: dict[str, int]) -> dict[str, int]:
    # With no scenario named, a parameter applies to the scenarios that take it.
    return {k: v for k, v in overrides.items() if k in scenario.defaults}


def _total(args: argparse.Namespace) -> int | None:
    if args.time is not None:
        return None
    if args.budget is not None:
        return int(args.budget)
    return None if args.strategy in EXHAUSTIVE else DEFAULT_BUDGET


def _finish_bar(progress: Progress, bar: Any, s: Summary) -> None:
    progress.update(bar, total=s.schedules, completed=s.schedules)


def _run_parallel(
    args: argparse.Namespace,
    names: list[str],
    models: dict[str, Any],
    progress: Progress,
    bars: dict[str, Any],
) -> list[Summary]:
    results: dict[str, list[Summary]] = {n: [] for n in names}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures: dict[Future[Summary], Plan] = {}
        for n in names:
            for plan in _plans(args, n, models[n].params):
                futures[pool.submit(run_plan, plan)] = plan
        found: dict[str, int] = {}
        for fut in as_completed(futures):
            if fut.cancelled():
                continue
            plan = futures[fut]
            s = fut.result()
            results[plan.scenario].append(s)
            progress.advance(bars[plan.scenario], s.schedules)
            if s.trace is not None:
                found[plan.scenario] = min(
                    found.get(plan.scenario, 1 << 62), s.trace.schedule_index
                )
                # Later schedule numbers cannot matter: the lowest failing one is reported.
                for other, p in futures.items():
                    if p.scenario == plan.scenario and p.first > found[plan.scenario]:
                        other.cancel()
    merged = [_merge(results[n]) for n in names if results[n]]
    for s in merged:
        _finish_bar(progress, bars[s.scenario], s)
    return merged


def _console() -> Console:
    # Piped into a file or a pager, the step table keeps every column whole.
    return Console(width=None if sys.stdout.isatty() else 160)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("schedules"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _print_summary(console: Console, summaries: Sequence[Summary]) -> None:
    table = Table(title="pagemap check")
    for col in (
        "scenario",
        "strategy",
        "schedules",
        "distinct",
        "exhaustive",
        "steps/s",
        "verdict",
    ):
        table.add_column(
            col, justify="right" if col in ("schedules", "distinct", "steps/s") else "left"
        )
    for s in summaries:
        strat = s.strategy + (f", ≤{s.bound} preemptions" if s.bound is not None else "")
        verdict = "[green]holds[/green]" if s.trace is None else f"[red]{s.trace.oracle}[/red]"
        table.add_row(
            s.scenario,
            strat,
            str(s.schedules),
            str(s.distinct),
            "yes" if s.exhaustive else "no",
            f"{s.steps_per_second:,.0f}",
            verdict,
        )
    console.print(table)


def _report(console: Console, args: argparse.Namespace, model: Any, trace: Trace) -> int:
    if not args.no_shrink:
        trace = shrink_trace(model, trace)
    path = trace.save(args.traces)
    result = replay(model, trace)
    console.print(step_table(result.rows, f"{trace.scenario}: counterexample"))
    _print_verdict(console, trace, result.violation)
    console.print(f"trace written to {path}  (replay: pagemap replay {path})", soft_wrap=True)
    return 1


# -- replay -------------------------------------------------------------------------


def run_replay(args: argparse.Namespace) -> int:
    console = _console()
    trace = Trace.load(args.trace)
    model = lookup(trace.scenario).model(trace.params)
    result = replay(model, trace)
    console.print(step_table(result.rows, f"{trace.scenario} {trace.params}"))
    if result.diverged:
        console.print(
            "[yellow]the schedule named a task that could not run there: the scenario or "
            "the kernel changed since the trace was written[/yellow]"
        )
    _print_verdict(console, trace, result.violation)
    return 1 if result.violation is not None else 0


def _print_verdict(console: Console, trace: Trace, violation: Violation | None) -> None:
    if violation is None:
        console.print(
            f"[green]no violation on replay[/green] (the trace recorded {trace.oracle}: "
            f"{trace.message})",
            soft_wrap=True,
        )
        return
    shrunk = ""
    if trace.original:
        shrunk = (
            f" (shrunk from {trace.original.get('steps')} steps and "
            f"{trace.original.get('preemptions')} preemptions)"
        )
    console.print(
        f"[red]VIOLATION[/red] {violation.oracle}: {violation.message}\n"
        f"{trace.steps} steps, {trace.preemptions} preemptions{shrunk}; found by "
        f"{trace.strategy} seed {trace.seed}, schedule {trace.schedule_index}",
        soft_wrap=True,
    )


def step_table(rows: Sequence[Step], title: str) -> Table:
    table = Table(title=title)
    for col in ("step", "core", "task", "operation", "object", "slot (ref|R|ppn)", "PTE", "value"):
        table.add_column(col, justify="right" if col in ("step", "core") else "left")
    for r in rows:
        table.add_row(str(r.step), str(r.core), r.task, r.operation, r.obj, r.slot, r.pte, r.value)
    return table
