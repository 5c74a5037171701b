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
trace no longer fits the code (it could not be followed, or fails otherwise) or
names code replay may not import: a model of your own is loaded only from a
`--model-path DIR` (check/modelpath.py).

Output: a counterexample prints as a timeline of its steps (check/counterexample.py,
narrow from 80 columns); `--report DIR` (check) and `--html FILE` (replay) write it
as a self-contained page; `--json` prints one document that check.schema.json or
replay.schema.json (check/schemas/) describes, and nothing else on stdout.  Every
output path is checked before any work starts.  check ends with one verdict line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pagemap import __version__
from pagemap import options as opt
from pagemap.check.counterexample import renderable, replay_command, timeline_of, write_page
from pagemap.check.fanout import (
    SPLIT,
    Explored,
    Stop,
    Unit,
    explore,
    make_engine,
    merge,
    run_serial,
)
from pagemap.check.fanout.display import Display
from pagemap.check.modelpath import ModelPath, Refused
from pagemap.check.replay import Replay, replay
from pagemap.check.runner import DEFAULT_CAP, DEFAULT_MAX_STEPS, Model, Summary
from pagemap.check.scenarios import lookup, registry, zoo
from pagemap.check.shrink import shrink_trace
from pagemap.check.strategies import DEFAULT_BOUND, EXHAUSTIVE, STRATEGIES
from pagemap.check.trace import Trace, TraceError
from pagemap.check.workers import Pool, Progress, Stopped, WorkerFailed

if TYPE_CHECKING:
    from pagemap.check.coverage import CoverageReport

DEFAULT_BUDGET = 1000  # schedules per scenario for random and PCT
PORTFOLIO_PCT = 100  # schedules per scenario in the portfolio's PCT pass
PCT_CHUNK = 20  # PCT schedules per unit: small, so every scenario is looked at early
CHUNK = 100  # random and PCT schedules per unit outside the portfolio
UNIT_TIMEOUT = 600.0  # seconds a unit may run before it is given up as timed out

OK, VIOLATION, BAD_INPUT, NO_LONGER_FITS = 0, 1, 2, 3
CHECK_SCHEMA = 1  # the version of check.schema.json that `check --json` follows
REPLAY_SCHEMA = 1  # the version of replay.schema.json that `replay --json` follows


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
        type=opt.whole(1),
        help=f"schedules per scenario (default {DEFAULT_BUDGET} for random and pct; "
        f"dpor and dfs: to the end, at most {DEFAULT_CAP:,})",
    )
    check.add_argument(
        "--time", type=opt.seconds(0.001, 10**7), help="seconds per scenario instead of a budget"
    )
    check.add_argument(
        "--preemptions",
        type=opt.whole(0, 1000),
        help=f"preemption bound (default {DEFAULT_BOUND} for dpor and dfs, none for random "
        "and pct)",
    )
    check.add_argument("--seed", type=opt.whole(0), default=0, help="strategy seed (default 0)")
    check.add_argument(
        "--depth", type=opt.whole(1, 1000), default=3, help="PCT bug depth (default 3)"
    )
    check.add_argument(
        "--jobs",
        type=opt.whole(1, 1024),
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
        type=opt.whole(1, 10**9),
        default=SPLIT,
        metavar="N",
        help=f"dfs and dpor: schedules a unit of work runs before it hands the rest of its "
        f"subtree back as new units (default {SPLIT})",
    )
    check.add_argument(
        "--unit-timeout",
        type=opt.seconds(0.001, 10**7),
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
        type=opt.whole(1, 10**9),
        default=DEFAULT_MAX_STEPS,
        help=f"step budget per schedule (default {DEFAULT_MAX_STEPS:,})",
    )
    check.add_argument("--traces", default="traces", help="directory for counterexample traces")
    check.add_argument("--no-shrink", action="store_true", help="keep counterexamples unshrunk")
    check.add_argument("--list", action="store_true", help="list the scenarios and exit")
    check.add_argument(
        "--mutants",
        action="store_true",
        help="run the scenarios against every mutant of the kernel (check/mutants/) and "
        "report which scenario killed each; exit 0 only if every mutant is killed",
    )
    check.add_argument(
        "--mutant",
        action="append",
        default=[],
        metavar="NAME",
        help="with --mutants: only this mutant (repeatable); without: run the check "
        "under this one mutant (its own scenario when none is named) and write its "
        "counterexample, which `pagemap replay` replays under the mutant",
    )
    check.add_argument(
        "--coverage",
        action="store_true",
        help="run the scenarios under branch coverage and report the lines and branches of "
        "kernel/ and hw/ that no scenario reaches (less those listed in check/unreached.txt)",
    )
    check.add_argument(
        "--known",
        action="store_true",
        help="run the known-bug zoo (check/scenarios/known/; the named ones, or all): each "
        "with its fix off (the portfolio must find it) and on (DPOR must cover it and show a "
        "schedule that ran its racing pair); exit 0 only if every row is as expected",
    )
    check.add_argument(
        "--markdown",
        action="store_true",
        help="with --known: print the table and each bug's shrunk trace as Markdown on "
        "stdout (docs/known-bugs.md is made so)",
    )
    _check_output_options(check)
    check.set_defaults(func=run_check)

    rep: argparse.ArgumentParser = sub.add_parser(
        "replay",
        help="re-run a counterexample trace step by step",
        description="Re-run the schedule in TRACE on the scenario (or model) it names, under "
        "the settings it records, and print one row per step: the core, task, operation, "
        "the slot word as refcount|removal|ppn, PTE bits, and where in the code.  Exit 1 if "
        "the violation reproduces, 0 if the schedule runs and no longer fails, 2 if TRACE is "
        "not a trace, 3 if the schedule no longer fits the code or the trace names code "
        "replay may not import.",
    )
    rep.add_argument("trace", metavar="TRACE", help="a JSON trace written by pagemap check")
    rep.add_argument(
        "--model-path",
        metavar="DIR",
        action="append",
        default=[],
        help="modules found under DIR may be imported: where a trace of a model of your own "
        "may load its functions from (repeatable; a trace naming any other code is refused)",
    )
    _replay_output_options(rep)
    rep.set_defaults(func=run_replay)


