"""`pagemap check` and `pagemap replay`.

check explores every named scenario (or those given).  By default it is a
portfolio, in the manner of Coyote's: a short PCT pass over every scenario,
interleaved, which finds most bugs in seconds, then DPOR with at most two
preemptions over every scenario to the end, which proves the rest.  The whole
run is a plan of units of work (check/fanout), run in this process, in
`--jobs` worker processes, or on a Dask cluster (`--scheduler`), with the
same answer from each.  Ctrl-C or SIGTERM stops it within a second, prints
what was explored, and exits 130 (143).  On the first violation it shrinks the
counterexample, writes its JSON trace, prints the replay table and the one
command that replays it, and exits 1.

replay re-runs a trace step by step.  Exit codes: 0 every oracle holds (or
the replayed schedule no longer fails), 1 a violation, 2 bad input, 3 the
trace no longer fits the code (it could not be followed, or fails otherwise).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pagemap.check.fanout import SPLIT, Explored, Stop, Unit, explore, make_engine, merge
from pagemap.check.fanout.display import Display
from pagemap.check.oracles import Violation
from pagemap.check.replay import Replay, replay
from pagemap.check.runner import DEFAULT_CAP, DEFAULT_MAX_STEPS, Model, Summary
from pagemap.check.scenarios import lookup, registry
from pagemap.check.shrink import shrink_trace
from pagemap.check.strategies import DEFAULT_BOUND, EXHAUSTIVE, STRATEGIES
from pagemap.check.trace import Step, Trace, TraceError

DEFAULT_BUDGET = 1000  # schedules per scenario for random and PCT
PORTFOLIO_PCT = 100  # schedules per scenario in the portfolio's PCT pass
PCT_CHUNK = 20  # PCT schedules per unit: small, so every scenario is looked at early
CHUNK = 100  # random and PCT schedules per unit outside the portfolio
UNIT_TIMEOUT = 600.0  # seconds a unit may run before it is given up as timed out

OK, VIOLATION, BAD_INPUT, NO_LONGER_FITS = 0, 1, 2, 3


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


def _whole(low: int) -> Any:
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if n < low:
            raise argparse.ArgumentTypeError(f"expected a number >= {low}, not {n}")
        return n

    return parse


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
        "under the deterministic scheduler, checking memory safety as accesses land, "
        "coherence as loads return, and durability and accounting at the end.  By default a "
        "short PCT pass over every scenario, then DPOR with at most 2 preemptions to the "
        "end.  Exit 0 if every oracle holds, 1 with a counterexample trace on a violation, "
        "2 on bad arguments.",
    )
    check.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenario names")
    check.add_argument(
        "--strategy",
        choices=STRATEGIES,
        help="one strategy instead of the portfolio (PCT, then DPOR to the end)",
    )
    check.add_argument(
        "--budget",
        type=_whole(1),
        help=f"schedules per scenario (default {DEFAULT_BUDGET} for random and pct; "
        f"dpor and dfs: to the end, at most {DEFAULT_CAP:,})",
    )
    check.add_argument("--time", type=_seconds, help="seconds per scenario instead of a budget")
    check.add_argument(
        "--preemptions",
        type=_whole(0),
        help=f"preemption bound (default {DEFAULT_BOUND} for dpor and dfs, none for random "
        "and pct)",
    )
    check.add_argument("--seed", type=_whole(0), default=0, help="strategy seed (default 0)")
    check.add_argument("--depth", type=_whole(1), default=3, help="PCT bug depth (default 3)")
    check.add_argument(
        "--jobs",
        type=_whole(1),
        default=1,
        help="worker processes (default 1: this process); with --scheduler local, Dask workers",
    )
    check.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the units on the Dask cluster whose scheduler is at ADDRESS "
        "(tcp://host:8786), or 'local' for a cluster of --jobs workers on 127.0.0.1; "
        "needs pip install 'pagemap[cluster]'",
    )
    check.add_argument(
        "--split",
        type=_whole(1),
        default=SPLIT,
        metavar="N",
        help=f"dfs and dpor: schedules a unit of work runs before it hands the rest of its "
        f"subtree back as new units (default {SPLIT})",
    )
    check.add_argument(
        "--unit-timeout",
        type=_seconds,
        default=UNIT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up a unit of work that runs longer, and report it (default {UNIT_TIMEOUT:g})",
    )
    check.add_argument(
        "--param",
        "-p",
        type=_param,
        action="append",
        default=[],
        metavar="NAME=N",
        help="set a scenario parameter (applies to every scenario that takes it)",
    )
    check.add_argument(
        "--max-steps",
        type=_whole(1),
        default=DEFAULT_MAX_STEPS,
        help=f"step budget per schedule (default {DEFAULT_MAX_STEPS:,})",
    )
    check.add_argument("--traces", default="traces", help="directory for counterexample traces")
    check.add_argument("--no-shrink", action="store_true", help="keep counterexamples unshrunk")
    check.add_argument("--list", action="store_true", help="list the scenarios and exit")
    check.add_argument(
        "--coverage",
        action="store_true",
        help="run the scenarios under branch coverage and report the lines and branches of "
        "kernel/ and hw/ that no scenario reaches (less those listed in check/unreached.txt)",
    )
    check.set_defaults(func=run_check)

    rep: argparse.ArgumentParser = sub.add_parser(
        "replay",
        help="re-run a counterexample trace step by step",
        description="Re-run the schedule in TRACE on the scenario (or model) it names, under "
        "the settings it records, and print one row per step: the core, task, operation, "
        "the slot word as refcount|removal|ppn, PTE bits, and where in the code.  Exit 1 if "
        "the violation reproduces, 0 if the schedule runs and no longer fails, 2 if TRACE is "
        "not a trace, 3 if the schedule no longer fits the code.",
    )
    rep.add_argument("trace", metavar="TRACE", help="a JSON trace written by pagemap check")
    rep.set_defaults(func=run_replay)


# -- check ------------------------------------------------------------------------


def plan(args: argparse.Namespace, models: Mapping[str, Model]) -> list[Unit]:
    """The plan: the portfolio, or one strategy over every scenario.  It
    depends on the options, never on the number of workers (but for --time,
    where each worker gets a stream of schedules of its own)."""
    units: list[Unit] = []
    split = getattr(args, "split", SPLIT)
    timeout = getattr(args, "unit_timeout", UNIT_TIMEOUT)

    def unit(name: str, strategy: str, first: int, budget: int | None, phase: str) -> Unit:
        bound = args.preemptions
        if bound is None and strategy in EXHAUSTIVE:
            bound = DEFAULT_BOUND
        return Unit(
            name,
            tuple(sorted(models[name].params.items())),
            strategy,
            args.seed,
            bound if strategy in EXHAUSTIVE or args.preemptions is not None else None,
            args.depth,
            args.max_steps,
            first,
            budget,
            args.time,
            phase,
            split=split if strategy in EXHAUSTIVE and args.time is None else None,
            timeout=timeout,
        )

    names = list(models)
    if args.strategy is None:
        for first in range(0, PORTFOLIO_PCT, PCT_CHUNK):
            units += [unit(n, "pct", first, PCT_CHUNK, "pct") for n in names]
        units += [unit(n, "dpor", 0, args.budget or DEFAULT_CAP, "") for n in names]
        return units
    if args.strategy in EXHAUSTIVE:
        budget = args.budget if args.budget is not None else (None if args.time else DEFAULT_CAP)
        return [unit(n, args.strategy, 0, budget, "") for n in names]
    if args.time is not None:
        return [
            unit(n, args.strategy, j * 10**9, None, "") for n in names for j in range(args.jobs)
        ]
    budget = args.budget or DEFAULT_BUDGET
    for first in range(0, budget, CHUNK):
        units += [unit(n, args.strategy, first, min(CHUNK, budget - first), "") for n in names]
    return units


def run_check(args: argparse.Namespace) -> int:
    console = _console()
    scenarios = registry()
    if args.list:
        for s in scenarios.values():
            params = " ".join(f"{k}={v}" for k, v in s.defaults.items())
            console.print(f"[bold]{s.name}[/bold]  {s.summary}  [dim]{params}[/dim]")
        return OK
    if args.budget is not None and args.time is not None:
        raise ValueError("give --budget or --time, not both")
    if args.strategy in ("random", "pct") and args.time is None and args.budget is None:
        args.budget = DEFAULT_BUDGET
    _check_output_dir(args.traces)
    names = args.scenarios or list(scenarios)
    for name in names:
        lookup(name)  # unknown names: one line, exit 2
    overrides = dict(args.param)
    models: dict[str, Model] = {
        n: scenarios[n].model(overrides if args.scenarios else _known(scenarios[n], overrides))
        for n in names
    }
    units = plan(args, models)
    if args.coverage:
        return _coverage(console, units)
    t0 = time.perf_counter()
    explored = _explore(console, args, units)
    summaries = _by_scenario(names, units, explored.summaries)
    seconds = time.perf_counter() - t0
    _print_summary(console, summaries)
    _print_timeouts(console, summaries)
    if explored.stopped is not None:
        return _stopped(console, explored, summaries)
    failed = next((s for s in summaries if s.trace is not None), None)
    if failed is None:
        _print_holds(console, summaries, seconds)
        return OK
    assert failed.trace is not None
    return _report(console, args, models[failed.scenario], failed.trace)


def _coverage(console: Console, units: list[Unit]) -> int:
    from pagemap.check.coverage import default_exclusions, measure

    with console.status(f"running {len(units)} units of work under branch coverage ..."):
        report = measure(units, default_exclusions())
    table = Table(title="scenario coverage of kernel/ and hw/")
    for col in ("file", "lines", "branches", "not reached (line, or line->line)"):
        table.add_column(col, justify="right" if col in ("lines", "branches") else "left")
    for f in report.files:
        lines = f.statements - f.listed_lines
        branches = f.branches - f.listed_branches
        missing = [str(n) for n in f.missing_lines] + [f"{a}->{b}" for a, b in f.missing_branches]
        table.add_row(
            f.path,
            f"{lines - len(f.missing_lines)}/{lines}",
            f"{branches - len(f.missing_branches)}/{branches}",
            ", ".join(missing),
        )
    console.print(table)
    for entry in report.stale:
        console.print(
            f"[yellow]unreached.txt lists a line that is reached or gone:[/yellow] {entry}"
        )
    reached, total = report.reached
    console.print(
        f"scenarios reach {reached}/{total} lines and branches of kernel/ and hw/ "
        f"({100 * reached / max(total, 1):.1f}%) not listed as unreachable",
        soft_wrap=True,
    )
    for message in report.violations:
        console.print(f"[red]VIOLATION[/red] {message} (run pagemap check for the trace)")
    if report.violations:
        return VIOLATION
    return OK if report.complete else VIOLATION


def _by_scenario(names: list[str], units: list[Unit], results: list[Summary]) -> list[Summary]:
    parts: dict[str, list[Summary]] = {n: [] for n in names}
    for s in results:
        parts[s.scenario].append(s)
    return [merge(parts[n]) for n in names if parts[n]]


def _known(scenario: Any, overrides: dict[str, int]) -> dict[str, int]:
    # With no scenario named, a parameter applies to the scenarios that take it.
    return {k: v for k, v in overrides.items() if k in scenario.defaults}


def _check_output_dir(path: str) -> None:
    """Refuse, before any work, a trace directory that cannot be written."""
    target = Path(path)
    probe = target
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"--traces {path}: {probe} is not a directory")
    if not os.access(probe, os.W_OK):
        raise ValueError(f"--traces {path}: {probe} is not writable")


def _console() -> Console:
    # Piped into a file or a pager, the step table keeps every column whole.
    return Console(width=None if sys.stdout.isatty() else 160)


def _explore(console: Console, args: argparse.Namespace, units: list[Unit]) -> Explored:
    """Run the plan on the engine the options name, with the progress display;
    Ctrl-C and SIGTERM stop it (the answer then holds what was explored)."""
    engine = make_engine(args.jobs, args.scheduler)
    print(
        f"pagemap check: {len(units)} units of work on {engine.name}, {engine.workers()} at a time",
        file=sys.stderr,
        flush=True,
    )
    stop = Stop()
    with stop.on_signals(), Display(console, engine.name) as display:
        return explore(units, engine, display.update, stop)


def _print_timeouts(console: Console, summaries: Sequence[Summary]) -> None:
    for s in summaries:
        if s.timed_out:
            console.print(
                f"[yellow]{s.scenario}: {s.timed_out} unit(s) of work timed out[/yellow] "
                "(--unit-timeout); what they would have explored was not",
                soft_wrap=True,
            )


def _stopped(console: Console, explored: Explored, summaries: Sequence[Summary]) -> int:
    """What an interrupted exploration prints: the summary above, and a line."""
    assert explored.stopped is not None
    name = signal.Signals(explored.stopped.signum or signal.SIGINT).name
    st = explored.status
    console.print(
        f"[yellow]stopped by {name}[/yellow] after {st.seconds:.1f} s: {st.schedules:,} "
        f"schedules in {len(summaries)} scenario(s), {st.units_done} of {st.units} units of "
        "work done; nothing is covered to the end",
        soft_wrap=True,
    )
    return explored.stopped.exit_code


def _print_summary(console: Console, summaries: Sequence[Summary]) -> None:
    table = Table(title="pagemap check")
    cols = ("scenario", "strategy", "schedules", "traces", "covered", "steps/s", "verdict")
    for col in cols:
        table.add_column(
            col, justify="right" if col in ("schedules", "traces", "steps/s") else "left"
        )
    for s in summaries:
        strat = s.strategy + (f" ≤{s.bound}" if s.bound is not None else "")
        if s.extra:
            strat = " + ".join(f"{k} {v}" for k, v in s.extra.items()) + f", {strat}"
        verdict = "[green]holds[/green]" if s.trace is None else f"[red]{s.trace.oracle}[/red]"
        table.add_row(
            s.scenario,
            strat,
            f"{s.schedules:,}",
            f"{s.distinct:,}" if s.strategy == "dpor" else "",
            "yes" if s.exhaustive else "no",
            f"{s.steps_per_second:,.0f}",
            verdict,
        )
    console.print(table)


def _print_holds(console: Console, summaries: Sequence[Summary], seconds: float) -> None:
    schedules = sum(s.schedules for s in summaries)
    covered = sum(s.exhaustive for s in summaries)
    console.print(
        f"[green]every oracle holds[/green] in {len(summaries)} scenario(s): "
        f"{schedules:,} schedules in {seconds:.1f} s; {covered} of {len(summaries)} "
        "covered to the end",
        soft_wrap=True,
    )


def _report(console: Console, args: argparse.Namespace, model: Model, trace: Trace) -> int:
    if not args.no_shrink:
        trace = shrink_trace(model, trace)
    path = trace.save(args.traces)
    result = replay(model, trace)
    console.print(step_table(result.rows, _title(trace)))
    _print_verdict(console, trace, result)
    console.print(f"trace written to {path}", soft_wrap=True)
    console.print(f"replay it: pagemap replay {path}", soft_wrap=True, highlight=False)
    return VIOLATION


def _title(trace: Trace) -> str:
    params = ", ".join(f"{k}={v}" for k, v in trace.params.items())
    return f"{trace.scenario}" + (f" ({params})" if params else "") + ": counterexample"


# -- replay -------------------------------------------------------------------------


def run_replay(args: argparse.Namespace) -> int:
    console = _console()
    try:
        trace = Trace.load(args.trace)
    except TraceError as exc:
        raise ValueError(str(exc)) from None
    model, differs = model_of(trace)
    if differs:
        print(f"pagemap replay: {differs}", file=sys.stderr)
        return NO_LONGER_FITS
    result = replay(model, trace)
    console.print(step_table(result.rows, _title(trace).replace("counterexample", "replay")))
    _print_verdict(console, trace, result)
    v = result.violation
    if not result.followed:
        where = result_where(result, trace)
        print(
            f"pagemap replay: the schedule no longer fits the code: {where}; the scenario or "
            "the kernel changed since the trace was written",
            file=sys.stderr,
        )
        return NO_LONGER_FITS
    if v is None:
        return OK
    if v.oracle != trace.oracle:
        print(
            f"pagemap replay: the schedule now fails {v.oracle}, not {trace.oracle} as recorded",
            file=sys.stderr,
        )
        return NO_LONGER_FITS
    return VIOLATION


def result_where(result: Replay, trace: Trace) -> str:
    if result.diverged:
        return "a task the trace chose could not run where it says"
    return f"the run made different choices than the {len(trace.schedule)} recorded"


def model_of(trace: Trace) -> tuple[Model, str]:
    """The model a trace names, and a sentence saying what differs from the
    settings it records ("" if nothing)."""
    if "scenario" in trace.model:
        model: Model = lookup(trace.model["scenario"]).model(trace.params)
    else:
        model = _function_model(trace)
    for what, recorded, now in (
        ("cores", trace.cores, model.cores),
        ("memory", trace.memory, model.memory),
    ):
        if recorded != now:
            return model, (
                f"the trace was recorded with {what}={recorded}, but {trace.scenario} now "
                f"runs with {what}={now}"
            )
    return model, ""


def _function_model(trace: Trace) -> Model:
    from pagemap.check.model import FunctionModel, resolve

    desc = trace.model
    if "setup" not in desc:
        raise ValueError(
            f"the trace's model {trace.scenario!r} cannot be replayed from the command line: "
            f"{desc.get('unreplayable', 'it names no import path')}"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # models in the user's tests, as pytest finds them
    setup = resolve(desc["setup"])
    tasks = tuple(resolve(t) for t in desc["tasks"])
    check = resolve(desc["check"]) if desc.get("check") else None
    return FunctionModel(
        str(desc.get("name", "model")),
        setup,
        tasks,
        check,
        trace.cores,
        trace.memory,
        bool(desc.get("quiescent", True)),
    )


def _print_verdict(console: Console, trace: Trace, result: Replay) -> None:
    violation: Violation | None = result.violation
    if result.cycle is not None:
        prefix, period = result.cycle
        console.print(
            f"[yellow]livelock[/yellow]: after step {prefix} the same {period} step(s) repeat "
            f"until the budget of {trace.max_steps:,} steps runs out ({result.total_steps:,} "
            "steps); the table shows one turn",
            soft_wrap=True,
        )
    if violation is None:
        console.print(
            f"[green]no violation on replay[/green] (the trace recorded {trace.oracle}: "
            f"{trace.message})",
            soft_wrap=True,
        )
        return
    shrunk = ""
    if trace.shrunk_from:
        shrunk = (
            f" (shrunk from {trace.shrunk_from.get('steps')} steps and "
            f"{trace.shrunk_from.get('preemptions')} preemptions)"
        )
    console.print(
        f"[red]VIOLATION[/red] {violation.oracle}: {violation.message}\n"
        f"{trace.steps} steps, {trace.preemptions} preemptions{shrunk}; found by "
        f"{trace.strategy} seed {trace.seed}, schedule {trace.schedule_index}",
        soft_wrap=True,
    )


def step_table(rows: Sequence[Step], title: str) -> Table:
    table = Table(title=title)
    cols = (
        "step",
        "core",
        "task",
        "operation",
        "object",
        "slot (ref|R|ppn)",
        "PTE",
        "value",
        "where",
    )
    for col in cols:
        table.add_column(col, justify="right" if col in ("step", "core") else "left")
    for r in rows:
        mark = "[bold red]" if r.failing else ""
        step = ("⤷ " if r.preempted else "") + str(r.step)
        where = r.location + (f" ({r.seed_function})" if r.seed_function else "")
        table.add_row(
            f"{mark}{step}",
            str(r.core),
            r.task,
            f"{mark}{r.operation}",
            r.obj,
            r.slot,
            r.pte,
            r.value,
            where,
        )
    return table