def _check_output_options(check: argparse.ArgumentParser) -> None:
    check.add_argument(
        "--report",
        metavar="DIR",
        help="write a self-contained HTML timeline of every counterexample into DIR",
    )
    check.add_argument(
        "--json",
        action="store_true",
        help="print the result as one JSON document (check.schema.json) on stdout",
    )


def _replay_output_options(rep: argparse.ArgumentParser) -> None:
    rep.add_argument(
        "--html",
        metavar="FILE",
        help="write the replay as a self-contained HTML timeline: one column per core, "
        "one row per step, a click on a step shows the machine's state there",
    )
    rep.add_argument(
        "--json",
        action="store_true",
        help="print the replay as one JSON document (replay.schema.json) on stdout",
    )


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
    console = _console(args)
    scenarios = registry()
    if args.list:
        for s in [*scenarios.values(), *zoo().values()]:
            params = " ".join(f"{k}={v}" for k, v in s.defaults.items())
            console.print(f"[bold]{s.name}[/bold]  {s.summary}  [dim]{params}[/dim]")
        return OK
    if args.known:
        return _known_bugs(console, args)
    if args.markdown:
        raise ValueError("--markdown prints the table of --known")
    if args.budget is not None and args.time is not None:
        raise ValueError("give --budget or --time, not both")
    if args.strategy in ("random", "pct") and args.time is None and args.budget is None:
        args.budget = DEFAULT_BUDGET
    _check_output_paths(args)
    if args.mutant and not args.mutants:
        return _under_mutant(console, args)
    names = args.scenarios or list(scenarios)
    for name in names:
        lookup(name)  # unknown names: one line, exit 2
    overrides = dict(args.param)
    if not args.scenarios:
        _taken_by_some(scenarios.values(), overrides)
    models: dict[str, Model] = {
        n: lookup(n).model(overrides if args.scenarios else _known(scenarios[n], overrides))
        for n in names
    }
    units = plan(args, models)
    if (args.mutants or args.coverage) and args.scheduler is not None:
        raise ValueError(
            "--scheduler runs an exploration on a cluster; --mutants and --coverage run in "
            "worker processes here (--jobs)"
        )
    if args.mutants:
        return _mutants(console, args, units)
    if args.coverage:
        return _coverage(console, args, units)
    t0 = time.perf_counter()
    explored = _explore(console, args, names, units)
    summaries = _by_scenario(names, units, explored.summaries)
    seconds = time.perf_counter() - t0
    stopped = None if explored.stopped is None else explored.stopped.exit_code
    return conclude(console, args, models, summaries, seconds, stopped)


def _under_mutant(console: Console, args: argparse.Namespace) -> int:
    """`check --mutant NAME [SCENARIO ...]`: the check, on the kernel with one
    mutant applied (its own scenario and parameters when none is named), in
    this process; a counterexample's trace names the mutant, so that `pagemap
    replay` applies it again."""
    from pagemap.check.mutants import lookup_mutant

    if len(args.mutant) > 1:
        raise ValueError("--mutant without --mutants runs one mutant: name one")
    if args.coverage or args.scheduler is not None:
        raise ValueError("--mutant runs the check in this process: no --coverage, no --scheduler")
    mutant = lookup_mutant(args.mutant[0])
    if not args.scenarios:
        args.scenarios = [mutant.scenario]
        args.param = [*mutant.params.items(), *args.param]
    args.jobs = 1  # the mutant patches this process's kernel only
    args.mutant_name = mutant.name
    args.mutant = []
    _say(console, f"under the mutant {mutant.name}: {mutant.broken}")
    with mutant.applied():
        return run_check(args)


def _known_bugs(console: Console, args: argparse.Namespace) -> int:
    """`check --known`: every zoo row (or the named ones) with the fix off and on,
    a table of them, and exit 0 only if every row is as expected."""
    from pagemap.check.scenarios.known import BUGS
    from pagemap.check.scenarios.known.table import BUDGET, markdown, run_row

    others = [
        option
        for option, given in (
            ("--mutants", args.mutants),
            ("--coverage", args.coverage),
            ("--strategy", args.strategy is not None),
            ("--time", args.time is not None),
            ("--report", args.report is not None),
            ("--scheduler", args.scheduler is not None),
            ("-p", bool(args.param)),
        )
        if given
    ]
    if others:
        raise ValueError(
            f"--known runs each row its own way (fix=0 and fix=1, the portfolio and DPOR); "
            f"{', '.join(others)} cannot go with it"
        )
    if args.json and args.markdown:
        raise ValueError("give --json or --markdown, not both: each is the whole of stdout")
    names = list(args.scenarios)
    known_names = [b.scenario for b in BUGS]
    for name in names:
        if name not in known_names:
            raise ValueError(f"{name!r} is not a known bug (known: {', '.join(known_names)})")
    bugs = [b for b in BUGS if not names or b.scenario in names]
    budget = args.budget if args.budget is not None else BUDGET
    # With --json or --markdown, stdout carries the document alone.
    wide = None if sys.stderr.isatty() else 160
    say = Console(stderr=True, width=wide) if args.json or args.markdown else console
    say.print(
        f"pagemap check --known: {plural(len(bugs), 'bug')}, each with its fix off (PCT, "
        f"then DPOR with at most {DEFAULT_BOUND} preemptions, {budget:,} schedules at most) "
        f"and on (DPOR with at most {DEFAULT_BOUND} preemptions, to the end)"
    )
    t0 = time.perf_counter()
    rows = []
    for bug in bugs:
        row = run_row(bug, budget)
        rows.append(row)
        if not sys.stderr.isatty() or args.json or args.markdown:
            print(
                f"{bug.scenario}: {'as expected' if row.expected else 'NOT as expected'}",
                file=sys.stderr,
            )
    seconds = time.perf_counter() - t0
    table = Table(title="known bugs")
    for column in ("bug", "commit", "fix off", "oracle", "fix on", "witness"):
        table.add_column(column)
    for r in rows:
        off = (
            f"found in {plural(r.off_schedules, 'schedule')}, {r.off_seconds:.2f} s; "
            f"{plural(r.trace.steps, 'step')} shrunk"
            if r.trace is not None
            else f"not found in {plural(r.off_schedules, 'schedule')}"
        )
        on = f"{r.verdict()}: {plural(r.on_schedules, 'schedule')}, bound {r.bound}"
        witness = r.witness.describe() if r.witness is not None else "none"
        table.add_row(
            r.bug.scenario, f"{r.bug.commit} ({r.bug.year})", off, r.oracle or "-", on, witness
        )
    say.print(table)
    for r in rows:
        for problem in r.problems:
            say.print(f"{r.bug.scenario}: {problem}")
    good = all(r.expected for r in rows)
    wrong = [r.bug.scenario for r in rows if not r.expected]
    line = (
        f"OK: every known bug is found with its fix off and holds with it on, with a "
        f"witness: {plural(len(rows), 'bug')} in {seconds:.1f} s"
        if good
        else f"FAILED: {plural(len(wrong), 'row')} not as expected ({', '.join(wrong)}) "
        f"in {seconds:.1f} s"
    )
    if args.json:
        doc = {
            "schema": 1,
            "command": "check --known",
            "pagemap": __version__,
            "budget": budget,
            "seconds": round(seconds, 3),
            "expected": good,
            "rows": [r.to_json() for r in rows],
        }
        print(json.dumps(doc, indent=1))
    elif args.markdown:
        print(markdown(rows), end="")
    _say(say, line)
    return OK if good else VIOLATION


def _mutants(console: Console, args: argparse.Namespace, units: list[Unit]) -> int:
    """Every mutant against the planned units: which scenario kills it, how soon.
    With --jobs, mutants run in worker processes, one at a time each."""
    from pagemap.check.mutants import EQUIVALENT_MUTANTS, MUTANTS, lookup_mutant

    chosen = [lookup_mutant(n) for n in args.mutant] or list(MUTANTS)
    jobs = min(args.jobs, len(chosen))
    t0 = time.perf_counter()
    stop = Stop()
    try:
        with _progress(
            console, "pagemap check --mutants", "running the scenarios against each mutant ..."
        ) as say:

            def told(done: int, total: int, index: int) -> None:
                say(
                    f"{chosen[index].name} run ({done} of {total}, "
                    f"{time.perf_counter() - t0:.1f} s)"
                )

            if jobs == 1:
                runs = []
                for i, mutant in enumerate(chosen):
                    runs.append(run_mutant(mutant.name, units))
                    told(i + 1, len(chosen), i)
            else:
                with stop.on_signals():
                    runs = _mutants_in_workers(chosen, units, jobs, told, stop)
    except Stopped as exc:
        _say(
            console,
            f"STOPPED by {_why(stop)}: {exc.done} of {plural(exc.total, 'mutant')} "
            f"run in {time.perf_counter() - t0:.1f} s; no table, the rest were not run",
        )
        return stop.exit_code
    table = Table(title="pagemap check --mutants")
    for col in ("mutant", "the rule it breaks", "killed by", "schedules", "seconds"):
        table.add_column(col, justify="right" if col in ("schedules", "seconds") else "left")
    survivors = []
    for mutant, run in zip(chosen, runs, strict=True):
        if run["scenario"] is not None:
            verdict = f"[green]{run['scenario']}[/green] ({run['oracle']})"
        elif mutant in EQUIVALENT_MUTANTS:
            verdict = "[yellow]survives: equivalent (see check/mutants/)[/yellow]"
        else:
            verdict = "[red]SURVIVES[/red]"
            survivors.append(mutant.name)
        table.add_row(
            mutant.name, mutant.broken, verdict, f"{run['schedules']:,}", f"{run['seconds']:.2f}"
        )
    console.print(table)
    if survivors:
        console.print(
            f"[red]{len(survivors)} of {plural(len(chosen), 'mutant')} "
            f"{'survives' if len(survivors) == 1 else 'survive'}[/red]: "
            f"{', '.join(survivors)}: no scenario run here breaks an oracle under them",
            soft_wrap=True,
        )
        return VIOLATION
    console.print(f"[green]every mutant is killed[/green] ({len(chosen)})")
    return OK


def run_mutant(name: str, units: Sequence[Unit]) -> dict[str, Any]:
    """Mutant `name` against `units`, in this process: the first scenario (in the
    plan's fixed order) whose oracle it breaks, and which oracle; the schedules
    and seconds that scenario took from its own start to the kill (the scenarios
    before it in the plan, which held, are not counted: a mutant is judged by how
    soon its killer finds it), or, for a survivor, those of the whole plan.
    JSON, as a --mutants worker answers it."""
    from pagemap.check.mutants import lookup_mutant

    with lookup_mutant(name).applied():
        t0 = time.perf_counter()
        results = run_serial(units)
        seconds = time.perf_counter() - t0
    killer = next((r for r in results if r.trace is not None), None)
    return {
        "scenario": None if killer is None else killer.scenario,
        "oracle": None if killer is None or killer.trace is None else killer.trace.oracle,
        "schedules": sum(r.schedules for r in results) if killer is None else killer.schedules,
        "seconds": seconds if killer is None else killer.seconds,
    }


# A --mutants worker (check/workers.py): each line names a mutant and the units to run.
_MUTANT_WORKER = """
from pagemap.check.command import run_mutant
from pagemap.check.fanout import Unit
for line in sys.stdin:
    item = json.loads(line)
    answer(run_mutant(item["mutant"], [Unit.from_json(u) for u in item["units"]]))
"""


def _mutants_in_workers(
    chosen: Sequence[Any], units: Sequence[Unit], jobs: int, told: Progress, stop: Stop
) -> list[dict[str, Any]]:
    plan = [u.to_json() for u in units]
    with Pool(_MUTANT_WORKER, [[] for _ in range(jobs)]) as pool:
        try:
            runs: list[dict[str, Any]] = pool.map(
                [{"mutant": m.name, "units": plan} for m in chosen], told, stop
            )
            pool.finish()
        except WorkerFailed as exc:
            raise RuntimeError(f"the mutants run failed: {exc}") from None
    return runs


@contextlib.contextmanager
def _progress(console: Console, command: str, first: str) -> Iterator[Callable[[str], None]]:
    """Where a long run says how far it is: on a terminal, a spinner's text; off
    one (CI, a pipe), one plain line each on stderr, as a spinner shows nothing there."""
    if console.is_terminal:
        with console.status(first) as status:
            yield lambda text: status.update(Text(text))
    else:
        yield lambda text: print(f"{command}: {text}", file=sys.stderr)


def _why(stop: Stop) -> str:
    return "Ctrl-C" if stop.exit_code == 130 else "SIGTERM"


def _race_table(console: Console, report: CoverageReport) -> None:
    """Per kernel function that takes points: its steps, the races it was in."""
    census = report.races
    table = Table(title="races reached (DPOR, 1 preemption, every scenario)")
    for col in ("function", "steps", "races", "verdict"):
        table.add_column(col, justify="right" if col in ("steps", "races") else "left")
    for f in sorted(census.steps):
        raced = census.raced[f]
        if raced:
            verdict = "raced"
        elif f in report.race_listed:
            verdict = f"[yellow]not raced[/yellow]: {report.race_listed[f]}"
        else:
            verdict = "[red]NOT RACED[/red]"
        table.add_row(f, f"{census.steps[f]:,}", f"{raced:,}", verdict)
    console.print(table)
    raced = sum(1 for f in census.steps if census.raced[f])
    console.print(
        f"scenarios race {raced} of {plural(len(census.steps), 'kernel function')} that take "
        f"scheduling points; {plural(len(report.unraced), 'function')} not raced and not "
        "listed in unreached.txt",
        soft_wrap=True,
    )


def _coverage(console: Console, args: argparse.Namespace, units: list[Unit]) -> int:
    """The scenarios under branch coverage, in --jobs worker processes; Ctrl-C and
    SIGTERM stop it (130, 143) with its temp directory and workers gone."""
    from pagemap.check.coverage import default_exclusions, groups, measure

    total = len(groups(units))
    jobs = min(args.jobs, total)
    _say(
        console,
        f"pagemap check --coverage: {plural(total, 'scenario')}, "
        f"{plural(len(units), 'unit')} of work under branch coverage in "
        f"{plural(jobs, 'worker process', 'worker processes')}",
    )
    stop = Stop()
    t0 = time.perf_counter()
    try:
        with (
            stop.on_signals(),
            _progress(
                console, "pagemap check --coverage", "running the scenarios under coverage ..."
            ) as say,
        ):

            def told(done: int, total: int, name: str) -> None:
                say(f"{name} measured ({done} of {total}, {time.perf_counter() - t0:.1f} s)")

            report = measure(units, default_exclusions(), jobs, told, stop)
    except Stopped as exc:
        _say(
            console,
            f"STOPPED by {_why(stop)}: {exc.done} of {plural(exc.total, 'scenario')} measured "
            f"in {time.perf_counter() - t0:.1f} s; no coverage reported",
        )
        return stop.exit_code
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
    _race_table(console, report)
    for message in report.violations:
        console.print(f"[red]VIOLATION[/red] {message} (run pagemap check for the trace)")
    if report.violations:
        return VIOLATION
    return OK if report.complete else VIOLATION


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """`n` and its noun, plural unless `n` is 1 ("1 scenario", "2 scenarios");
    `nouns` where an s will not do."""
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"


def _by_scenario(names: list[str], units: list[Unit], results: list[Summary]) -> list[Summary]:
    parts: dict[str, list[Summary]] = {n: [] for n in names}
    for s in results:
        parts[s.scenario].append(s)
    return [merge(parts[n]) for n in names if parts[n]]


def _taken_by_some(scenarios: Iterable[Any], overrides: Mapping[str, int]) -> None:
    """With no scenario named, a parameter applies where it is taken; one that no
    scenario takes is a typo, and must not run the whole job without it."""
    taken = sorted({k for s in scenarios for k in s.defaults})
    for key in overrides:
        if key not in taken:
            raise ValueError(
                f"no scenario takes parameter {key!r} (the scenarios' parameters: "
                f"{', '.join(taken)})"
            )


def _known(scenario: Any, overrides: dict[str, int]) -> dict[str, int]:
    # With no scenario named, a parameter applies to the scenarios that take it.
    return {k: v for k, v in overrides.items() if k in scenario.defaults}


def _check_output_paths(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output path that cannot be written."""
    opt.check_output_dir("--traces", args.traces)
    _try_writing("--traces", args.traces)
    if args.report is not None:
        opt.check_output_dir("--report", args.report)
        _try_writing("--report", args.report)


def _try_writing(option: str, path: str) -> None:
    """Make a file in directory `path`, or (if it is not there yet) a directory
    where it would be made, and remove it again: permission bits do not say
    everything (root passes them, yet /proc and read-only mounts refuse), and a
    counterexample found after an hour must not be lost for want of a place."""
    probe = Path(path)
    while not probe.is_dir() and probe != probe.parent:
        probe = probe.parent
    try:
        if probe == Path(path):
            fd, made = tempfile.mkstemp(prefix=".pagemap-probe-", dir=probe)
            os.close(fd)
            os.unlink(made)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".pagemap-probe-", dir=probe))
    except OSError as exc:
        raise ValueError(
            f"{option} {path}: nothing can be written in {probe} ({exc.strerror or exc})"
        ) from None


def _console(args: argparse.Namespace | None = None) -> Console:
    # With --json, stdout carries the document alone: people's output goes to stderr.
    # Piped into a file or a pager, the tables keep every column whole.
    if args is not None and getattr(args, "json", False):
        return Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    return Console(width=None if sys.stdout.isatty() else 160)


def banner(
    args: argparse.Namespace, names: Sequence[str], units: int, where: str | None = None
) -> str:
    """One line: what is explored, how, and where (`where`: the engine's name,
    "in this process", "in 2 worker processes", "on the Dask cluster at ...")."""
    bound = args.preemptions if args.preemptions is not None else DEFAULT_BOUND
    strategy = args.strategy
    if strategy is None:
        how = (
            f"a PCT pass of {plural(PORTFOLIO_PCT, 'schedule')} each, then DPOR with at most "
            f"{plural(bound, 'preemption')} to the end"
        )
    elif strategy in EXHAUSTIVE:
        how = f"{strategy.upper()} with at most {plural(bound, 'preemption')} " + (
            f"for {args.time:g} s each"
            if args.time is not None
            else f"to the end (at most {plural(args.budget or DEFAULT_CAP, 'schedule')} each)"
        )
    else:
        how = f"{strategy.upper()}, " + (
            f"for {args.time:g} s each"
            if args.time is not None
            else f"{plural(args.budget, 'schedule')} each"
        )
    jobs = where or (f"in {args.jobs} worker processes" if args.jobs > 1 else "in this process")
    return (
        f"pagemap check: {plural(len(names), 'scenario')}, {how}; {plural(units, 'unit')} of "
        f"work {jobs}, seed {args.seed}"
    )


def _explore(
    console: Console, args: argparse.Namespace, names: Sequence[str], units: list[Unit]
) -> Explored:
    """Run the plan on the engine the options name, under the progress display;
    the banner once the engine is up.  Ctrl-C and SIGTERM stop it, from the
    engine's start on (the answer then holds what was explored)."""
    stop = Stop()
    with stop.on_signals():
        engine = make_engine(args.jobs, args.scheduler)
        _say(console, banner(args, names, len(units), engine.name))
        with Display(console) as display:
            return explore(units, engine, display.update, stop)


def _print_timeouts(console: Console, summaries: Sequence[Summary]) -> None:
    for s in summaries:
        if s.timed_out:
            console.print(
                f"[yellow]{s.scenario}: {plural(s.timed_out, 'unit')} of work timed out[/yellow] "
                "(--unit-timeout); what they would have explored was not",
                soft_wrap=True,
            )


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


@dataclass
class Found:
    """A counterexample of the run, as written out."""

    summary: Summary
    trace: Trace
    path: Path
    result: Replay
    page: Path | None = None


def conclude(
    console: Console,
    args: argparse.Namespace,
    models: Mapping[str, Model],
    summaries: Sequence[Summary],
    seconds: float,
    stopped: int | None = None,
) -> int:
    """The summary table, every counterexample written out (the first shown as a
    timeline), the JSON document if asked, and the verdict line; the exit code.
    `stopped`: the run was cut short by a signal, whose exit code this is (130 for
    Ctrl-C, 143 for SIGTERM): what was explored is said, and nothing is written."""
    _print_summary(console, summaries)
    _print_timeouts(console, summaries)
    if stopped is not None:
        if args.json:
            doc = check_document(args, summaries, [], seconds)
            doc.update(ok=False, verdict="interrupted", exit_code=stopped)
            print(json.dumps(doc, indent=1))
        _say(console, stopped_line(summaries, seconds, stopped))
        return stopped
    found: list[Found] = []
    for s in summaries:
        if s.trace is not None:
            found.append(_write_out(args, models[s.scenario], s, s.trace))
    if found:
        _show_first(console, found[0])
    for f in found[1:]:
        _say(console, f"also {f.trace.oracle} in {f.trace.scenario}: trace written to {f.path}")
    if args.json:
        print(json.dumps(check_document(args, summaries, found, seconds), indent=1))
    _say(console, verdict_line(summaries, found, seconds))
    return VIOLATION if found else OK


def _write_out(args: argparse.Namespace, model: Model, summary: Summary, trace: Trace) -> Found:
    if not args.no_shrink:
        trace = shrink_trace(model, trace)
    if getattr(args, "mutant_name", None):
        trace.model = {**trace.model, "mutant": args.mutant_name}
    path = trace.save(args.traces)
    result = replay(model, trace, states=args.report is not None, explain=True)
    found = Found(summary, trace, path, result)
    if args.report is not None:
        directory = Path(args.report)
        directory.mkdir(parents=True, exist_ok=True)
        timeline = timeline_of(trace, result, replay_command(path))
        found.page = write_page(timeline, directory / (path.stem + ".html"))
    return found


def _show_first(console: Console, f: Found) -> None:
    timeline = timeline_of(f.trace, f.result, replay_command(f.path))
    console.print(renderable(timeline, console.width))
    _say(console, f"trace written to {f.path}")
    if f.page is not None:
        _say(console, f"timeline page written to {f.page}")


def _say(console: Console, line: str) -> None:
    """One line as it is: no markup (a path may hold brackets), no highlighting."""
    console.print(line, soft_wrap=True, highlight=False, markup=False)


def verdict_line(summaries: Sequence[Summary], found: Sequence[Found], seconds: float) -> str:
    """The last line of `pagemap check`, as `pagemap run` ends with one."""
    schedules = sum(s.schedules for s in summaries)
    n = len(summaries)
    explored = f"{plural(schedules, 'schedule')} of {plural(n, 'scenario')} in {seconds:.1f} s"
    if not found:
        covered = sum(s.exhaustive for s in summaries)
        return f"OK: every oracle holds: {explored}; {covered} of {n} covered to the end"
    first = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return (
        f"FAILED: {first.trace.oracle} in {first.trace.scenario}{more} after {explored}; "
        f"replay it: {replay_command(first.path)}"
    )


def stopped_line(summaries: Sequence[Summary], seconds: float, code: int) -> str:
    """The last line of a `pagemap check` cut short by Ctrl-C or SIGTERM."""
    schedules = sum(s.schedules for s in summaries)
    why = "Ctrl-C" if code == 130 else "SIGTERM" if code == 143 else "a signal"
    return (
        f"STOPPED by {why}: {plural(schedules, 'schedule')} of "
        f"{plural(len(summaries), 'scenario')} explored in {seconds:.1f} s, no violation "
        "among them; the rest was not explored"
    )


def check_document(
    args: argparse.Namespace,
    summaries: Sequence[Summary],
    found: Sequence[Found],
    seconds: float,
) -> dict[str, Any]:
    """`check --json`: the run as check.schema.json describes it."""
    return {
        "schema": CHECK_SCHEMA,
        "command": "check",
        "pagemap": __version__,
        "ok": not found,
        "verdict": "violation" if found else "holds",
        "exit_code": VIOLATION if found else OK,
        "seconds": round(seconds, 3),
        "settings": {
            "strategy": args.strategy or "portfolio",
            "budget": args.budget,
            "time": args.time,
            "preemptions": args.preemptions,
            "seed": args.seed,
            "depth": args.depth,
            "jobs": args.jobs,
            "max_steps": args.max_steps,
            "scheduler": getattr(args, "scheduler", None),
            "split": getattr(args, "split", SPLIT),
            "unit_timeout": getattr(args, "unit_timeout", UNIT_TIMEOUT),
        },
        "scenarios": [_scenario_json(s) for s in summaries],
        "counterexamples": [_found_json(f) for f in found],
    }


def _scenario_json(s: Summary) -> dict[str, Any]:
    return {
        "scenario": s.scenario,
        "params": dict(s.params),
        "strategy": s.strategy,
        "bound": s.bound,
        "earlier_phases": dict(s.extra),
        "schedules": s.schedules,
        "distinct": s.distinct,
        "redundant": s.redundant,
        "timed_out_units": s.timed_out,
        "exhaustive": s.exhaustive,
        "steps": s.steps,
        "seconds": round(s.seconds, 3),
        "verdict": "holds" if s.trace is None else "violation",
        "oracle": None if s.trace is None else s.trace.oracle,
    }


def _found_json(f: Found) -> dict[str, Any]:
    return {
        "scenario": f.trace.scenario,
        "params": dict(f.trace.params),
        "oracle": f.trace.oracle,
        "message": f.trace.message,
        "steps": f.trace.steps,
        "preemptions": f.trace.preemptions,
        "trace": str(f.path),
        "replay_command": replay_command(f.path),
        "report": None if f.page is None else str(f.page),
    }


# -- replay -------------------------------------------------------------------------


def run_replay(args: argparse.Namespace) -> int:
    console = _console(args)
    if args.html is not None:
        opt.check_output_file("--html", args.html)
    allowed = ModelPath.of(args.model_path)
    try:
        trace = Trace.load(args.trace)
    except TraceError as exc:
        raise ValueError(str(exc)) from None
    with allowed.on_sys_path():
        try:
            model, differs = model_of(trace, allowed)
        except Refused as exc:
            print(f"pagemap replay: {exc}", file=sys.stderr)
            if args.json:
                doc = replay_document(args.trace, trace, None, str(exc), refused=True)
                print(json.dumps(doc, indent=1))
            return NO_LONGER_FITS
        if differs:
            print(f"pagemap replay: {differs}", file=sys.stderr)
            if args.json:
                print(json.dumps(replay_document(args.trace, trace, None, differs), indent=1))
            return NO_LONGER_FITS
        result = replay(model, trace, states=args.html is not None or args.json, explain=True)
    command = replay_command(args.trace) + "".join(
        f" --model-path {shlex.quote(str(d))}" for d in args.model_path
    )
    timeline = timeline_of(trace, result, command, "replayed")
    console.print(renderable(timeline, console.width))
    _print_verdict(console, trace, result)
    code, reason = replay_verdict(trace, result)
    if reason:
        print(f"pagemap replay: {reason}", file=sys.stderr)
    if args.html is not None:
        page = write_page(timeline, Path(args.html))
        _say(console, f"timeline page written to {page}")
    if args.json:
        doc = replay_document(args.trace, trace, result, reason, command)
        print(json.dumps(doc, indent=1))
    return code


def replay_verdict(trace: Trace, result: Replay) -> tuple[int, str]:
    """The exit code of a replay, and the sentence that explains a 3 ("" otherwise)."""
    v = result.violation
    if not result.followed:
        where = result_where(result, trace)
        return NO_LONGER_FITS, (
            f"the schedule no longer fits the code: {where}; the scenario or "
            "the kernel changed since the trace was written"
        )
    if v is None:
        return OK, ""
    if v.oracle != trace.oracle:
        return NO_LONGER_FITS, (
            f"the schedule now fails {v.oracle}, not {trace.oracle} as recorded"
        )
    return VIOLATION, ""


def replay_document(
    path: str,
    trace: Trace,
    result: Replay | None,
    reason: str,
    command: str = "",
    refused: bool = False,
) -> dict[str, Any]:
    """`replay --json`: the replay as replay.schema.json describes it."""
    if result is None:
        code, verdict = NO_LONGER_FITS, "refused" if refused else "no_longer_fits"
    else:
        code, _ = replay_verdict(trace, result)
        verdict = {OK: "holds", VIOLATION: "violation"}.get(code, "no_longer_fits")
    v = None if result is None else result.violation
    timeline = None
    if result is not None:
        how = command or replay_command(path)
        timeline = timeline_of(trace, result, how, "replayed").to_dict()
    return {
        "schema": REPLAY_SCHEMA,
        "command": "replay",
        "pagemap": __version__,
        "trace": path,
        "scenario": trace.scenario,
        "verdict": verdict,
        "exit_code": code,
        "reason": reason,
        "recorded": {"oracle": trace.oracle, "message": trace.message},
        "violation": None if v is None else {"oracle": v.oracle, "message": v.message},
        "followed": None if result is None else result.followed,
        "steps": None if result is None else result.total_steps,
        "timeline": timeline,
    }


def result_where(result: Replay, trace: Trace) -> str:
    if result.diverged:
        return "a task the trace chose could not run where it says"
    return f"the run made different choices than the {len(trace.schedule)} recorded"


def model_of(trace: Trace, allowed: ModelPath | None = None) -> tuple[Model, str]:
    """The model a trace names, and a sentence saying what differs from the
    settings it records ("" if nothing).  A model of your own is imported only
    from the directories `allowed` (check/modelpath.py; Refused otherwise)."""
    if "scenario" in trace.model:
        model: Model = lookup(trace.model["scenario"]).model(trace.params)
        if "mutant" in trace.model:
            from pagemap.check.mutants import lookup_mutant
            from pagemap.check.mutants.base import MutatedModel

            model = MutatedModel(model, lookup_mutant(str(trace.model["mutant"])))
    else:
        model = _function_model(trace, allowed or ModelPath())
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


def _function_model(trace: Trace, allowed: ModelPath) -> Model:
    from pagemap.check.model import FunctionModel

    desc = trace.model
    if "setup" not in desc:
        raise ValueError(
            f"the trace's model {trace.scenario!r} cannot be replayed from the command line: "
            f"{desc.get('unreplayable', 'it names no import path')}"
        )
    check = [desc["check"]] if desc.get("check") else []
    setup, *functions = allowed.resolve([desc["setup"], *desc["tasks"], *check])
    tasks = functions[: len(desc["tasks"])]
    return FunctionModel(
        str(desc.get("name", "model")),
        setup,
        tuple(tasks),
        functions[len(desc["tasks"])] if check else None,
        trace.cores,
        trace.memory,
        bool(desc.get("quiescent", True)),
    )


def _print_verdict(console: Console, trace: Trace, result: Replay) -> None:
    """What the timeline does not say: that a replay no longer fails."""
    if result.violation is None:
        console.print(
            f"[green]no violation on replay[/green] (the trace recorded {trace.oracle}: "
            f"{trace.message})",
            soft_wrap=True,
            highlight=False,
        )
